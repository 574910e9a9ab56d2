// The one browser harness of every Chromium script (tests/e2e, tests/realnode, bench/ide):
// Debian's Chromium through playwright-core (from ui/node_modules, no downloaded browser),
// console-error bookkeeping, steps, screenshots and the JSON report the Python test reads.
//
// Console errors: every error a page logs (console.error or an uncaught exception) is
// recorded in the report's `consoleErrors`, unless an allowance matches it: then it goes to
// `expectedErrors` with the allowance's reason. Allowances are given up front (`allowed`) or
// for a while (`session.allow(...)`, e.g. the 409 a step provokes or an outage the test
// causes). Whether recorded errors fail the run is each script's rule (a last step, or its
// Python test); this module never hides one.
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(new URL("../../ui/package.json", import.meta.url));
export const { chromium } = require("playwright-core");

/** Chromium's flags for a quiet, offline, headless run (no sandbox: the tests run as root). */
export const CHROMIUM_ARGS = Object.freeze([
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]);

export const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A log function whose lines carry `tag` and the time: `[tag 12:34:56] msg`. */
export const logger = (tag) => (msg) => console.log(`[${tag} ${new Date().toISOString().slice(11, 19)}] ${msg}`);

export function expect(cond, message) {
  if (!cond) throw new Error(`expectation failed: ${message}`);
}

/**
 * A persistent-profile browser context and its bookkeeping.
 *
 * Options: `tag` (log prefix), `shots` (screenshot directory), `prefix` (screenshot names are
 * `<prefix>-NN-<name>.png`, or `NN-<name>.png` without one), `fullPage` (screenshots of the
 * whole page), `allowed` (`[{re, source?, reason}]`: console errors expected for the whole
 * run, matched on the text or on the logging script's URL), `extraArgs` (more Chromium flags),
 * `viewport`, `timeout` (Playwright's default), `contextOptions` (more context options, e.g.
 * permissions or acceptDownloads).
 */
export class Session {
  constructor({
    tag,
    shots,
    prefix = "",
    fullPage = false,
    allowed = [],
    extraArgs = [],
    viewport = { width: 1366, height: 900 },
    timeout = 30_000,
    contextOptions = {},
  }) {
    this.log = logger(tag);
    this.shots = shots;
    this.prefix = prefix;
    this.fullPage = fullPage;
    this.allowances = allowed.map((a) => ({ ...a, left: Infinity }));
    this.extraArgs = extraArgs;
    this.viewport = viewport;
    this.timeout = timeout;
    this.contextOptions = contextOptions;
    this.consoleErrors = [];
    this.expectedErrors = [];
    this.steps = [];
    this.shotNo = 0;
  }

  /** Launches Chromium (once) and returns its first page. */
  async start(profile) {
    if (this.page) return this.page;
    if (this.shots) mkdirSync(this.shots, { recursive: true });
    mkdirSync(profile, { recursive: true });
    this.context = await chromium.launchPersistentContext(profile, {
      executablePath: env("GUILDNET_CHROMIUM", "/usr/bin/chromium"),
      headless: true,
      args: [...CHROMIUM_ARGS, ...this.extraArgs],
      // The Host App's certificate is self-signed (its SANs are checked in tests/unit/test_tls.py).
      ignoreHTTPSErrors: true,
      viewport: this.viewport,
      ...this.contextOptions,
    });
    this.context.setDefaultTimeout(this.timeout);
    this.context.on("page", (p) => this.watch(p));
    this.page = this.context.pages()[0] ?? (await this.context.newPage());
    this.watch(this.page);
    return this.page;
  }

  /**
   * Expects console errors matching `re` from now on (at most `count` of them), for `reason`.
   * Returns a function that ends the allowance.
   */
  allow(re, reason, { count = Infinity } = {}) {
    const allowance = { re, reason, left: count };
    this.allowances.push(allowance);
    return () => {
      allowance.left = 0;
    };
  }

  /** Records one error: expected (with the reason of the allowance it used up) or not. */
  record(entry) {
    const why = this.allowances.find(
      (a) => a.left > 0 && (a.re.test(entry.text) || (a.source && entry.source && a.source.test(entry.source))),
    );
    if (!why) {
      this.consoleErrors.push(entry);
      return;
    }
    why.left -= 1;
    this.expectedErrors.push({ ...entry, reason: why.reason });
  }

  watch(page) {
    if (page.__watched) return;
    page.__watched = true;
    page.on("console", (m) => {
      if (m.type() !== "error" && m.type() !== "warning") return;
      const text = m.text();
      const where = m.location()?.url ?? "";
      this.log(`console.${m.type()}: ${text.slice(0, 300)} ${where ? `(${where})` : ""}`);
      if (m.type() === "error") this.record({ type: "error", text, url: page.url(), source: where });
    });
    page.on("pageerror", (e) => {
      const text = String(e?.message ?? e);
      this.log(`pageerror: ${text}`);
      this.record({ type: "pageerror", text, url: page.url(), source: "" });
    });
    // EventSources closed on navigation show up as aborted requests: only logged.
    page.on("requestfailed", (r) => this.log(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ""}`));
  }

  async step(name, fn) {
    const t0 = Date.now();
    this.log(`▶ ${name}`);
    await fn();
    const ms = Date.now() - t0;
    this.steps.push({ name, ms });
    this.log(`  done in ${ms} ms`);
  }

  async shot(name, page = this.page) {
    this.shotNo += 1;
    const n = String(this.shotNo).padStart(2, "0");
    const file = join(this.shots, `${this.prefix ? `${this.prefix}-` : ""}${n}-${name}.png`);
    await page.screenshot({ path: file, fullPage: this.fullPage });
    this.log(`  screenshot ${file}`);
  }

  async close() {
    await this.context?.close();
  }
}

/**
 * Starts `session`, runs `body(page)`, then writes the JSON report to $GUILDNET_RESULT (if set)
 * and exits 0 or 1. The report is `report` (the script's own findings, which `body` may fill
 * in) with `ok`, `failure`, `steps`, `consoleErrors` and `expectedErrors`. A failure is
 * screenshotted on every page still open.
 */
export async function main(session, profile, body, report = {}) {
  let ok = false;
  let failure = null;
  try {
    await body(await session.start(profile));
    ok = true;
  } catch (e) {
    failure = String(e?.stack ?? e);
    session.log(`FAILED: ${failure}`);
    if (session.shots) {
      for (const p of session.context?.pages() ?? []) {
        try {
          await session.shot("failure", p);
        } catch {
          // the page may be gone
        }
      }
    }
  } finally {
    try {
      await session.close();
    } catch {
      // already closed
    }
    const result = env("GUILDNET_RESULT", "");
    if (result) {
      const { steps, consoleErrors, expectedErrors } = session;
      writeFileSync(result, JSON.stringify({ ...report, ok, failure, steps, consoleErrors, expectedErrors }, null, 2));
    }
  }
  session.log(ok ? `PASSED ${session.steps.length} steps` : "FAILED");
  process.exit(ok ? 0 : 1);
}
