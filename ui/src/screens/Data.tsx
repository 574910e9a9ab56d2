// The Data section of a cluster: RethinkDB's health, databases and their tables.
import { useEffect, useState, type FormEvent, type ReactNode } from "react";
import { ApiError } from "../api/client";
import { dbApi, type DbHealth } from "../api/db";
import { ConfirmDialog, Empty, ErrorNotice, Field, Spinner } from "../components/common";
import { countdown } from "../lib/format";
import { navigate, useFetch, useNow } from "../lib/hooks";
import { href, to } from "../lib/route";
import { TableScreen } from "./DataTable";

const HEALTH_READY_MS = 5000;
const HEALTH_DOWN_MS = 2000;
const NAME = /^[A-Za-z0-9_]{1,64}$/;

export interface HealthProbe {
  health: DbHealth | null;
  error: ApiError | null;
  refresh: () => void;
}

/** Polls the DB health: every 5 s while ready, every 2 s while not. */
export function useDbHealth(cluster: string): HealthProbe {
  const [health, setHealth] = useState<DbHealth | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | null = null;
    dbApi
      .health(cluster, controller.signal)
      .then((h) => {
        setHealth(h);
        setError(null);
        timer = setTimeout(() => setTick((t) => t + 1), h.ready ? HEALTH_READY_MS : HEALTH_DOWN_MS);
      })
      .catch((e: unknown) => {
        if (controller.signal.aborted) return;
        setError(e instanceof ApiError ? e : new ApiError(0, "client_error", String(e)));
        timer = setTimeout(() => setTick((t) => t + 1), HEALTH_DOWN_MS);
      });
    return () => {
      controller.abort();
      if (timer) clearTimeout(timer);
    };
  }, [cluster, tick]);
  return { health, error, refresh: () => setTick((t) => t + 1) };
}

const STATE_TEXT: Record<string, string> = {
  idle: "Not connected yet",
  connecting: "Connecting",
  ready: "Ready",
  backoff: "Reconnecting",
  failed: "Failed",
};

/** The health badge and, when not ready, why and what to do. */
export function DbHealthPanel({ cluster, probe, compact = false }: { cluster: string; probe: HealthProbe; compact?: boolean }) {
  const now = useNow(1000);
  const [busy, setBusy] = useState<"reconnect" | "deploy" | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const [deployed, setDeployed] = useState<string | null>(null);
  const { health, error } = probe;
  if (!health && error) return <ErrorNotice error={error} what="the database health" onRetry={probe.refresh} />;
  if (!health) return <Spinner label="Checking the database…" />;
  const ready = health.ready;
  if (compact && ready) return null;

  function act(kind: "reconnect" | "deploy") {
    setBusy(kind);
    setActionError(null);
    const p = kind === "deploy" ? dbApi.deploy(cluster).then((r) => setDeployed(r.image)) : dbApi.reconnect(cluster);
    p.catch((e: unknown) => setActionError(e instanceof ApiError ? e.message : String(e))).finally(() => {
      setBusy(null);
      probe.refresh();
    });
  }

  const stateText = STATE_TEXT[health.state] ?? health.state;
  return (
    <section
      className={ready ? "card" : "notice notice-warn"}
      role={ready ? undefined : "alert"}
      data-testid="db-health"
      data-state={health.state}
      aria-label="Database health"
    >
      <div className="row">
        <span className={ready ? "live live-on" : "live"}>
          RethinkDB: <strong>{stateText}</strong>
        </span>
        {health.address ? <span className="muted small mono">{health.address}</span> : null}
        {health.source ? <span className="muted small">via {health.source}</span> : null}
        {!ready && health.nextAttemptAt ? (
          <span className="muted small">next attempt {countdown(health.nextAttemptAt * 1000, now)}</span>
        ) : null}
        <span className="spacer" />
        {!ready ? (
          <button type="button" className="btn btn-small" disabled={busy !== null} onClick={() => act("reconnect")}>
            {busy === "reconnect" ? "Reconnecting…" : "Reconnect now"}
          </button>
        ) : null}
      </div>
      {!ready && (health.reason || health.message) ? (
        <p data-testid="db-health-reason">
          {health.reason ? <span className="mono">{health.reason}</span> : null}
          {health.reason && health.message ? ": " : null}
          {health.message}
        </p>
      ) : null}
      {!ready && health.reason === "not_found" ? (
        <div className="row">
          <span>No RethinkDB was found in this cluster.</span>
          <button type="button" className="btn btn-primary btn-small" disabled={busy !== null} onClick={() => act("deploy")}>
            {busy === "deploy" ? "Deploying…" : "Deploy RethinkDB"}
          </button>
        </div>
      ) : null}
      {deployed ? <p className="small">Applied the RethinkDB StatefulSet and Service ({deployed}); connecting when it is up.</p> : null}
      {actionError ? <p className="text-bad">{actionError}</p> : null}
    </section>
  );
}

