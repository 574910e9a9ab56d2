// One table: a live data grid (cursor pages kept current by the changefeed), the row editor,
// the query builder, import (dry run first) and export.
import { useEffect, useReducer, useRef, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import {
  dbApi,
  type Conflict,
  type Doc,
  type ExportFormat,
  type ImportFormat,
  type ImportReport,
  type Key,
  type QueryResult,
} from "../api/db";
import { ConfirmDialog, ErrorNotice, Field, Spinner } from "../components/common";
import { cellText, columnsOf, gridReducer, initialGrid, keyId, parseDoc, type GridState } from "../lib/dbgrid";
import { formatOf, importSummary, previewOf, type Preview } from "../lib/dbimport";
import { buildQuery, emptyForm, newCondition, OPS, type Op, type QueryForm } from "../lib/dbquery";
import { navigate } from "../lib/hooks";
import { ReconnectingStream } from "../lib/sse";
import { href, to } from "../lib/route";
import { TypedConfirm, useDropDialog } from "./Data";

type Tab = "rows" | "query" | "transfer";
const PAGE_SIZES = [25, 50, 100, 200];

function message(e: unknown): string {
  return e instanceof ApiError ? e.message : String(e);
}

export function TableScreen({ cluster, db, table, healthy }: { cluster: string; db: string; table: string; healthy: boolean }) {
  const [tab, setTab] = useState<Tab>("rows");
  const drop = useDropDialog(
    () => dbApi.dropTable(cluster, db, table),
    () => navigate(to.data(cluster, db)),
  );
  const [grid, dispatch] = useReducer(gridReducer, undefined, initialGrid);
  const [streamDown, setStreamDown] = useState(false);

  // One EventSource per open table; it lives as long as this screen.
  useEffect(() => {
    const stream = new ReconnectingStream(dbApi.changesUrl(cluster, db, table), {
      handlers: {
        snapshot: (d) => dispatch({ type: "snapshot", primaryKey: String((d as { primaryKey?: string }).primaryKey ?? "id") }),
        ready: (d) => dispatch({ type: "ready", epoch: Number((d as { epoch?: number }).epoch ?? 0) }),
        change: (d) => {
          const c = d as { type: string; old: Doc | null; new: Doc | null };
          dispatch({ type: "change", kind: c.type, old: c.old, new: c.new });
        },
        resync: (d) => {
          const r = d as { reason?: string; at?: number };
          dispatch({ type: "resync", reason: r.reason ?? "unknown", at: r.at ?? Date.now() / 1000 });
        },
        gone: (d) => {
          dispatch({ type: "gone", reason: (d as { message?: string }).message ?? "the table was dropped" });
          stream.close();
        },
      },
      onState: (s) => setStreamDown(s.kind === "retrying"),
    }).start();
    return () => stream.close();
  }, [cluster, db, table]);

  const live = grid.live;
  return (
    <>
      <div className="crumbs">
        <a href={href(to.data(cluster))}>Data</a> / <a href={href(to.data(cluster, db))} className="mono">{db}</a> /{" "}
        <span className="mono">{table}</span>
      </div>
      <div className="page-head">
        <h1 className="mono-title">{table}</h1>
        <span
          className={live.kind === "live" && !streamDown ? "live live-on" : "live"}
          data-testid="live-state"
          data-state={streamDown ? "disconnected" : live.kind}
        >
          {streamDown
            ? "Live updates disconnected, reconnecting…"
            : live.kind === "live"
              ? "Live"
              : live.kind === "resyncing"
                ? "Resyncing…"
                : live.kind === "gone"
                  ? "Table dropped"
                  : "Connecting…"}
        </span>
        <span className="spacer" />
        <button type="button" className="btn btn-danger-outline" onClick={drop.show}>
          Drop table…
        </button>
      </div>
      {live.kind === "resyncing" ? (
        <div className="notice notice-warn" role="status" data-testid="resync-notice">
          Live updates were interrupted (<span className="mono">{live.reason}</span>). The rows are read again when the
          feed is back{healthy ? "" : "; the database is not ready"}.
        </div>
      ) : null}
      {live.kind === "gone" ? (
        <div className="notice notice-error" role="alert">
          This table no longer exists ({live.reason}). <a href={href(to.data(cluster, db))}>Back to {db}</a>
        </div>
      ) : null}
      <div className="tabs" role="tablist" aria-label="Table views">
        {(
          [
            ["rows", "Rows"],
            ["query", "Query"],
            ["transfer", "Import & export"],
          ] as [Tab, string][]
        ).map(([id, label]) => (
          <button
            key={id}
            type="button"
            role="tab"
            aria-selected={tab === id}
            className={tab === id ? "tab tab-on tab-button" : "tab tab-button"}
            onClick={() => setTab(id)}
          >
            {label}
          </button>
        ))}
      </div>
      <div hidden={tab !== "rows"}>
        <RowsPanel cluster={cluster} db={db} table={table} grid={grid} dispatch={dispatch} />
      </div>
      {/* Every panel stays mounted: switching tabs keeps a query, a dry run, the grid's page. */}
      <div hidden={tab !== "query"}>
        <QueryPanel cluster={cluster} db={db} table={table} primaryKey={grid.primaryKey} />
      </div>
      <div hidden={tab !== "transfer"}>
        <TransferPanel cluster={cluster} db={db} table={table} primaryKey={grid.primaryKey} />
      </div>
      <TypedConfirm {...drop.dialog} what="table" name={table}>
        <p>
          All rows of <span className="mono">{db}.{table}</span> are deleted. This cannot be undone.
        </p>
      </TypedConfirm>
    </>
  );
}

// -- rows ------------------------------------------------------------------------------------

type Editing = { mode: "insert" } | { mode: "edit"; key: Key; doc: Doc };

function RowsPanel({
  cluster,
  db,
  table,
  grid,
  dispatch,
}: {
  cluster: string;
  db: string;
  table: string;
  grid: GridState;
  dispatch: (a: Parameters<typeof gridReducer>[1]) => void;
}) {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [limit, setLimit] = useState(50);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [retry, setRetry] = useState(0);
  const [editing, setEditing] = useState<Editing | null>(null);
  const [deleting, setDeleting] = useState<Key | null>(null);
  const [deleteBusy, setDeleteBusy] = useState(false);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const after = cursors[cursors.length - 1] ?? null;

  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | null = null;
    setLoading(true);
    dbApi
      .rows(cluster, db, table, after, limit, controller.signal)
      .then((p) => {
        dispatch({ type: "page", primaryKey: p.primaryKey, rows: p.rows, after, next: p.next });
        setError(null);
        setLoading(false);
      })
      .catch((e: unknown) => {
        if (controller.signal.aborted) return;
        const err = e instanceof ApiError ? e : new ApiError(0, "client_error", String(e));
        setError(err);
        setLoading(false);
        if (err.retryable) timer = setTimeout(() => setRetry((n) => n + 1), 3000);
      });
    return () => {
      controller.abort();
      if (timer) clearTimeout(timer);
    };
  }, [cluster, db, table, after, limit, grid.reloads, retry, dispatch]);

  const pk = grid.primaryKey;
  const columns = columnsOf(grid.rows, pk);

  function remove() {
    if (deleting === null) return;
    setDeleteBusy(true);
    setDeleteError(null);
    dbApi
      .remove(cluster, db, table, deleting)
      .then(() => setDeleting(null))
      .catch((e: unknown) => setDeleteError(message(e)))
      .finally(() => setDeleteBusy(false));
  }

  return (
    <section className="card card-flush" aria-label="Rows">
      <div className="row card-head">
        <button type="button" className="btn btn-primary btn-small" onClick={() => setEditing({ mode: "insert" })}>
          Insert row
        </button>
        <span className="muted small" data-testid="grid-status">
          {grid.rows.length} row{grid.rows.length === 1 ? "" : "s"} on this page
          {grid.changes ? ` · ${grid.changes} live update${grid.changes === 1 ? "" : "s"}` : ""}
        </span>
        <span className="spacer" />
        <label className="row small">
          Rows per page
          <select className="inline" value={limit} onChange={(e) => {
            setLimit(Number(e.target.value));
            setCursors([null]);
          }}>
            {PAGE_SIZES.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <button type="button" className="btn btn-small" disabled={cursors.length <= 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
          Previous
        </button>
        <span className="small">Page {cursors.length}</span>
        <button type="button" className="btn btn-small" disabled={!grid.next} onClick={() => grid.next && setCursors((c) => [...c, grid.next])}>
          Next
        </button>
      </div>
      {error ? (
        <div className="card-pad">
          <ErrorNotice error={error} what="the rows" onRetry={() => setRetry((n) => n + 1)} />
        </div>
      ) : null}
      {loading && grid.rows.length === 0 && !error ? <Spinner label="Loading rows…" /> : null}
      {!loading && grid.rows.length === 0 && !error ? (
        <p className="card-pad muted">No rows{cursors.length > 1 ? " on this page" : " yet"}.</p>
      ) : null}
      {grid.rows.length > 0 ? (
        <div className="table-wrap grid-wrap">
          <table className="table table-compact data-grid" data-testid="data-grid">
            <thead>
              <tr>
                {columns.map((c) => (
                  <th key={c} scope="col" className={c === pk ? "mono pk" : "mono"}>
                    {c}
                  </th>
                ))}
                <th>
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {grid.rows.map((row) => {
                const id = keyId(row[pk]);
                const flashes = grid.flash[id] ?? 0;
                return (
                  <tr key={`${id}#${flashes}`} className={flashes ? "row-flash" : undefined} data-key={id}>
                    {columns.map((c) => (
                      <td key={c} className="mono cell">
                        {cellText(row[c])}
                      </td>
                    ))}
                    <td className="actions">
                      <button
                        type="button"
                        className="btn btn-small"
                        onClick={() => setEditing({ mode: "edit", key: row[pk] as Key, doc: row })}
                        aria-label={`Edit row ${cellText(row[pk])}`}
                      >
                        Edit
                      </button>
                      <button
                        type="button"
                        className="btn btn-small btn-danger-outline"
                        onClick={() => setDeleting(row[pk] as Key)}
                        aria-label={`Delete row ${cellText(row[pk])}`}
                      >
                        Delete
                      </button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : null}
      <RowEditor cluster={cluster} db={db} table={table} primaryKey={pk} editing={editing} onClose={() => setEditing(null)} />
      <ConfirmDialog
        open={deleting !== null}
        title="Delete this row?"
        confirmLabel="Delete row"
        danger
        busy={deleteBusy}
        onConfirm={remove}
        onClose={() => {
          setDeleting(null);
          setDeleteError(null);
        }}
      >
        <p>
          The row with {pk} <span className="mono">{deleting === null ? "" : cellText(deleting)}</span> is deleted.
        </p>
        {deleteError ? <p className="text-bad">{deleteError}</p> : null}
      </ConfirmDialog>
    </section>
  );
}

/**
 * The row editor: a JSON textarea validated with JSON.parse as you type. CodeMirror 6 with
 * lang-json would roughly double the ~96 kB gzipped bundle for highlighting; what matters
 * here is the validation and the parser's error position, which this gives.
 */
function RowEditor({
  cluster,
  db,
  table,
  primaryKey,
  editing,
  onClose,
}: {
  cluster: string;
  db: string;
  table: string;
  primaryKey: string;
  editing: Editing | null;
  onClose: () => void;
}) {
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [serverError, setServerError] = useState<string | null>(null);
  useEffect(() => {
    if (!editing) return;
    setText(editing.mode === "edit" ? JSON.stringify(editing.doc, null, 2) : "{\n  \n}");
    setServerError(null);
  }, [editing]);
  const key = editing?.mode === "edit" ? editing.key : undefined;
  const parsed = parseDoc(text, primaryKey, key);

  function save() {
    if (!editing || parsed.error !== null) return;
    setBusy(true);
    setServerError(null);
    const p =
      editing.mode === "insert"
        ? dbApi.insert(cluster, db, table, parsed.doc)
        : dbApi.replace(cluster, db, table, editing.key, parsed.doc);
    p.then(() => onClose())
      .catch((e: unknown) => setServerError(message(e) + (e instanceof ApiError && e.field ? ` (${e.field})` : "")))
      .finally(() => setBusy(false));
  }

  return (
    <ConfirmDialog
      open={editing !== null}
      title={editing?.mode === "edit" ? `Edit row ${cellText(editing.key)}` : "Insert a row"}
      confirmLabel={editing?.mode === "edit" ? "Save row" : "Insert row"}
      busy={busy}
      confirmDisabled={parsed.error !== null}
      onConfirm={save}
      onClose={onClose}
    >
      <Field
        id="row-json"
        label="Row (JSON)"
        error={text.trim() ? (parsed.error ?? undefined) : undefined}
        hint={
          editing?.mode === "edit"
            ? `The whole row is replaced; “${primaryKey}” stays the same.`
            : `Without “${primaryKey}” the server generates one.`
        }
      >
        <textarea
          id="row-json"
          className="json-editor mono"
          rows={14}
          spellCheck={false}
          value={text}
          onChange={(e) => setText(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              save();
            }
          }}
        />
      </Field>
      {serverError ? (
        <p className="text-bad" role="alert" data-testid="row-error">
          {serverError}
        </p>
      ) : null}
    </ConfirmDialog>
  );
}

// -- query -----------------------------------------------------------------------------------

function ResultTable({ rows, primaryKey, testId }: { rows: Doc[]; primaryKey: string; testId: string }) {
  const columns = columnsOf(rows, primaryKey);
  return (
    <div className="table-wrap grid-wrap">
      <table className="table table-compact data-grid" data-testid={testId}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c} scope="col" className="mono">
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row, i) => (
            <tr key={i}>
              {columns.map((c) => (
                <td key={c} className="mono cell">
                  {cellText(row[c])}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function QueryPanel({ cluster, db, table, primaryKey }: { cluster: string; db: string; table: string; primaryKey: string }) {
  const [form, setForm] = useState<QueryForm>(() => ({ ...emptyForm(), conditions: [newCondition()] }));
  const [result, setResult] = useState<QueryResult | null>(null);
  const [busy, setBusy] = useState(false);
  const [serverError, setServerError] = useState<ApiError | null>(null);
  const [touched, setTouched] = useState(false);
  const built = buildQuery(form);
  const errors = touched ? built.errors : {};

  function setCondition(i: number, patch: Partial<QueryForm["conditions"][number]>) {
    setForm((f) => ({ ...f, conditions: f.conditions.map((c, j) => (j === i ? { ...c, ...patch } : c)) }));
  }

  function run(ev: FormEvent) {
    ev.preventDefault();
    setTouched(true);
    if (Object.keys(built.errors).length) return;
    setBusy(true);
    setServerError(null);
    dbApi
      .query(cluster, db, table, built.query)
      .then(setResult)
      .catch((e: unknown) => {
        setResult(null);
        setServerError(e instanceof ApiError ? e : new ApiError(0, "client_error", String(e)));
      })
      .finally(() => setBusy(false));
  }

  return (
    <section className="card stack" aria-label="Query">
      <form className="form" onSubmit={run} noValidate>
        <div className="row">
          <span>Rows matching</span>
          <select className="inline" aria-label="Combine conditions" value={form.combine} onChange={(e) => setForm({ ...form, combine: e.target.value as "and" | "or" })}>
            <option value="and">all</option>
            <option value="or">any</option>
          </select>
          <span>of these conditions:</span>
        </div>
        {form.conditions.map((c, i) => (
          <div className="row query-condition" key={i} data-testid={`condition-${i}`}>
            <label className="check small">
              <input type="checkbox" checked={c.negate} onChange={(e) => setCondition(i, { negate: e.target.checked })} /> not
            </label>
            <Field id={`q-field-${i}`} label="Field" error={errors[`conditions.${i}.field`]}>
              <input id={`q-field-${i}`} value={c.field} spellCheck={false} onChange={(e) => setCondition(i, { field: e.target.value })} />
            </Field>
            <Field id={`q-op-${i}`} label="Operator">
              <select id={`q-op-${i}`} value={c.op} onChange={(e) => setCondition(i, { op: e.target.value as Op })}>
                {OPS.map((o) => (
                  <option key={o.op} value={o.op}>
                    {o.label}
                  </option>
                ))}
              </select>
            </Field>
            {c.op !== "exists" ? (
              <Field id={`q-value-${i}`} label="Value" error={errors[`conditions.${i}.value`]} hint="JSON (42, true, [1,2]) or text">
                <input id={`q-value-${i}`} value={c.value} spellCheck={false} onChange={(e) => setCondition(i, { value: e.target.value })} />
              </Field>
            ) : null}
            <button
              type="button"
              className="btn btn-small"
              aria-label={`Remove condition ${i + 1}`}
              onClick={() => setForm((f) => ({ ...f, conditions: f.conditions.filter((_, j) => j !== i) }))}
            >
              Remove
            </button>
          </div>
        ))}
        <div className="row">
          <button type="button" className="btn btn-small" onClick={() => setForm((f) => ({ ...f, conditions: [...f.conditions, newCondition()] }))}>
            Add condition
          </button>
        </div>
        <div className="row query-options">
          <Field id="q-order" label="Order by" error={errors.orderBy}>
            <input id="q-order" value={form.orderBy} spellCheck={false} onChange={(e) => setForm({ ...form, orderBy: e.target.value })} />
          </Field>
          <Field id="q-dir" label="Direction">
            <select id="q-dir" value={form.orderDir} onChange={(e) => setForm({ ...form, orderDir: e.target.value as "asc" | "desc" })}>
              <option value="asc">ascending</option>
              <option value="desc">descending</option>
            </select>
          </Field>
          <label className="check small">
            <input type="checkbox" checked={form.orderIndex} onChange={(e) => setForm({ ...form, orderIndex: e.target.checked })} /> it is an index
          </label>
          <Field id="q-pluck" label="Fields to show (comma-separated)" error={errors.pluck}>
            <input id="q-pluck" value={form.pluck} spellCheck={false} onChange={(e) => setForm({ ...form, pluck: e.target.value })} />
          </Field>
          <Field id="q-skip" label="Skip" error={errors.skip}>
            <input id="q-skip" inputMode="numeric" value={form.skip} onChange={(e) => setForm({ ...form, skip: e.target.value })} />
          </Field>
          <Field id="q-limit" label="Limit" error={errors.limit}>
            <input id="q-limit" inputMode="numeric" value={form.limit} onChange={(e) => setForm({ ...form, limit: e.target.value })} />
          </Field>
        </div>
        <details className="advanced">
          <summary>Query JSON</summary>
          <pre className="query-json mono" data-testid="query-json">
            {JSON.stringify(built.query, null, 2)}
          </pre>
        </details>
        <div className="row">
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {busy ? "Running…" : "Run query"}
          </button>
        </div>
      </form>
      {serverError ? (
        <div className="notice notice-error" role="alert">
          <strong>The query failed.</strong> {serverError.message}
          {serverError.field ? <span className="mono"> ({serverError.field})</span> : null}
        </div>
      ) : null}
      {result ? (
        <div className="stack">
          <p className="small" data-testid="query-count">
            {result.count} row{result.count === 1 ? "" : "s"}
            {result.truncated ? " (more match: raise the limit or narrow the query)" : ""}
          </p>
          {result.rows.length ? <ResultTable rows={result.rows} primaryKey={primaryKey} testId="query-result" /> : null}
        </div>
      ) : null}
    </section>
  );
}

// -- import and export -------------------------------------------------------------------------

function TransferPanel({ cluster, db, table, primaryKey }: { cluster: string; db: string; table: string; primaryKey: string }) {
  const [file, setFile] = useState<File | null>(null);
  const [format, setFormat] = useState<ImportFormat>("csv");
  const [conflict, setConflict] = useState<Conflict>("error");
  const [types, setTypes] = useState("");
  const [busy, setBusy] = useState<"dry" | "real" | null>(null);
  const [preview, setPreview] = useState<Preview | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const inputRef = useRef<HTMLInputElement>(null);
  // A preview is for one file and set of options; changing any asks for a new dry run.
  const optionsKey = `${file?.name}:${file?.size}:${file?.lastModified}:${format}:${conflict}:${types}`;
  const [previewKey, setPreviewKey] = useState("");

  function run(dryRun: boolean) {
    if (!file) return;
    setBusy(dryRun ? "dry" : "real");
    setError(null);
    setDone(null);
    dbApi
      .importFile(cluster, db, table, file, { format, dryRun, conflict, types })
      .then((report) => {
        if (dryRun) {
          setPreview(previewOf(report, primaryKey));
          setPreviewKey(optionsKey);
        } else {
          setDone(importSummary(report));
          setPreview(null);
          setPreviewKey("");
        }
      })
      .catch((e: unknown) => {
        const report = (e as { report?: ImportReport }).report;
        setError(message(e));
        if (report && "preview" in report) {
          setPreview(previewOf(report, primaryKey));
          setPreviewKey(dryRun ? optionsKey : "");
        }
      })
      .finally(() => setBusy(null));
  }

  const current = preview !== null && previewKey === optionsKey;
  return (
    <div className="grid-2 grid-top">
      <section className="card stack" aria-labelledby="import-h">
        <h2 id="import-h">Import</h2>
        <p className="muted small">CSV (with a header row), a JSON array or NDJSON. A dry run shows the first rows and every error first.</p>
        <Field id="import-file" label="File">
          <input
            id="import-file"
            ref={inputRef}
            type="file"
            accept=".csv,.json,.ndjson,.jsonl,text/csv,application/json"
            onChange={(e) => {
              const f = e.target.files?.[0] ?? null;
              setFile(f);
              setPreview(null);
              setDone(null);
              setError(null);
              const guess = f ? formatOf(f.name) : null;
              if (guess) setFormat(guess);
            }}
          />
        </Field>
        <div className="row">
          <Field id="import-format" label="Format">
            <select id="import-format" value={format} onChange={(e) => setFormat(e.target.value as ImportFormat)}>
              <option value="csv">CSV</option>
              <option value="json">JSON array</option>
              <option value="ndjson">NDJSON</option>
            </select>
          </Field>
          <Field id="import-conflict" label="Existing keys">
            <select id="import-conflict" value={conflict} onChange={(e) => setConflict(e.target.value as Conflict)}>
              <option value="error">are errors</option>
              <option value="replace">are replaced</option>
              <option value="update">are updated</option>
            </select>
          </Field>
        </div>
        {format === "csv" ? (
          <Field id="import-types" label="Column types (CSV)" hint="e.g. age:integer,active:boolean (string, number, integer, boolean, json); others stay text">
            <input id="import-types" value={types} spellCheck={false} onChange={(e) => setTypes(e.target.value)} />
          </Field>
        ) : null}
        <div className="row">
          <button type="button" className="btn" disabled={!file || busy !== null} onClick={() => run(true)}>
            {busy === "dry" ? "Checking…" : "Dry run"}
          </button>
          <button type="button" className="btn btn-primary" disabled={!current || !preview?.importable || busy !== null} onClick={() => run(false)}>
            {busy === "real" ? "Importing…" : "Import"}
          </button>
        </div>
        {error ? (
          <div className="notice notice-error" role="alert">
            {error}
          </div>
        ) : null}
        {done ? (
          <div className="notice notice-ok" role="status" data-testid="import-done">
            {done}
          </div>
        ) : null}
        {preview ? (
          <div className="stack" data-testid="import-preview">
            <p className="small" data-testid="import-summary">
              {current ? "Dry run: " : ""}
              {preview.summary}
            </p>
            {preview.errors.length ? (
              <ul className="import-errors small" data-testid="import-errors">
                {preview.errors.map((e) => (
                  <li key={`${e.row}:${e.message}`}>
                    Row {e.row}: {e.message}
                  </li>
                ))}
                {preview.moreErrors ? <li>…and {preview.moreErrors} more</li> : null}
              </ul>
            ) : null}
            {preview.rows.length ? <ResultTable rows={preview.rows} primaryKey={primaryKey} testId="import-rows" /> : null}
          </div>
        ) : null}
      </section>
      <section className="card stack" aria-labelledby="export-h">
        <h2 id="export-h">Export</h2>
        <p className="muted small">The whole table in primary-key order, streamed.</p>
        <div className="row">
          {(["json", "ndjson", "csv"] as ExportFormat[]).map((f) => (
            <a key={f} className="btn" href={dbApi.exportUrl(cluster, db, table, f)} download={`${db}.${table}.${f}`}>
              Download {f.toUpperCase()}
            </a>
          ))}
        </div>
      </section>
    </div>
  );
}
