// Shared by the real-IDE browser scripts: Debian's Chromium through playwright-core (from
// ui/node_modules, no downloaded browser), console-error bookkeeping, screenshots, steps, and
// checkpoints where the Python test does its part (exec in the pod, read the real Pod).
//
// Checkpoint protocol: the script prints one line `@@checkpoint <name> <json>` and waits until
// the file `<GUILDNET_HANDSHAKE>/<name>.json` exists; the test writes that file when its part
// is done, `{"ok": true, ...}` or `{"ok": false, "error": "..."}` (the script then fails).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(new URL("../../ui/package.json", import.meta.url));
const { chromium } = require("playwright-core");

export const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

export function log(msg) {
  console.log(`[real-ide ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

export function expect(cond, message) {
  if (!cond) throw new Error(`expectation failed: ${message}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A browser session. `allowed` lists console errors that are expected, each with the reason
 * (they are reported, not counted as failures); anything else logged as an error fails the run.
 */
export class Session {
  constructor({ shots, prefix, allowed = [], extraArgs = [] }) {
    this.shots = shots;
    this.prefix = prefix;
    this.allowed = allowed;
    this.extraArgs = extraArgs;
    this.consoleErrors = [];
    this.expectedErrors = [];
    this.steps = [];
    this.shotNo = 0;
  }

  async start(profile) {
    mkdirSync(this.shots, { recursive: true });
    mkdirSync(profile, { recursive: true });
    this.context = await chromium.launchPersistentContext(profile, {
      executablePath: env("GUILDNET_CHROMIUM", "/usr/bin/chromium"),
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        ...this.extraArgs,
      ],
      ignoreHTTPSErrors: true,
      viewport: { width: 1440, height: 900 },
      permissions: ["clipboard-read", "clipboard-write"],
    });
    this.context.setDefaultTimeout(30_000);
    this.context.on("page", (p) => this.watch(p));
    this.page = this.context.pages()[0] ?? (await this.context.newPage());
    this.watch(this.page);
    return this.page;
  }

  watch(page) {
    if (page.__watched) return;
    page.__watched = true;
    page.on("console", (m) => {
      if (m.type() !== "error" && m.type() !== "warning") return;
      const text = m.text();
      const where = m.location()?.url ?? "";
      log(`console.${m.type()}: ${text.slice(0, 300)} ${where ? `(${where})` : ""}`);
      if (m.type() !== "error") return;
      const entry = { text, url: page.url(), source: where };
      const why = this.allowed.find((a) => a.re.test(text) || (a.source && a.source.test(where)));
      if (why) this.expectedErrors.push({ ...entry, reason: why.reason });
      else this.consoleErrors.push(entry);
    });
    page.on("pageerror", (e) => {
      const text = String(e?.message ?? e);
      log(`pageerror: ${text}`);
      const why = this.allowed.find((a) => a.re.test(text));
      if (why) this.expectedErrors.push({ text, url: page.url(), reason: why.reason });
      else this.consoleErrors.push({ text, url: page.url(), source: "pageerror" });
    });
    page.on("requestfailed", (r) => log(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ""}`));
  }

  async step(name, fn) {
    const t0 = Date.now();
    log(`▶ ${name}`);
    await fn();
    const ms = Date.now() - t0;
    this.steps.push({ name, ms });
    log(`  done in ${ms} ms`);
  }

  async shot(name, page = this.page) {
    this.shotNo += 1;
    const file = join(this.shots, `${this.prefix}-${String(this.shotNo).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file });
    log(`  screenshot ${file}`);
  }

  async close() {
    await this.context?.close();
  }
}

/** Hand over to the Python test and wait for its answer (see the header). */
export async function checkpoint(name, data = {}, timeoutMs = 120_000) {
  const dir = env("GUILDNET_HANDSHAKE");
  const file = join(dir, `${name}.json`);
  console.log(`@@checkpoint ${name} ${JSON.stringify(data)}`);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`checkpoint ${name}: no answer from the test`);
    await sleep(100);
  }
  await sleep(20); // the writer renames into place, but be kind to slow filesystems
  const reply = JSON.parse(readFileSync(file, "utf8"));
  if (!reply.ok) throw new Error(`checkpoint ${name}: ${reply.error}`);
  return reply;
}

/** Run `body(session)`; write the JSON report and exit 0/1. */
export async function main(session, profile, body) {
  let ok = false;
  let failure = null;
  try {
    await session.start(profile);
    await body(session);
    ok = true;
  } catch (e) {
    failure = String(e?.stack ?? e);
    log(`FAILED: ${failure}`);
    for (const p of session.context?.pages() ?? []) {
      try {
        await session.shot("failure", p);
      } catch {
        // the page may be gone
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
      writeFileSync(result, JSON.stringify({ ok, failure, steps, consoleErrors, expectedErrors }, null, 2));
    }
  }
  log(ok ? `PASSED ${session.steps.length} steps` : "FAILED");
  process.exit(ok ? 0 : 1);
}
