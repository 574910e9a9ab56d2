// A hostile workspace page in Debian's Chromium, once per isolation mode.
//
// Started by tests/e2e/test_origins_e2e.py. The workspace's upstream serves a page whose script
// tries to act as whoever opened it: read the Host App's API (the server list, the workspace's
// password), send the API a mutating request, and read the Host App page that frames it. This
// script opens the Host App UI's IDE tab for that workspace (the page runs inside the iframe, as
// a user would see it), waits for the page's attempts and writes what each one got; the test
// judges those. The refused attempts log console errors by design: they are reported, not
// failed on. Environment:
//   GUILDNET_CASES        JSON: [{"mode", "ui": "<Host App URL>#/c/default/servers/<id>/ide", "frame": "<URL prefix of the framed page>"}]
//   GUILDNET_CHROMIUM     browser executable (default /usr/bin/chromium)
//   GUILDNET_RESULT       JSON report written here
//   GUILDNET_PROFILE_DIR  a fresh, empty Chromium profile directory
import { env, main, Session } from "../browser/session.mjs";

const CASES = JSON.parse(env("GUILDNET_CASES"));

const session = new Session({ tag: "origins", viewport: { width: 1280, height: 800 } });
const { log } = session;
const report = { cases: [] };

await main(
  session,
  env("GUILDNET_PROFILE_DIR"),
  async () => {
    for (const c of CASES) {
      log(`▶ ${c.mode}: ${c.ui}`);
      const page = await session.context.newPage();
      // The hostile page narrates its attempts (errors and warnings the session logs itself).
      page.on("console", (m) => {
        if (m.type() !== "error" && m.type() !== "warning") log(`console.${m.type()}: ${m.text()}`);
      });
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
  },
  report,
);
