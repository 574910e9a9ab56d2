// Time from navigation to a usable IDE in Debian's Chromium, per target, interleaved.
//
// Started by `python -m bench.ide` with a JSON plan in GUILDNET_BENCH_PLAN:
//   { "runs": 5, "chromium": "/usr/bin/chromium", "insecureOrigins": ["http://<pod>:8080", ...],
//     "spki": ["<base64 sha256 of a TLS target's public key>", ...],
//     "cases": [ { "ide": "code-server" | "jupyter", "target": "direct" | "guildnet" | "chp",
//                  "url": "<the IDE's root URL, ending in />", "secret": "<password or token>" } ] }
// and prints one line per measurement: `@@result <json>` with {ide, target, run, ms}.
//
// Every run gets a fresh browser context (cold HTTP cache, no cookies): the whole IDE is
// fetched through the target each time, as a user's first visit would.
//   code-server: log in with a form POST in the context (not timed), then time page.goto(url)
//                until the workbench's explorer lists the seeded file and the editor area is
//                rendered.
//   jupyter:     time page.goto(<url>lab/tree/bench.ipynb?token=...) until the notebook's
//                kernel reports idle; the session is shut down after each run.
import { CHROMIUM_ARGS, chromium } from "../../tests/browser/session.mjs";

const plan = JSON.parse(process.env.GUILDNET_BENCH_PLAN ?? "{}");
const runs = plan.runs ?? 5;
const TIMEOUT = 120_000;

const browser = await chromium.launch({
  executablePath: plan.chromium ?? "/usr/bin/chromium",
  headless: true,
  args: [
    ...CHROMIUM_ARGS,
    // the direct case is plain HTTP to a pod IP: make it a secure context like the TLS ones,
    // so the IDEs take the same code paths (service worker, crypto) everywhere
    `--unsafely-treat-insecure-origin-as-secure=${(plan.insecureOrigins ?? []).join(",")}`,
    // and trust GuildNet's and CHP's self-signed certificates (by public key), so that their
    // service workers register as they do for a user who installed the certificate
    `--ignore-certificate-errors-spki-list=${(plan.spki ?? []).join(",")}`,
  ],
});

async function codeServer(context, page, c) {
  const login = await context.request.post(`${c.url}login`, {
    form: { password: c.secret },
    maxRedirects: 0,
    ignoreHTTPSErrors: true,
  });
  if (login.status() !== 302) throw new Error(`${c.target}: login answered ${login.status()}`);
  const t0 = performance.now();
  await page.goto(c.url, { timeout: TIMEOUT });
  await page.locator(".explorer-folders-view .monaco-list-row", { hasText: "bench.txt" }).first().waitFor({ timeout: TIMEOUT });
  await page.locator(".part.editor").first().waitFor({ state: "visible", timeout: TIMEOUT });
  return performance.now() - t0;
}

async function jupyter(context, page, c) {
  const t0 = performance.now();
  await page.goto(`${c.url}lab/tree/bench.ipynb?token=${encodeURIComponent(c.secret)}`, { timeout: TIMEOUT });
  await page
    .locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]')
    .first()
    .waitFor({ timeout: TIMEOUT });
  const ms = performance.now() - t0;
  // shut the kernel down so every run starts one
  const headers = { Authorization: `token ${c.secret}` };
  const sessions = await context.request.get(`${c.url}api/sessions`, { headers, ignoreHTTPSErrors: true });
  for (const s of await sessions.json()) {
    await context.request.delete(`${c.url}api/sessions/${s.id}`, { headers, ignoreHTTPSErrors: true });
  }
  return ms;
}

let failed = false;
for (let run = 1; run <= runs; run += 1) {
  for (const c of plan.cases ?? []) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    try {
      const ms = c.ide === "code-server" ? await codeServer(context, page, c) : await jupyter(context, page, c);
      console.log(`@@result ${JSON.stringify({ ide: c.ide, target: c.target, run, ms: Math.round(ms) })}`);
    } catch (e) {
      failed = true;
      console.log(`@@error ${JSON.stringify({ ide: c.ide, target: c.target, run, error: String(e?.message ?? e).slice(0, 500) })}`);
    } finally {
      await context.close();
    }
  }
}
await browser.close();
process.exit(failed ? 1 : 0);
