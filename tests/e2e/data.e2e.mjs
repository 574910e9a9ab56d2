// The Data section's end-to-end run in Debian's Chromium (playwright-core, no downloaded browser).
//
// Started by tests/e2e/test_data_ui.py with a running Host App (default cluster = the test
// cluster, RETHINKDB_ADDR = a real RethinkDB server); see that file for the flow. Environment:
//   GUILDNET_URL            https://127.0.0.1:<port> of the Host App
//   GUILDNET_CONTROL_URL    the test's control endpoint: POST /insert {db,table,doc}, /kill, /start
//   GUILDNET_CHROMIUM       browser executable (default /usr/bin/chromium)
//   GUILDNET_SCREENSHOTS    directory for the screenshots
//   GUILDNET_RESULT         JSON report written here
//   GUILDNET_PROFILE_DIR    a fresh, empty Chromium profile directory
//   GUILDNET_DATA_FLOW      "browse" (the default: the flow above) or "deploy" (no RethinkDB
//                           in the cluster: the health says not_found and offers the deploy)
import { readFileSync } from "node:fs";

import { env, expect, main, Session, sleep } from "../browser/session.mjs";

const BASE = env("GUILDNET_URL");
const CONTROL = env("GUILDNET_CONTROL_URL", "");
const FLOW = env("GUILDNET_DATA_FLOW", "browse");
const CLUSTER = "default";
const DB = "e2e_shop";
const TABLE = "people";

const session = new Session({
  tag: "data-e2e",
  shots: env("GUILDNET_SCREENSHOTS", "test-output/screenshots/data"),
  fullPage: true,
  timeout: 20_000,
  contextOptions: { acceptDownloads: true },
});
const { log } = session;
const timings = {};

async function control(action, body = {}) {
  if (!CONTROL) throw new Error("GUILDNET_CONTROL_URL is not set");
  const res = await fetch(`${CONTROL}${action}`, { method: "POST", body: JSON.stringify(body) });
  const data = await res.json();
  if (!data.ok) throw new Error(`control ${action} failed: ${data.error}`);
  return data.result;
}

const grid = () => session.page.locator('[data-testid="data-grid"]');
const row = (key) => session.page.locator(`[data-testid="data-grid"] tr[data-key='${JSON.stringify(key)}']`);
const dialog = () => session.page.locator("dialog[open]");
const liveState = (state, timeout = 20_000) =>
  session.page.locator(`[data-testid="live-state"][data-state="${state}"]`).waitFor({ timeout });
const tab = (name) => session.page.getByRole("tab", { name });

/** Waits until `locator` matches exactly `n` elements. */
async function waitCount(locator, n, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let got = -1;
  while (Date.now() < deadline) {
    got = await locator.count();
    if (got === n) return;
    await sleep(100);
  }
  throw new Error(`expectation failed: ${what}: ${n} expected, ${got} after ${timeout} ms`);
}

async function deployFlow(page) {
  session.allow(
    /status of 503/,
    "no RethinkDB anywhere: every DB route (the health route, the database list) answers 503 with the reason",
  );
  await session.step("no RethinkDB in the cluster: the health says not_found and offers a deploy", async () => {
    await page.goto(`${BASE}/#/c/${CLUSTER}/data`);
    const health = page.locator('[data-testid="db-health"]');
    await health.waitFor({ timeout: 30_000 });
    await page.locator('[data-testid="db-health-reason"]', { hasText: "not_found" }).waitFor({ timeout: 30_000 });
    const reason = await page.locator('[data-testid="db-health-reason"]').innerText();
    log(`  health: ${reason}`);
    await session.shot("deploy-offer");
  });
  await session.step("deploy RethinkDB from the UI: the StatefulSet and Service are applied", async () => {
    await page.getByRole("button", { name: "Deploy RethinkDB" }).click();
    await page.getByText(/Applied the RethinkDB StatefulSet and Service/).waitFor({ timeout: 60_000 });
    await session.shot("deploy-applied");
  });
  await session.step("console is free of unexpected errors", async () => {
    const errors = session.consoleErrors;
    expect(errors.length === 0, `console errors: ${JSON.stringify(errors, null, 2)}`);
  });
}

