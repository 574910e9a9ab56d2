// GET /api/docs in Debian's Chromium (playwright-core): Swagger UI renders the Host App's
// OpenAPI description from its own origin, under its CSP, with no console errors and no
// request leaving the origin (both asserted by tests/e2e/test_api_docs.py, which starts this
// script). Environment:
//   GUILDNET_URL            https://127.0.0.1:<port> of the Host App
//   GUILDNET_CHROMIUM       browser executable (default /usr/bin/chromium)
//   GUILDNET_SCREENSHOT     PNG written here (a failure's screenshot goes next to it)
//   GUILDNET_RESULT         JSON report written here
//   GUILDNET_PROFILE_DIR    a fresh, empty Chromium profile directory
import { dirname } from "node:path";

import { env, main, Session } from "../browser/session.mjs";

const BASE = env("GUILDNET_URL");
const SHOT = env("GUILDNET_SCREENSHOT");
const origin = new URL(BASE).origin;

const session = new Session({ tag: "docs", shots: dirname(SHOT), prefix: "api-docs" });
const report = { foreignRequests: [] };

await main(
  session,
  env("GUILDNET_PROFILE_DIR"),
  async (page) => {
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.protocol !== "data:" && url.origin !== origin) report.foreignRequests.push(r.url());
    });
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
  },
  report,
);
