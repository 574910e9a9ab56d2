// The UI's end-to-end run in Debian's Chromium (playwright-core, no downloaded browser).
//
// Started by tests/e2e/test_ui_e2e.py with a running Host App (no default cluster) and the
// test cluster's kubeconfig; see that file for the flow. Environment:
//   GUILDNET_URL            https://127.0.0.1:<port> of the Host App
//   GUILDNET_KUBECONFIG     path of the test cluster's kubeconfig
//   GUILDNET_CLUSTER_ID     id to register the cluster under
//   GUILDNET_HOSTAPP_PID    the Host App's pid (stopped at the end to test the outage banner)
//   GUILDNET_CHROMIUM       browser executable (default /usr/bin/chromium)
//   GUILDNET_SCREENSHOTS    directory for the screenshots
//   GUILDNET_RESULT         JSON report written here
//   GUILDNET_PROFILE_DIR    a fresh, empty Chromium profile directory
import { readFileSync } from "node:fs";

import { env, expect, main, Session } from "../browser/session.mjs";

const BASE = env("GUILDNET_URL");
const KUBECONFIG = readFileSync(env("GUILDNET_KUBECONFIG"), "utf8");
const CLUSTER = env("GUILDNET_CLUSTER_ID", "e2e");
const HOSTAPP_PID = Number(env("GUILDNET_HOSTAPP_PID", "0"));
const WS = "e2e-code";
const WS2 = "e2e-web";

const session = new Session({
  tag: "e2e",
  shots: env("GUILDNET_SCREENSHOTS", "test-output/screenshots"),
  fullPage: true,
  timeout: 20_000,
  contextOptions: { permissions: ["clipboard-read", "clipboard-write"] },
});
const { log } = session;
const report = { proxyMissing: false };

const text = (sel) => session.page.locator(sel).first().innerText();

