import { env, expect, log, main, Session } from "./browser.mjs";
const URL0 = process.env.CS_URL;
const session = new Session({ shots: "/tmp/e2e-dev/shots", prefix: "cs", allowed: [], extraArgs: process.env.SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.SPKI}`] : [] });
const FILE = "hello-from-guildnet.txt";
await main(session, "/tmp/e2e-dev/prof-cs-" + Date.now(), async () => {
  const page = session.page;
  const frame = page; // no iframe in this dev run
  await session.step("login", async () => {
    await page.goto(URL0);
    const pw = frame.locator('input[name="password"]');
    await pw.waitFor({ timeout: 60_000 });
    await session.shot("login");
    await pw.fill("devpass123");
    await pw.press("Enter");
    await frame.locator(".monaco-workbench").waitFor({ timeout: 90_000 });
    await frame.locator(".explorer-folders-view").waitFor({ timeout: 60_000 });
    await session.shot("workbench");
  });
  await session.step(`open ${FILE}, edit and save it`, async () => {
    const row = frame.getByRole("treeitem", { name: new RegExp(FILE.replace(/\./g, "\\.")) });
    await row.waitFor({ timeout: 60_000 });
    await row.dblclick();
    const editor = frame.locator(".editor-instance .monaco-editor").first();
    await editor.locator(".view-lines", { hasText: "hello from the pod" }).waitFor({ timeout: 30_000 });
    await editor.locator(".view-lines").click();
    await page.keyboard.press("Control+End");
    await page.keyboard.type("edited in the browser", { delay: 5 });
    await frame.locator(".tabs-container .tab.active.dirty").waitFor();
    await page.keyboard.press("Control+S");
    await frame.locator(".tabs-container .tab.active:not(.dirty)").waitFor({ timeout: 30_000 });
    await session.shot("saved");
  });
  await session.step("terminal", async () => {
    await page.keyboard.press("F1");
    const input = frame.locator(".quick-input-widget input");
    await input.waitFor();
    await input.fill(">Terminal: Create New Terminal");
    await frame.locator(".quick-input-list .monaco-list-row", { hasText: "Create New Terminal" }).first().waitFor();
    await page.keyboard.press("Enter");
    const term = frame.locator(".terminal-wrapper.active .xterm, .terminal .xterm").first();
    await term.waitFor({ timeout: 30_000 });
    await frame.locator(".xterm-rows", { hasText: "$" }).first().waitFor({ timeout: 30_000 });
    await term.click();
    await page.keyboard.type('echo "sum=$((40+2)) user=$(id -un) host=$(hostname)"', { delay: 5 });
    await page.keyboard.press("Enter");
    await frame.locator(".xterm-rows", { hasText: "sum=42 user=" }).waitFor({ timeout: 30_000 });
    const rows = await frame.locator(".xterm-rows").first().innerText();
    const line = rows.split("\n").find((l) => l.startsWith("sum=42"));
    log(`  terminal: ${line}`);
    await session.shot("terminal");
  });
});