/** Drop confirmation: the user types the name. */
export function TypedConfirm({
  open,
  what,
  name,
  busy,
  error,
  onConfirm,
  onClose,
  children,
}: {
  open: boolean;
  what: string;
  name: string;
  busy: boolean;
  error: string | null;
  onConfirm: () => void;
  onClose: () => void;
  children?: ReactNode;
}) {
  const [typed, setTyped] = useState("");
  useEffect(() => {
    if (!open) setTyped("");
  }, [open]);
  const id = `drop-${what}-confirm`;
  return (
    <ConfirmDialog
      open={open}
      title={`Drop ${what} “${name}”?`}
      confirmLabel={`Drop ${what}`}
      danger
      busy={busy}
      confirmDisabled={typed !== name}
      onConfirm={onConfirm}
      onClose={onClose}
    >
      {children}
      <Field id={id} label={`Type the ${what} name “${name}” to confirm`} error={error ?? undefined}>
        <input id={id} value={typed} autoComplete="off" spellCheck={false} onChange={(e) => setTyped(e.target.value)} />
      </Field>
    </ConfirmDialog>
  );
}

export interface DropDialog {
  /** Opens the confirmation. */
  show: () => void;
  /** The props TypedConfirm takes for this drop, besides `what` and `name`. */
  dialog: { open: boolean; busy: boolean; error: string | null; onConfirm: () => void; onClose: () => void };
}

/** One drop flow for databases and tables: run the drop, then close and move on; a failure stays in the dialog. */
export function useDropDialog(run: () => Promise<unknown>, after: () => void): DropDialog {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  function onConfirm() {
    setBusy(true);
    setError(null);
    run()
      .then(() => {
        setOpen(false);
        after();
      })
      .catch((e: unknown) => setError(errorText(e).message))
      .finally(() => setBusy(false));
  }
  return { show: () => setOpen(true), dialog: { open, busy, error, onConfirm, onClose: () => setOpen(false) } };
}

export function DataScreen({ cluster, db, table }: { cluster: string; db: string | null; table: string | null }) {
  const probe = useDbHealth(cluster);
  return (
    <div className="stack">
      {db && table ? (
        <>
          <DbHealthPanel cluster={cluster} probe={probe} compact />
          <TableScreen key={`${db}/${table}`} cluster={cluster} db={db} table={table} healthy={probe.health?.ready ?? false} />
        </>
      ) : db ? (
        <>
          <DbHealthPanel cluster={cluster} probe={probe} compact />
          <DatabaseScreen key={db} cluster={cluster} db={db} ready={probe.health?.ready ?? false} />
        </>
      ) : (
        <>
          <div className="page-head">
            <h1>Data</h1>
          </div>
          <DbHealthPanel cluster={cluster} probe={probe} />
          {probe.health?.ready ? (
            <DatabasesCard cluster={cluster} ready />
          ) : probe.health ? (
            <section className="card">
              <Empty title="The databases are shown once RethinkDB is ready">
                <p className="muted">The state above says why it is not, and when it tries again.</p>
              </Empty>
            </section>
          ) : null}
        </>
      )}
    </div>
  );
}

function errorText(e: unknown): { message: string; field?: string } {
  if (e instanceof ApiError) return { message: e.message, ...(e.field ? { field: e.field } : {}) };
  return { message: String(e) };
}

function DatabasesCard({ cluster, ready }: { cluster: string; ready: boolean }) {
  const [version, setVersion] = useState(0);
  const list = useFetch(`${cluster}/dbs/${version}/${ready}`, (s) => dbApi.databases(cluster, s));
  const [id, setId] = useState("");
  const [description, setDescription] = useState("");
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<{ message: string; field?: string } | null>(null);

  function create(ev: FormEvent) {
    ev.preventDefault();
    const name = id.trim();
    if (!NAME.test(name)) {
      setFormError({ field: "id", message: "1-64 letters, digits and underscores" });
      return;
    }
    setBusy(true);
    setFormError(null);
    dbApi
      .createDatabase(cluster, { id: name, ...(description.trim() ? { description: description.trim() } : {}) })
      .then(() => {
        setId("");
        setDescription("");
        setVersion((v) => v + 1);
        navigate(to.data(cluster, name));
      })
      .catch((e: unknown) => setFormError(errorText(e)))
      .finally(() => setBusy(false));
  }

  return (
    <div className="grid-2 grid-top">
      <section className="card card-flush" aria-labelledby="dbs-h">
        <div className="row card-head">
          <h2 id="dbs-h">Databases</h2>
        </div>
        {list.error && !list.data ? (
          <div className="card-pad">
            <ErrorNotice error={list.error} retryAt={list.retryAt} onRetry={list.reload} what="the databases" />
          </div>
        ) : !list.data ? (
          <Spinner label="Loading databases…" />
        ) : list.data.length === 0 ? (
          <Empty title="No databases yet">
            <p className="muted">Create one with the form.</p>
          </Empty>
        ) : (
          <ul className="item-list" aria-label="Databases">
            {list.data.map((d) => (
              <li key={d.id}>
                <a href={href(to.data(cluster, d.id))} className="mono">
                  {d.id}
                </a>
                {d.name && d.name !== d.id ? <span> · {d.name}</span> : null}
                {d.description ? <div className="muted small">{d.description}</div> : null}
              </li>
            ))}
          </ul>
        )}
      </section>
      <section className="card" aria-labelledby="db-new-h">
        <h2 id="db-new-h">New database</h2>
        <form className="form" onSubmit={create} noValidate>
          <Field id="db-id" label="Database name" error={formError && (formError.field ?? "id") === "id" ? formError.message : undefined} hint="Letters, digits and underscores.">
            <input id="db-id" value={id} autoComplete="off" spellCheck={false} onChange={(e) => setId(e.target.value)} />
          </Field>
          <Field id="db-description" label="Description (optional)" error={formError?.field === "description" ? formError.message : undefined}>
            <input id="db-description" value={description} onChange={(e) => setDescription(e.target.value)} />
          </Field>
          <div className="row">
            <button type="submit" className="btn btn-primary" disabled={busy}>
              {busy ? "Creating…" : "Create database"}
            </button>
          </div>
        </form>
      </section>
    </div>
  );
}

