// Cross-site request forgery in Debian's Chromium (playwright-core, no downloaded browser).
//
// Started by tests/e2e/test_csrf.py with a running Host App (the test cluster as its
// default cluster, three workspaces launched). A second HTTP server here, on another
// 127.0.0.1 port (another origin, and for the browser another site: scheme and port
// differ), serves the attacker's pages. The browser's requests reach the Host App as the
// local user (identity is the connection's), exactly what a page on the web could do:
//   1. a page whose form auto-POSTs to /api/admin/stop-all   -> 403 cross_origin
//   2. a page whose fetch() POSTs stop-all (no-cors, a "simple" request that does reach
//      the server) and DELETEs a workspace (CORS preflight refused, never sent)
//   3. every workspace is still there (asked by a script: Playwright's own HTTP client,
//      which sends neither Origin nor Sec-Fetch-Site)
//   4. the UI (same origin) deletes one workspace and stops all the others.
// The attacker's refused requests log console errors by design: they are reported, not failed
// on. Environment: GUILDNET_URL, GUILDNET_CHROMIUM, GUILDNET_RESULT, GUILDNET_PROFILE_DIR,
// GUILDNET_WORKSPACES (comma-separated ids), GUILDNET_SCREENSHOTS.
import { createServer } from "node:http";

import { env, expect, main, Session } from "../browser/session.mjs";

const BASE = env("GUILDNET_URL");
const WORKSPACES = env("GUILDNET_WORKSPACES").split(",");
const [VICTIM] = WORKSPACES;

const session = new Session({
  tag: "csrf",
  shots: env("GUILDNET_SCREENSHOTS"),
  prefix: "csrf",
  viewport: { width: 1280, height: 800 },
  timeout: 20_000,
});
const { log } = session;
const report = {};

// --- the attacker's site ---------------------------------------------------------------
const pages = {
  "/form": `<!doctype html><title>win a prize</title>
<form id="f" method="POST" action="${BASE}/api/admin/stop-all">
  <input type="hidden" name="x" value="1">
</form>
<script>document.getElementById("f").submit();</script>`,
  "/fetch": `<!doctype html><title>cat pictures</title>
<script>
window.results = (async () => {
  const out = {};
  try {
    const r = await fetch("${BASE}/api/admin/stop-all", { method: "POST", mode: "no-cors",
      body: "{}", headers: { "content-type": "text/plain" } });
    out.stopAll = r.type;
  } catch (e) { out.stopAll = "error: " + e.message; }
  try {
    const r = await fetch("${BASE}/api/servers/${VICTIM}", { method: "DELETE" });
    out.delete = String(r.status);
  } catch (e) { out.delete = "error: " + e.message; }
  try {
    const r = await fetch("${BASE}/api/jobs", { method: "POST", mode: "no-cors",
      body: JSON.stringify({ image: "nginx:1.27", name: "planted" }),
      headers: { "content-type": "text/plain" } });
    out.launch = r.type;
  } catch (e) { out.launch = "error: " + e.message; }
  return out;
})();
</script>`,
};
const evil = createServer((req, res) => {
  const body = pages[req.url ?? ""];
  res.writeHead(body ? 200 : 404, { "content-type": "text/html; charset=utf-8" });
  res.end(body ?? "not here");
});
await new Promise((resolve) => evil.listen(0, "127.0.0.1", resolve));
const EVIL = `http://127.0.0.1:${evil.address().port}`;
log(`attacker's site at ${EVIL}, Host App at ${BASE}`);

async function remaining() {
  // Playwright's own HTTP client: no Origin, no Sec-Fetch-*, like curl.
  const r = await session.context.request.get(`${BASE}/api/servers`);
  expect(r.status() === 200, `list: ${r.status()}`);
  return (await r.json()).map((s) => s.id).sort();
}

async function attack(page) {
  try {
    await session.step("a cross-site form POST to stop-all is refused", async () => {
      await page.goto(`${EVIL}/form`);
      await page.waitForURL(`${BASE}/api/admin/stop-all`);
      const body = JSON.parse(await page.locator("body").innerText());
      report.form = body;
      expect(body.error === "forbidden" && body.reason === "cross_origin", JSON.stringify(body));
      await session.shot("form-refused");
    });

    await session.step("cross-site fetch()es change nothing", async () => {
      await page.goto(`${EVIL}/fetch`);
      const results = await page.evaluate(() => window.results);
      report.fetch = results;
      log(`  fetch results ${JSON.stringify(results)}`);
      expect(results.stopAll === "opaque", `no-cors POST was sent: ${results.stopAll}`);
      expect(results.delete.startsWith("error"), `DELETE must not succeed: ${results.delete}`);
    });

    await session.step("a script still sees every workspace", async () => {
      const ids = await remaining();
      report.afterAttack = ids;
      for (const id of WORKSPACES) expect(ids.includes(id), `${id} survived: ${ids}`);
      expect(!ids.includes("planted"), `no workspace was planted: ${ids}`);
    });

    await session.step("the UI deletes a workspace", async () => {
      await page.goto(`${BASE}/#/c/default/servers/${VICTIM}`);
      await page.locator(".page-head .phase").waitFor();
      await page.locator('[data-testid="whoami"]').waitFor();
      report.whoami = await page.locator('[data-testid="whoami"]').innerText();
      await page.getByRole("button", { name: "Delete" }).click();
      await page.getByRole("dialog").getByRole("button", { name: "Delete workspace" }).click();
      await page.getByText("This workspace was deleted.").waitFor({ timeout: 60_000 });
      await session.shot("ui-deleted");
    });

    await session.step("the UI stops all", async () => {
      await page.goto(`${BASE}/#/c/default/admin`);
      await page.getByLabel(/Type the cluster id/).fill("default");
      await page.getByRole("button", { name: "Stop all workspaces" }).click();
      await page.locator('[data-testid="stop-all-result"]').waitFor({ timeout: 60_000 });
      report.stopAll = await page.locator('[data-testid="stop-all-result"]').innerText();
      for (const id of WORKSPACES.slice(1)) {
        expect(report.stopAll.includes(id), `stop-all deleted ${id}: ${report.stopAll}`);
      }
    });
  } finally {
    evil.close();
  }
}

await main(session, env("GUILDNET_PROFILE_DIR"), attack, report);