async function flow(page) {
  await session.step("open the UI: no cluster yet, so the Clusters screen", async () => {
    await page.goto(`${BASE}/`);
    await page.waitForURL(/#\/clusters$/);
    await page.getByText("No clusters yet").waitFor();
    const csp = (await page.request.get(`${BASE}/`)).headers()["content-security-policy"] ?? "";
    expect(csp.includes("script-src 'self'"), `CSP on / is ${csp}`);
    await session.shot("clusters-empty");
  });

  await session.step("add the cluster: client-side validation, then the real add", async () => {
    await page.getByLabel("Cluster id").fill("Not_A_Label");
    await page.getByRole("button", { name: "Add cluster" }).click();
    await page.locator("#cluster-id-error").waitFor();
    expect((await text("#cluster-kubeconfig-error")).includes("kubeconfig"), "kubeconfig required");
    await session.shot("clusters-validation");
    await page.getByLabel("Cluster id").fill(CLUSTER);
    await page.getByLabel("Display name (optional)").fill("E2E test cluster");
    // keyboard: the kubeconfig textarea is reachable with Tab from the name field
    await page.getByLabel("Display name (optional)").press("Tab");
    const focused = await page.evaluate(() => document.activeElement?.id);
    expect(focused === "cluster-kubeconfig", `Tab from name focuses ${focused}`);
    await page.locator("#cluster-kubeconfig").fill(KUBECONFIG);
    await page.getByRole("button", { name: "Add cluster" }).click();
    await page.getByText("Open its workspaces →").waitFor({ timeout: 60_000 });
    await page.locator(`tr[data-cluster="${CLUSTER}"]`).getByText(/Reachable/).waitFor();
    await session.shot("clusters-added");
  });

  await session.step("workspaces: empty state, live", async () => {
    await page.getByText("Open its workspaces →").click();
    await page.waitForURL(new RegExp(`#/c/${CLUSTER}$`));
    await page.getByText("No workspaces on this cluster yet").waitFor({ timeout: 30_000 });
    await page.locator(".live-on").first().waitFor();
    await session.shot("workspaces-empty");
  });

  await session.step("launch: presets, prefilled advanced section, client-side validation", async () => {
    await page.getByRole("link", { name: "Launch workspace" }).first().click();
    await page.waitForURL(/\/launch$/);
    await page.locator('[data-preset="code-server"]').waitFor();
    const presets = await page.locator("[data-preset]").count();
    expect(presets >= 3, `${presets} presets`);
    await page.locator('[data-preset="code-server"] input').check();
    await page.getByText("Advanced").click();
    // prefilled from /api/image-defaults: code-server listens on 8080
    await page.locator("#launch-ports-0-containerPort").waitFor();
    expect((await page.inputValue("#launch-ports-0-containerPort")) === "8080", "port 8080 prefilled");
    expect((await page.inputValue("#launch-env-0-name")) === "PORT", "PORT env prefilled");
    await page.fill("#launch-name", WS);
    await page.fill("#launch-ports-0-containerPort", "70000");
    await page.fill("#launch-resources-requests-memory", "2Gi");
    await page.fill("#launch-resources-limits-memory", "1Gi");
    await page.getByRole("button", { name: "Launch", exact: true }).click();
    await page.locator("#launch-ports-0-containerPort-error").waitFor();
    expect(
      (await text("#launch-ports-0-containerPort-error")).includes("between 1 and 65535"),
      "port range error shown at the port",
    );
    expect(
      (await text("#launch-resources-requests-memory-error")).includes("greater than the limit"),
      "request > limit shown at the request",
    );
    const active = await page.evaluate(() => document.activeElement?.id);
    expect(active === "launch-ports-0-containerPort", `focus moved to the first error (${active})`);
    await session.shot("launch-validation");
    await page.fill("#launch-ports-0-containerPort", "8080");
    await page.fill("#launch-resources-requests-memory", "");
    await page.fill("#launch-resources-limits-memory", "");
    await page.locator('[data-preset="code-server"]').scrollIntoViewIfNeeded();
    await session.shot("launch");
  });

  await session.step("launch the workspace and follow its progress to Running", async () => {
    await page.getByRole("button", { name: "Launch", exact: true }).click();
    await page.waitForURL(new RegExp(`#/c/${CLUSTER}/servers/${WS}$`));
    await page.locator(".steps").waitFor();
    await session.shot("detail-starting");
    await page.locator(".page-head .phase", { hasText: "Running" }).waitFor({ timeout: 120_000 });
    const states = await page.locator(".steps [data-state]").evaluateAll((els) => els.map((e) => e.dataset.state));
    expect(states.length >= 6 && states.every((s) => s === "done"), `all steps done: ${states}`);
    await page.getByRole("heading", { name: "Events" }).waitFor();
    await page.locator("text=Scheduled").first().waitFor({ timeout: 30_000 });
    // the proxy URL names the workspace's path on this origin
    const detailsText = await text("dl.kv");
    expect(detailsText.includes(`/proxy/server/${WS}/`), "proxy URL shown");
  });

  await session.step("password: reveal and copy", async () => {
    await page.getByRole("button", { name: "Reveal" }).click();
    await page.getByRole("button", { name: "Hide" }).waitFor();
    const pw = (await text(".password-value")).trim();
    expect(pw.length >= 8 && !pw.includes("•"), "password revealed");
    await page.getByRole("button", { name: "Copy password" }).click();
    await page.getByRole("button", { name: "Copied" }).waitFor();
    const clip = await page.evaluate(() => navigator.clipboard.readText());
    expect(clip === pw, "clipboard holds the password");
    await session.shot("detail-running");
  });

  await session.step("logs: stream, search, pause and resume", async () => {
    await page.getByRole("tab", { name: "Logs" }).click();
    await page.waitForURL(/\/logs$/);
    await page.locator(".log-line", { hasText: "e2e log line" }).first().waitFor({ timeout: 30_000 });
    const n1 = await page.locator(".log-line").count();
    await page.waitForTimeout(2500);
    const n2 = await page.locator(".log-line").count();
    expect(n2 > n1, `new lines stream in (${n1} -> ${n2})`);
    await page.getByPlaceholder("Search logs").fill("ERROR");
    await page.locator(".log-line mark", { hasText: "ERROR" }).first().waitFor({ timeout: 15_000 });
    const shown = await page.locator(".log-line").allInnerTexts();
    expect(shown.length > 0 && shown.every((l) => l.includes("ERROR")), "search keeps only matches");
    await session.shot("logs-search");
    await page.getByPlaceholder("Search logs").fill("");
    await page.getByRole("button", { name: "Pause" }).click();
    await page.locator('[data-log-status="paused"]').waitFor();
    const paused1 = await page.locator(".log-line").count();
    await page.waitForTimeout(1500);
    const paused2 = await page.locator(".log-line").count();
    expect(paused1 === paused2, "no lines while paused");
    await page.getByRole("button", { name: "Resume" }).click();
    await page.locator('[data-log-status="open"]').waitFor();
    await page.waitForFunction((n) => document.querySelectorAll(".log-line").length > n, paused2, { timeout: 15_000 });
    // resumed from the last event id: no line twice
    const lines = await page.locator(".log-line").allInnerTexts();
    const numbered = lines.filter((l) => /e2e log line \d+/.test(l));
    expect(new Set(numbered).size === numbered.length, "no duplicate lines after resume");
    const dl = await page.getByRole("link", { name: "Download" }).getAttribute("href");
    const res = await page.request.get(`${BASE}${dl}`);
    expect(res.ok() && (await res.text()).includes("e2e log line"), "download has the log");
    await session.shot("logs");
  });

  await session.step("IDE tab: the workspace's UI in an iframe through the proxy", async () => {
    // The reverse proxy (issue 4) may not be there yet: then the iframe shows its 404.
    const probe = await page.request.get(`${BASE}/api/cluster/${CLUSTER}/proxy/server/${WS}/`, { maxRedirects: 0 });
    report.proxyMissing = probe.status() === 404 && (await probe.text()).includes("no route for");
    if (report.proxyMissing) {
      log("  the reverse proxy is not built yet: the iframe will show its 404");
      session.allow(/status of 404/, "the reverse proxy is not built yet: the iframe shows its 404", { count: 1 });
    }
    await page.getByRole("tab", { name: "IDE" }).click();
    const frameEl = page.locator("iframe.ide-frame");
    await frameEl.waitFor();
    const src = await frameEl.getAttribute("src");
    expect(src.includes(`/proxy/server/${WS}/`), `iframe src ${src}`);
    const newTab = await page.getByRole("link", { name: /Open in new tab/ }).getAttribute("href");
    expect(newTab === src, "open-in-new-tab goes to the same URL");
    if (!report.proxyMissing) {
      // The code-server-like backend redirects to ./login, sets its session cookie and
      // lands on /?folder=x: all inside the iframe, through the proxy.
      const frame = page.frameLocator("iframe.ide-frame");
      await frame.getByText("folder=x").waitFor({ timeout: 30_000 });
      const inner = page.frames().find((f) => f.url().includes(`/proxy/server/${WS}/`));
      expect(inner, "the iframe's document is under the workspace's proxy path");
      log(`  iframe at ${inner.url()}`);
      // The cookie comes back: another page of the IDE opens without a new login.
      await inner.goto(new URL("./?folder=from-e2e", inner.url()).toString());
      await frame.getByText("folder=from-e2e").waitFor();
      // A WebSocket from the IDE's page echoes through the proxy.
      const echoed = await inner.evaluate(
        (url) =>
          new Promise((resolve, reject) => {
            const ws = new WebSocket(url);
            const timer = setTimeout(() => reject(new Error("websocket timeout")), 10_000);
            ws.onopen = () => ws.send("hello through the proxy");
            ws.onmessage = (ev) => {
              clearTimeout(timer);
              resolve(String(ev.data));
              ws.close();
            };
            ws.onerror = () => reject(new Error("websocket error"));
          }),
        new URL("./ws", inner.url()).toString().replace(/^http/, "ws"),
      );
      expect(echoed === "hello through the proxy", `websocket echo: ${echoed}`);
    } else {
      await page.waitForTimeout(1500);
    }
    await session.shot("ide");
  });

  await session.step("workspaces list: live row, filters", async () => {
    await page.getByRole("link", { name: "Workspaces" }).first().click();
    const row = page.locator(`tr[data-server="${WS}"]`);
    await row.waitFor();
    expect((await row.getAttribute("data-phase")) === "Running", "row shows Running");
    await row.getByRole("link", { name: /Open/ }).waitFor();
    await page.getByPlaceholder("Filter by name or image").fill("no-such-thing");
    await page.getByText("No workspace matches these filters").waitFor();
    await page.getByPlaceholder("Filter by name or image").fill("code-server");
    await row.waitFor();
    await page.locator(".filters select").selectOption("Failed");
    await page.getByText("No workspace matches these filters").waitFor();
    await page.locator(".filters select").selectOption("Running");
    await row.waitFor();
    expect(page.url().includes("phase=Running"), "filters are in the URL");
    await session.shot("workspaces");
    // the same screen in dark mode, on a small laptop screen
    await page.emulateMedia({ colorScheme: "dark" });
    await page.setViewportSize({ width: 1280, height: 720 });
    await session.shot("workspaces-dark-1280");
    await page.emulateMedia({ colorScheme: "light" });
    await page.setViewportSize({ width: 1366, height: 900 });
    await page.getByRole("button", { name: "Clear filters" }).click();
  });

  await session.step("stop and start from the list; the server page says it is stopped", async () => {
    const row = page.locator(`tr[data-server="${WS}"]`);
    await row.locator('[data-action="stop"]').click();
    await page.locator(`tr[data-server="${WS}"][data-phase="Stopped"]`).waitFor({ timeout: 60_000 });
    await row.locator('[data-action="start"]').waitFor();
    await session.shot("workspaces-stopped");
    await row.getByRole("link", { name: WS, exact: true }).click();
    await page.locator(".page-head .phase", { hasText: "Stopped" }).waitFor();
    await page.locator('[data-stopped-reason="UserRequested"]').waitFor();
    await session.shot("server-stopped");
    await page.locator('.page-head [data-action="start"]').click();
    await page.locator(".page-head .phase", { hasText: "Running" }).waitFor({ timeout: 60_000 });
    await page.locator('.page-head [data-action="restart"]').waitFor();
    await page.getByRole("link", { name: "Workspaces" }).first().click();
    await page.locator(`tr[data-server="${WS}"][data-phase="Running"]`).waitFor();
  });

  await session.step("launch again with the same name: the server's 409 at the name field", async () => {
    await page.getByRole("link", { name: "Launch", exact: true }).click();
    await page.locator('[data-preset="web-app"]').waitFor();
    await page.locator('[data-preset="web-app"] input').check();
    await page.fill("#launch-name", WS);
    session.allow(/status of 409/, "the server's 409 for the taken name, shown at the name field", { count: 1 });
    await page.getByRole("button", { name: "Launch", exact: true }).click();
    await page.locator("#launch-name-error").waitFor();
    expect((await text("#launch-name-error")).includes("already exists"), "409 shown at name");
    await session.shot("launch-conflict");
    await page.fill("#launch-name", WS2);
    await page.getByRole("button", { name: "Launch", exact: true }).click();
    await page.waitForURL(new RegExp(`/servers/${WS2}$`));
  });

  await session.step(`delete ${WS} with confirmation`, async () => {
    await page.goto(`${BASE}/#/c/${CLUSTER}/servers/${WS}`);
    await page.locator(".page-head .phase").waitFor();
    await page.getByRole("button", { name: "Delete" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    await session.shot("delete-confirm");
    // Escape cancels
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    await page.getByRole("button", { name: "Delete" }).click();
    await dialog.getByRole("button", { name: "Delete workspace" }).click();
    await page.getByText("This workspace was deleted.").waitFor({ timeout: 60_000 });
    await session.shot("deleted");
  });

  await session.step("admin: stop all with a typed confirmation", async () => {
    await page.getByRole("link", { name: "Admin" }).click();
    const button = page.getByRole("button", { name: "Stop all workspaces" });
    expect(await button.isDisabled(), "disabled before confirmation");
    await page.getByLabel(/Type the cluster id/).fill("wrong");
    expect(await button.isDisabled(), "disabled for a wrong confirmation");
    await page.getByLabel(/Type the cluster id/).fill(CLUSTER);
    await button.click();
    await page.locator('[data-testid="stop-all-result"]').waitFor({ timeout: 60_000 });
    const result = await text('[data-testid="stop-all-result"]');
    expect(result.includes(WS2), `stop-all deleted ${WS2}: ${result}`);
    await session.shot("admin-stop-all");
    await page.getByRole("link", { name: "Workspaces" }).first().click();
    await page.getByText("No workspaces on this cluster yet").waitFor({ timeout: 60_000 });
  });

  await session.step("keyboard: skip link and focus order reach the main content", async () => {
    await page.goto(`${BASE}/#/c/${CLUSTER}`);
    await page.reload();
    await page.getByText("No workspaces on this cluster yet").waitFor();
    await page.keyboard.press("Tab");
    const first = await page.evaluate(() => document.activeElement?.textContent);
    expect(first?.includes("Skip to content"), `first Tab stop is the skip link (${first})`);
    await page.keyboard.press("Enter");
    const focused = await page.evaluate(() => document.activeElement?.id);
    expect(focused === "main", `skip link focuses main (${focused})`);
  });

  await session.step("console is free of errors", async () => {
    const errors = session.consoleErrors;
    expect(errors.length === 0, `console errors: ${JSON.stringify(errors, null, 2)}`);
  });

  await session.step("the Host App goes away: the UI says so and keeps retrying", async () => {
    if (!HOSTAPP_PID) return;
    session.allow(/[^]*/, "the Host App is stopped: Chromium logs every request that fails from here on");
    process.kill(HOSTAPP_PID, "SIGTERM");
    await page.getByText("Cannot reach the Host App.").waitFor({ timeout: 30_000 });
    await page.getByText(/Reconnecting in \d+s/).waitFor();
    await session.shot("host-unreachable");
  });
}

const PROFILE = env("GUILDNET_PROFILE_DIR", `/tmp/guildnet-e2e-profile-${process.pid}`);
await main(session, PROFILE, flow, report);
