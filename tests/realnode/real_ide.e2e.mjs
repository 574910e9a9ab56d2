// Real IDEs on the real node, through GuildNet's UI, in Debian's Chromium.
//
// Started by tests/realnode/test_real_ide.py with a running Host App whose default cluster is
// the real-node test cluster. GUILDNET_FLOW picks the flow:
//
//   code-server  launch the preset from the UI, wait for Running (checkpoint "running": the test
//                reads the real Pod and seeds a file and the user settings by exec), reveal the
//                password, open the IDE tab, log in inside the iframe, open the file, edit, save
//                (checkpoint "saved": the test reads the file in the pod), run a command in the
//                integrated terminal and see its output, delete the workspace from the UI
//                (checkpoint "deleted": the test checks the pod is gone).
//   jupyter      launch the preset, reveal the token, open the workspace in a new tab, log in,
//                create a notebook, run 1+1 and see 2, with the kernel idle afterwards.
//
// Environment: GUILDNET_URL, GUILDNET_FLOW, GUILDNET_WORKSPACE (name to launch), GUILDNET_CLUSTER_ID
// (default "default"), GUILDNET_SCREENSHOTS, GUILDNET_RESULT, GUILDNET_PROFILE_DIR,
// GUILDNET_HANDSHAKE, GUILDNET_CHROMIUM.
import { checkpoint, env, expect, log, main, Session } from "./browser.mjs";

const BASE = env("GUILDNET_URL");
const FLOW = env("GUILDNET_FLOW");
const WS = env("GUILDNET_WORKSPACE");
const CLUSTER = env("GUILDNET_CLUSTER_ID", "default");
const FILE = "hello-from-guildnet.txt";

// Console errors that are not GuildNet's and do not break the IDE, each with its reason.
const ALLOWED = {
  "code-server": [
    {
      // VS Code web asks the (absent) extension gallery and marketplace; the test namespace has
      // no network, so these fetches fail. Nothing in the flow needs an extension.
      re: /open-vsx\.org|marketplace\.visualstudio\.com|vscode-cdn\.net|ERR_NAME_NOT_RESOLVED|ERR_INTERNET_DISCONNECTED|ERR_CONNECTION_REFUSED|Failed to fetch/,
      reason: "no internet in the test network namespace (extension gallery, CDN)",
    },
  ],
  jupyter: [
    {
      // JupyterLab asks for the news/update feed and PyPI for updates when allowed; offline here.
      re: /ERR_NAME_NOT_RESOLVED|ERR_INTERNET_DISCONNECTED|jupyter\.org/,
      reason: "no internet in the test network namespace (news and update checks)",
    },
  ],
};

const session = new Session({
  shots: env("GUILDNET_SCREENSHOTS"),
  prefix: `real-${FLOW}`,
  allowed: ALLOWED[FLOW] ?? [],
});

async function launch(page, preset) {
  await session.step(`launch the ${preset} preset from the UI`, async () => {
    await page.goto(`${BASE}/#/c/${CLUSTER}/launch`);
    await page.locator(`[data-preset="${preset}"]`).waitFor();
    await page.locator(`[data-preset="${preset}"] input`).check();
    await page.fill("#launch-name", WS);
    await session.shot("launch");
    await page.getByRole("button", { name: "Launch", exact: true }).click();
    await page.waitForURL(new RegExp(`#/c/${CLUSTER}/servers/${WS}$`));
    await page.locator(".steps").waitFor();
  });
  await session.step("the real pod comes up: Running", async () => {
    await page.locator(".page-head .phase", { hasText: "Running" }).waitFor({ timeout: 180_000 });
    const states = await page.locator(".steps [data-state]").evaluateAll((els) => els.map((e) => e.dataset.state));
    expect(states.length >= 6 && states.every((s) => s === "done"), `all steps done: ${states}`);
    await page.locator("text=Started").first().waitFor({ timeout: 30_000 });
    await session.shot("running");
  });
}

async function revealPassword(page) {
  let pw = "";
  await session.step("reveal the password the UI shows", async () => {
    await page.getByRole("button", { name: "Reveal" }).click();
    await page.getByRole("button", { name: "Hide" }).waitFor();
    pw = (await page.locator(".password-value").first().innerText()).trim();
    expect(pw.length >= 8 && !pw.includes("•"), "password revealed");
  });
  return pw;
}

