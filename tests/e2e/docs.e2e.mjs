// GET /api/docs in Debian's Chromium (playwright-core): Swagger UI renders the Host App's
// OpenAPI description from its own origin, under its CSP, with no console errors and no
// request leaving the origin. Started by tests/e2e/test_api_docs.py. Environment:
//   GUILDNET_URL            https://127.0.0.1:<port> of the Host App
//   GUILDNET_CHROMIUM       browser executable (default /usr/bin/chromium)
//   GUILDNET_SCREENSHOT     PNG written here
//   GUILDNET_RESULT         JSON report written here
//   GUILDNET_PROFILE_DIR    a fresh, empty Chromium profile directory
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";

const require = createRequire(new URL("../../ui/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env("GUILDNET_URL");
const SHOT = env("GUILDNET_SCREENSHOT");
const RESULT = env("GUILDNET_RESULT");
const PROFILE = env("GUILDNET_PROFILE_DIR");
const origin = new URL(BASE).origin;

mkdirSync(dirname(SHOT), { recursive: true });
mkdirSync(PROFILE, { recursive: true });

const consoleErrors = [];
const foreign = [];
const report = { ok: false };
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
  ignoreHTTPSErrors: true,
  viewport: { width: 1366, height: 900 },
});
context.setDefaultTimeout(30_000);
const page = context.pages()[0] ?? (await context.newPage());
page.on("console", (m) => {
  if (m.type() === "error" || m.type() === "warning") {
    console.log(`console.${m.type()}: ${m.text()}`);
    if (m.type() === "error") consoleErrors.push(m.text());
  }
});
page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
page.on("request", (r) => {
  const url = new URL(r.url());
  if (url.protocol !== "data:" && url.origin !== origin) foreign.push(r.url());
});

try {
  const response = await page.goto(`${BASE}/api/docs`);
  report.status = response?.status();
  report.csp = response?.headers()["content-security-policy"] ?? "";
  await page.waitForSelector(".swagger-ui .info .title");
  await page.waitForSelector(".opblock-tag-section");
  report.title = (await page.locator(".swagger-ui .info .title").first().innerText()).trim();
  report.tags = await page.locator(".opblock-tag").allInnerTexts();
  report.operations = await page.locator(".opblock").count();
  report.paths = await page.locator(".opblock-summary-path").allInnerTexts();
  // Open one operation: its parameters, responses and schemas render.
  const op = page.locator(".opblock-get .opblock-summary", { hasText: "/api/servers/{server_id}" });
  await op.first().click();
  await page.waitForSelector(".opblock.is-open .responses-table");
  report.openResponses = await page
    .locator(".opblock.is-open .responses-table .response-col_status")
    .allInnerTexts();
  // The SSE route's events are in its description.
  const sse = page.locator(".opblock-get .opblock-summary", { hasText: "/sse/servers" });
  await sse.first().click();
  await page.waitForFunction(() =>
    [...document.querySelectorAll(".opblock.is-open")].some((e) =>
      e.textContent.includes("snapshot"),
    ),
  );
  await page.waitForTimeout(500); // late console errors (fonts, images) show up too
  await page.screenshot({ path: SHOT, fullPage: false });
  report.ok = true;
} catch (e) {
  report.error = String(e?.stack ?? e);
  try {
    await page.screenshot({ path: SHOT, fullPage: false });
  } catch {}
} finally {
  report.consoleErrors = consoleErrors;
  report.foreignRequests = foreign;
  writeFileSync(RESULT, JSON.stringify(report, null, 2));
  await context.close();
}
console.log(JSON.stringify(report, null, 2).slice(0, 4000));
process.exit(report.ok ? 0 : 1);