function DatabaseScreen({ cluster, db, ready }: { cluster: string; db: string; ready: boolean }) {
  const [version, setVersion] = useState(0);
  const tables = useFetch(`${cluster}/${db}/tables/${version}/${ready}`, (s) => dbApi.tables(cluster, db, s));
  const [name, setName] = useState("");
  const [pk, setPk] = useState("id");
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<{ message: string; field?: string } | null>(null);
  const drop = useDropDialog(
    () => dbApi.dropDatabase(cluster, db),
    () => navigate(to.data(cluster)),
  );

  function create(ev: FormEvent) {
    ev.preventDefault();
    const t = name.trim();
    if (!NAME.test(t)) {
      setFormError({ field: "name", message: "1-64 letters, digits and underscores" });
      return;
    }
    if (!pk.trim()) {
      setFormError({ field: "primaryKey", message: "a field name" });
      return;
    }
    setBusy(true);
    setFormError(null);
    dbApi
      .createTable(cluster, db, { name: t, primaryKey: pk.trim() })
      .then(() => {
        setName("");
        setVersion((v) => v + 1);
        navigate(to.data(cluster, db, t));
      })
      .catch((e: unknown) => setFormError(errorText(e)))
      .finally(() => setBusy(false));
  }

  const notFound = tables.error?.status === 404;
  return (
    <>
      <div className="crumbs">
        <a href={href(to.data(cluster))}>Data</a> / <span className="mono">{db}</span>
      </div>
      <div className="page-head">
        <h1 className="mono-title">{db}</h1>
        <span className="spacer" />
        <button type="button" className="btn btn-danger-outline" onClick={drop.show} disabled={notFound}>
          Drop database…
        </button>
      </div>
      {notFound ? (
        <div className="notice notice-error" role="alert">
          There is no database “{db}”. <a href={href(to.data(cluster))}>All databases</a>
        </div>
      ) : (
        <div className="grid-2 grid-top">
          <section className="card card-flush" aria-labelledby="tables-h">
            <div className="row card-head">
              <h2 id="tables-h">Tables</h2>
            </div>
            {tables.error && !tables.data ? (
              <div className="card-pad">
                <ErrorNotice error={tables.error} retryAt={tables.retryAt} onRetry={tables.reload} what="the tables" />
              </div>
            ) : !tables.data ? (
              <Spinner label="Loading tables…" />
            ) : tables.data.length === 0 ? (
              <Empty title="No tables yet">
                <p className="muted">Create one with the form.</p>
              </Empty>
            ) : (
              <div className="table-wrap">
                <table className="table">
                  <thead>
                    <tr>
                      <th>Table</th>
                      <th>Primary key</th>
                      <th>Documents</th>
                    </tr>
                  </thead>
                  <tbody>
                    {tables.data.map((t) => (
                      <tr key={t.name}>
                        <td>
                          <a className="mono" href={href(to.data(cluster, db, t.name))}>
                            {t.name}
                          </a>
                        </td>
                        <td className="mono">{t.primaryKey}</td>
                        <td>{t.documents ?? "—"}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </section>
          <section className="card" aria-labelledby="table-new-h">
            <h2 id="table-new-h">New table</h2>
            <form className="form" onSubmit={create} noValidate>
              <Field id="table-name" label="Table name" error={formError && (formError.field ?? "name") === "name" ? formError.message : undefined}>
                <input id="table-name" value={name} autoComplete="off" spellCheck={false} onChange={(e) => setName(e.target.value)} />
              </Field>
              <Field id="table-pk" label="Primary key" error={formError?.field === "primaryKey" ? formError.message : undefined} hint="Rows without it get a generated UUID.">
                <input id="table-pk" value={pk} autoComplete="off" spellCheck={false} onChange={(e) => setPk(e.target.value)} />
              </Field>
              <div className="row">
                <button type="submit" className="btn btn-primary" disabled={busy}>
                  {busy ? "Creating…" : "Create table"}
                </button>
              </div>
            </form>
          </section>
        </div>
      )}
      <TypedConfirm {...drop.dialog} what="database" name={db}>
        <p>Every table in it and all their rows are deleted. This cannot be undone.</p>
      </TypedConfirm>
    </>
  );
}
