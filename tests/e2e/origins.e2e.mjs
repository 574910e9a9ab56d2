// A hostile workspace page in Debian's Chromium, once per isolation mode.
//
// Started by tests/e2e/test_origins_e2e.py. The workspace's upstream serves a page whose script
// tries to act as whoever opened it: read the Host App's API (the server list, the workspace's
// password), send the API a mutating request, and read the Host App page that frames it. This
// script opens the Host App UI's IDE tab for that workspace (the page runs inside the iframe, as
// a user would see it), waits for the page's attempts and writes what each one got. Environment:
//   GUILDNET_CASES        JSON: [{"mode", "ui": "<Host App URL>#/c/default/servers/<id>/ide", "frame": "<URL prefix of the framed page>"}]
//   GUILDNET_CHROMIUM     browser executable (default /usr/bin/chromium)
//   GUILDNET_RESULT       JSON report written here
//   GUILDNET_PROFILE_DIR  a fresh, empty Chromium profile directory
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../ui/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const CASES = JSON.parse(env("GUILDNET_CASES"));
const RESULT = env("GUILDNET_RESULT");
const PROFILE = env("GUILDNET_PROFILE_DIR");
mkdirSync(PROFILE, { recursive: true });

const log = (msg) => console.log(`[origins ${new Date().toISOString().slice(11, 19)}] ${msg}`);

const context = await chromium.launchPersistentContext(PROFILE, {
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
  ],
  // The Host App's certificate is self-signed (its wildcard SAN is checked in tests/unit/test_tls.py).
  ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 800 },
});
context.setDefaultTimeout(30_000);

const report = { cases: [] };
try {
  for (const c of CASES) {
    log(`▶ ${c.mode}: ${c.ui}`);
    const page = await context.newPage();
    page.on("console", (m) => log(`console.${m.type()}: ${m.text()}`));
    page.on("framenavigated", (f) => log(`frame: ${f.url()}`));
    await page.goto(c.ui);
    await page.locator("iframe.ide-frame").waitFor();
    const src = await page.locator("iframe.ide-frame").getAttribute("src");
    let frame = null;
    for (let i = 0; i < 300 && !frame; i++) {
      frame = page.frames().find((f) => f !== page.mainFrame() && f.url().startsWith(c.frame)) ?? null;
      if (!frame) await page.waitForTimeout(100);
    }
    if (!frame) throw new Error(`${c.mode}: no frame at ${c.frame} (iframe src ${src}; frames ${page.frames().map((f) => f.url())})`);
    await frame.waitForFunction(() => window.attack !== undefined);
    const attack = await frame.evaluate(() => window.attack);
    log(`  ${JSON.stringify(attack).slice(0, 600)}`);
    report.cases.push({ mode: c.mode, iframeSrc: src, frameUrl: frame.url(), attack });
    await page.close();
  }
  report.ok = true;
} catch (e) {
  report.ok = false;
  report.error = String(e?.stack ?? e);
  log(report.error);
} finally {
  writeFileSync(RESULT, JSON.stringify(report, null, 2));
  await context.close();
}
process.exit(report.ok ? 0 : 1);