async function deleteFromUi(page) {
  await session.step(`delete ${WS} from the UI`, async () => {
    await page.goto(`${BASE}/#/c/${CLUSTER}/servers/${WS}`);
    await page.locator(".page-head .phase").waitFor();
    await page.getByRole("button", { name: "Delete" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByRole("button", { name: "Delete workspace" }).click();
    await page.getByText("This workspace was deleted.").waitFor({ timeout: 90_000 });
    await session.shot("deleted");
  });
}

async function codeServer() {
  const page = session.page;
  await launch(page, "code-server");
  const seeded = await checkpoint("running", { workspace: WS });
  const password = await revealPassword(page);

  const frame = page.frameLocator("iframe.ide-frame");
  await session.step("open the IDE tab and log in with that password", async () => {
    await page.getByRole("tab", { name: "IDE" }).click();
    await page.locator("iframe.ide-frame").waitFor();
    const pw = frame.locator('input[name="password"]');
    await pw.waitFor({ timeout: 60_000 });
    await session.shot("login");
    await pw.fill(password);
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
    await editor.locator(".view-lines", { hasText: seeded.content }).waitFor({ timeout: 30_000 });
    await editor.locator(".view-lines").click();
    await page.keyboard.press("Control+End");
    await page.keyboard.press("End");
    await page.keyboard.press("Enter");
    await page.keyboard.type(seeded.edit, { delay: 5 });
    await frame.locator(".tabs-container .tab.active.dirty").waitFor();
    await page.keyboard.press("Control+S");
    await frame.locator(".tabs-container .tab.active:not(.dirty)").waitFor({ timeout: 30_000 });
    await session.shot("saved");
  });
  await checkpoint("saved", { file: seeded.path });

  await session.step("run a command in the integrated terminal and see its output", async () => {
    await page.keyboard.press("F1");
    const input = frame.locator(".quick-input-widget input");
    await input.waitFor();
    await input.fill(">Terminal: Create New Terminal");
    await frame.locator(".quick-input-list .monaco-list-row", { hasText: "Create New Terminal" }).first().waitFor();
    await page.keyboard.press("Enter");
    const term = frame.locator(".terminal-wrapper.active .xterm, .terminal .xterm").first();
    await term.waitFor({ timeout: 30_000 });
    // the shell's prompt (bash as uid 1000 in the pod)
    await frame.locator(".xterm-rows", { hasText: "$" }).first().waitFor({ timeout: 30_000 });
    await term.click();
    await page.keyboard.type('echo "sum=$((40+2)) user=$(id -un) host=$(hostname)"', { delay: 5 });
    await page.keyboard.press("Enter");
    await frame.locator(".xterm-rows", { hasText: "sum=42 user=" }).waitFor({ timeout: 30_000 });
    const rows = await frame.locator(".xterm-rows").first().innerText();
    const line = rows.split("\n").find((l) => l.startsWith("sum=42"));
    log(`  terminal: ${line}`);
    expect(line && line.includes(`host=${seeded.pod}`), `the command ran in pod ${seeded.pod}: ${line}`);
    await session.shot("terminal");
  });

  await deleteFromUi(page);
  await checkpoint("deleted", { workspace: WS });
}

async function jupyter() {
  const page = session.page;
  await launch(page, "jupyter");
  await checkpoint("running", { workspace: WS });
  const token = await revealPassword(page);

  let lab = null;
  await session.step("open the workspace in a new tab and log in with the token", async () => {
    const opened = session.context.waitForEvent("page");
    await page.getByRole("link", { name: /Open in new tab/ }).click();
    lab = await opened;
    session.watch(lab);
    const field = lab.locator("#password_input");
    await field.waitFor({ timeout: 60_000 });
    expect(new URL(lab.url()).pathname.startsWith(`/proxy/server/${WS}/`), `login page under the prefix: ${lab.url()}`);
    await session.shot("login", lab);
    await field.fill(token);
    await lab.locator("#login_submit").click();
    await lab.locator(".jp-LabShell").waitFor({ timeout: 90_000 });
    await lab.locator(".jp-LauncherCard").first().waitFor({ timeout: 60_000 });
    await session.shot("lab", lab);
  });

  await session.step("create a notebook, run 1+1, see 2", async () => {
    await lab.locator('.jp-LauncherCard[data-category="Notebook"]').first().click();
    const cell = lab.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content").first();
    await cell.waitFor({ timeout: 60_000 });
    const idle = lab.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]');
    await idle.first().waitFor({ timeout: 90_000 });
    await cell.click();
    await lab.keyboard.type("1+1");
    await lab.keyboard.press("Shift+Enter");
    const out = lab.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").first();
    await out.waitFor({ timeout: 60_000 });
    const text = (await out.innerText()).trim();
    expect(text === "2", `the output of 1+1 is ${JSON.stringify(text)}`);
    await idle.first().waitFor({ timeout: 30_000 });
    await session.shot("notebook", lab);
  });
  await lab.close();
}

await main(session, env("GUILDNET_PROFILE_DIR"), async () => {
  if (FLOW === "code-server") await codeServer();
  else if (FLOW === "jupyter") await jupyter();
  else throw new Error(`unknown GUILDNET_FLOW ${FLOW}`);
});