async function browseFlow(page) {
  /** Ends the allowance of the errors the RethinkDB server's outage causes (see the kill step). */
  let outage = null;
  await session.step("the Data section: the DB health is ready, the server's databases listed", async () => {
    // The cluster's first DB request creates its RDB manager, which starts "connecting":
    // the health route answers 503 (with the state in its body) until the connection is up,
    // and Chromium logs that response as a console error. Expected here only.
    const connected = session.allow(/status of 503/, "the cluster's RDB manager is still connecting");
    await page.goto(`${BASE}/#/c/${CLUSTER}/data`);
    await page.getByRole("link", { name: "Data" }).first().waitFor();
    await page.locator('[data-testid="db-health"][data-state="ready"]').waitFor({ timeout: 30_000 });
    connected();
    await page.getByRole("list", { name: "Databases" }).getByRole("link", { name: "test", exact: true }).waitFor();
    expect((await page.getByRole("link", { name: DB }).count()) === 0, `no ${DB} yet`);
    await session.shot("data-home");
  });

  await session.step("create a database (client-side validation first)", async () => {
    await page.getByLabel("Database name").fill("bad name!");
    await page.getByRole("button", { name: "Create database" }).click();
    await page.locator("#db-id-error").waitFor();
    await page.getByLabel("Database name").fill(DB);
    await page.getByLabel("Description (optional)").fill("made by the e2e run");
    await page.getByRole("button", { name: "Create database" }).click();
    await page.waitForURL(new RegExp(`#/c/${CLUSTER}/data/${DB}$`));
    await page.getByText("No tables yet").waitFor();
  });

  await session.step("create a table: the grid opens, live", async () => {
    await page.getByLabel("Table name").fill(TABLE);
    await page.getByRole("button", { name: "Create table" }).click();
    await page.waitForURL(new RegExp(`/data/${DB}/${TABLE}$`));
    await liveState("live");
    await page.getByText("No rows yet").waitFor();
    await session.shot("table-empty");
  });

  await session.step("insert a row: the JSON editor validates, then the row appears", async () => {
    await page.getByRole("button", { name: "Insert row" }).first().click();
    const editor = dialog().locator("#row-json");
    await editor.fill('{"id": "alice", "age": 30,');
    await dialog().locator("#row-json-error").waitFor();
    expect((await dialog().locator("#row-json-error").innerText()).includes("Not valid JSON"), "JSON error shown");
    expect(await dialog().getByRole("button", { name: "Insert row" }).isDisabled(), "save disabled on bad JSON");
    await session.shot("row-editor-invalid");
    await editor.fill('{"id": "alice", "age": 30, "city": "Lyon"}');
    await dialog().getByRole("button", { name: "Insert row" }).click();
    await row("alice").waitFor();
    await dialog().waitFor({ state: "detached" }).catch(() => {});
    expect(!(await page.locator("dialog[open]").count()), "editor closed");
  });

  await session.step("edit the row: the grid shows the new value and flashes the row", async () => {
    await page.getByRole("button", { name: "Edit row alice" }).click();
    const editor = dialog().locator("#row-json");
    const doc = JSON.parse(await editor.inputValue());
    expect(doc.id === "alice" && doc.age === 30, `editor holds the row: ${JSON.stringify(doc)}`);
    await editor.fill(JSON.stringify({ ...doc, id: "mallory" }));
    await dialog().locator("#row-json-error").waitFor();
    await editor.fill(JSON.stringify({ ...doc, age: 31 }, null, 2));
    await dialog().getByRole("button", { name: "Save row" }).click();
    await row("alice").locator("td", { hasText: /^31$/ }).waitFor();
    expect((await row("alice").getAttribute("class"))?.includes("row-flash"), "edited row flashes");
    await session.shot("row-edited");
  });

  await session.step("a write made OUTSIDE the UI (the driver) appears live in the grid", async () => {
    const t0 = Date.now();
    await control("/insert", { db: DB, table: TABLE, doc: { id: "bob", age: 20, city: "Oslo" } });
    await row("bob").waitFor({ timeout: 10_000 });
    timings.outsideWriteToGridMs = Date.now() - t0;
    expect((await row("bob").getAttribute("class"))?.includes("row-flash"), "new row flashes");
    const status = await page.locator('[data-testid="grid-status"]').innerText();
    expect(/live update/.test(status), `grid counts live updates: ${status}`);
    await session.shot("live-outside-write");
  });

  await session.step("delete a row with a confirmation", async () => {
    await control("/insert", { db: DB, table: TABLE, doc: { id: "zed", age: 99 } });
    await row("zed").waitFor();
    await page.getByRole("button", { name: "Delete row zed" }).click();
    await dialog().getByRole("button", { name: "Delete row" }).click();
    await row("zed").waitFor({ state: "detached" });
  });

  await session.step("import a CSV: the dry run previews rows and errors, then the real import", async () => {
    await tab("Import & export").click();
    const csv = "id,age,city\ncarol,41,Paris\ndave,old,Rome\neve,29\nfrank,35,Berlin\n";
    await page.locator("#import-file").setInputFiles({ name: "people.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
    expect((await page.locator("#import-format").inputValue()) === "csv", "format guessed from the name");
    await page.getByLabel(/Column types/).fill("age:integer");
    expect(await page.getByRole("button", { name: "Import", exact: true }).isDisabled(), "import waits for a dry run");
    await page.getByRole("button", { name: "Dry run" }).click();
    await page.locator('[data-testid="import-summary"]').waitFor();
    const summary = await page.locator('[data-testid="import-summary"]').innerText();
    expect(summary.includes("4 rows read: 2 valid rows, 2 errors"), `dry run summary: ${summary}`);
    const errors = await page.locator('[data-testid="import-errors"]').innerText();
    expect(/Row 2: .*age/.test(errors) && /Row 3: /.test(errors), `row errors: ${errors}`);
    const previewRows = await page.locator('[data-testid="import-rows"] tbody tr').count();
    expect(previewRows === 2, `preview shows the 2 valid rows (${previewRows})`);
    await session.shot("import-dry-run");
    // nothing was written by the dry run
    await tab("Rows").click();
    expect((await row("carol").count()) === 0, "dry run wrote nothing");
    await tab("Import & export").click();
    await page.getByRole("button", { name: "Import", exact: true }).click();
    await page.locator('[data-testid="import-done"]').waitFor();
    const done = await page.locator('[data-testid="import-done"]').innerText();
    expect(done.includes("2 inserted"), `import result: ${done}`);
    await session.shot("import-done");
    await tab("Rows").click();
    await row("carol").waitFor({ timeout: 10_000 });
    await row("frank").waitFor();
    expect((await row("carol").locator("td", { hasText: /^41$/ }).count()) === 1, "age imported as a number");
  });

  await session.step("export: CSV and JSON downloads of the whole table", async () => {
    await tab("Import & export").click();
    const [csvDl] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download CSV" }).click()]);
    const csv = readFileSync(await csvDl.path(), "utf8");
    const lines = csv.trim().split(/\r?\n/);
    expect(lines[0].startsWith("id,"), `CSV header: ${lines[0]}`);
    expect(lines.length === 5 && csv.includes("carol") && csv.includes("bob"), `CSV rows: ${csv}`);
    expect(csvDl.suggestedFilename() === `${DB}.${TABLE}.csv`, csvDl.suggestedFilename());
    const [jsonDl] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download JSON" }).click()]);
    const docs = JSON.parse(readFileSync(await jsonDl.path(), "utf8"));
    expect(Array.isArray(docs) && docs.length === 4, `JSON export: ${JSON.stringify(docs)}`);
    expect(docs.map((d) => d.id).join(",") === "alice,bob,carol,frank", "primary-key order");
  });

  await session.step("query builder: age > 30, ordered by age descending", async () => {
    await tab("Query").click();
    await page.locator("#q-field-0").fill("age");
    await page.locator("#q-op-0").selectOption("gt");
    await page.locator("#q-value-0").fill("30");
    await page.locator("#q-order").fill("age");
    await page.locator("#q-dir").selectOption("desc");
    await page.getByText("Query JSON").click();
    const json = JSON.parse(await page.locator('[data-testid="query-json"]').innerText());
    expect(
      JSON.stringify(json) ===
        JSON.stringify({ filter: { field: "age", op: "gt", value: 30 }, orderBy: [{ field: "age", dir: "desc" }], limit: 100 }),
      `query JSON: ${JSON.stringify(json)}`,
    );
    await page.getByRole("button", { name: "Run query" }).click();
    await page.locator('[data-testid="query-count"]').waitFor();
    expect((await page.locator('[data-testid="query-count"]').innerText()).startsWith("3 rows"), "3 rows match");
    const ids = await page.locator('[data-testid="query-result"] tbody tr td:first-child').allInnerTexts();
    expect(ids.join(",") === "carol,frank,alice", `ordered result: ${ids}`);
    await session.shot("query");
    // a bad value is named at its field before anything is sent
    await page.locator("#q-op-0").selectOption("in");
    await page.getByRole("button", { name: "Run query" }).click();
    await page.locator("#q-value-0-error").waitFor();
    await tab("Rows").click();
  });

  await session.step("kill the RethinkDB server mid-stream: resync and not-ready health in the browser", async () => {
    // While the server is down the health route answers 503 (its body says why) and
    // Chromium logs each such response as a console error: expected during the outage only.
    outage = session.allow(/status of 503|Failed to load resource/, "the RethinkDB server is down (the test killed it)");
    const t0 = Date.now();
    await control("/kill");
    await page.locator('[data-testid="resync-notice"]').waitFor({ timeout: 10_000 });
    timings.killToResyncMs = Date.now() - t0;
    await liveState("resyncing");
    await page.locator('[data-testid="db-health"]:not([data-state="ready"])').waitFor({ timeout: 15_000 });
    await page.locator('[data-testid="db-health-reason"]').waitFor({ timeout: 15_000 });
    const reason = await page.locator('[data-testid="db-health-reason"]').innerText();
    log(`  health while down: ${reason}`);
    expect((await row("alice").count()) === 1, "the last rows stay visible");
    await session.shot("server-killed-resync");
  });

  await session.step("restart the server: the feed recovers, the grid re-reads and goes live again", async () => {
    const t0 = Date.now();
    await control("/start"); // returns once the server answers a driver
    timings.serverStartMs = Date.now() - t0;
    // Automatic recovery: the manager's next attempt comes within its backoff cap (30 s) of
    // the server being back, then the feed's table.wait(), snapshot and ready.
    const t1 = Date.now();
    await liveState("live", 90_000);
    timings.serverUpToLiveMs = Date.now() - t1;
    await page.locator('[data-testid="db-health"]').waitFor({ state: "detached", timeout: 20_000 });
    outage();
    await control("/insert", { db: DB, table: TABLE, doc: { id: "grace", age: 50 } });
    await row("grace").waitFor({ timeout: 10_000 });
    await row("alice").waitFor();
    await session.shot("recovered");
  });

  await session.step("cursor pages: 25 rows a page, Next/Previous, live adds only where the key belongs", async () => {
    const docs = Array.from({ length: 30 }, (_, i) => ({ id: `n${String(i).padStart(2, "0")}`, age: i }));
    await control("/insert", { db: DB, table: TABLE, doc: docs });
    await row("n29").waitFor({ timeout: 10_000 }); // the last page (the only one so far) grows live
    await page.getByLabel("Rows per page").selectOption("25");
    await waitCount(grid().locator("tbody tr"), 25, "rows on page 1");
    await row("n19").waitFor();
    expect((await row("n20").count()) === 0, "n20 is on page 2");
    await page.getByRole("button", { name: "Next" }).click();
    await row("n20").waitFor();
    await waitCount(grid().locator("tbody tr"), 10, "rows on page 2");
    await control("/insert", { db: DB, table: TABLE, doc: [{ id: "n99" }, { id: "b0" }] });
    await row("n99").waitFor({ timeout: 10_000 }); // after the last row of the last page
    expect((await row("b0").count()) === 0, "b0 belongs to page 1, not shown on page 2");
    await session.shot("page-2-live");
    await page.getByRole("button", { name: "Previous" }).click();
    await row("alice").waitFor();
    await waitCount(row("n99"), 0, "n99 once back on page 1");
    await page.getByLabel("Rows per page").selectOption("50");
    await row("b0").waitFor();
  });

  await session.step("drop the table and the database with typed confirmations", async () => {
    await page.getByRole("button", { name: "Drop table…" }).click();
    const confirm = dialog().getByRole("button", { name: "Drop table" });
    expect(await confirm.isDisabled(), "disabled before typing");
    await dialog().getByLabel(/Type the table name/).fill("peopl");
    expect(await confirm.isDisabled(), "disabled for a wrong name");
    await dialog().getByLabel(/Type the table name/).fill(TABLE);
    await session.shot("drop-table-confirm");
    await confirm.click();
    await page.waitForURL(new RegExp(`/data/${DB}$`));
    await page.getByText("No tables yet").waitFor();
    await page.getByRole("button", { name: "Drop database…" }).click();
    await dialog().getByLabel(/Type the database name/).fill(DB);
    await dialog().getByRole("button", { name: "Drop database" }).click();
    await page.waitForURL(new RegExp(`#/c/${CLUSTER}/data$`));
    await page.getByRole("list", { name: "Databases" }).waitFor();
    expect((await page.getByRole("link", { name: DB }).count()) === 0, `${DB} is gone`);
    await session.shot("dropped");
  });

  await session.step("console is free of errors", async () => {
    const errors = session.consoleErrors;
    expect(errors.length === 0, `console errors: ${JSON.stringify(errors, null, 2)}`);
  });
}

await main(
  session,
  env("GUILDNET_PROFILE_DIR", `/tmp/guildnet-data-e2e-profile-${process.pid}`),
  async (page) => {
    if (FLOW === "deploy") await deployFlow(page);
    else await browseFlow(page);
    log(`timings ${JSON.stringify(timings)}`);
  },
  { timings },
);
