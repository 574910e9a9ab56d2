import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { api, ApiError, proxyPath } from "../api/client";
import type { EventView, ServerDetail, ServerSummary } from "../api/types";
import { ConfirmDialog, CopyButton, Empty, ErrorNotice, Field, PhaseBadge, Spinner } from "../components/common";
import { LifecycleButtons } from "../components/lifecycle";
import { age, when } from "../lib/format";
import { idleText } from "../lib/idle";
import { useFetch, useNow, useThrottled } from "../lib/hooks";
import { href, to, type ServerTab } from "../lib/route";
import { changeFrom, editFormFrom, stoppedInfo, type EditForm } from "../lib/lifecycle";
import { progressSteps } from "../lib/status";
import { mergeEvents } from "../state/servers";
import { useServers } from "../state/ServersProvider";
import { LogsPanel } from "./Logs";

export function ServerScreen({ cluster, id, tab }: { cluster: string; id: string; tab: ServerTab }) {
  const { state } = useServers();
  const detail = useFetch(`server:${cluster}:${id}`, (signal) => api.server(cluster, id, signal));
  const live: ServerSummary | undefined = state.byId[id];
  const deleted = state.deleted[id] === true;
  const [ideOpened, setIdeOpened] = useState(tab === "ide");
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const [deleteRequested, setDeleteRequested] = useState(false);
  const [keepVolume, setKeepVolume] = useState(false);

  useEffect(() => {
    if (tab === "ide") setIdeOpened(true);
  }, [tab]);

  // Refresh the detail (pods, events, status) when the stream says this server changed,
  // unless it is going away (the refresh would only find it gone).
  const goingAway = useRef(false);
  goingAway.current = deleted || deleteRequested || live?.phase === "Terminating";
  const refresh = useThrottled(() => {
    if (!goingAway.current) detail.reload();
  }, 1500);
  const liveEvents = state.events[id];
  useEffect(() => {
    if (live && detail.data && !goingAway.current) refresh();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [live, liveEvents?.length]);

  const d = detail.data;
  const phase = deleted ? "Deleted" : (live?.phase ?? d?.phase ?? "Pending");
  const conditions = live?.conditions ?? d?.conditions ?? [];
  const events = useMemo(() => mergeEvents(d?.events ?? [], liveEvents ?? []), [d?.events, liveEvents]);
  const ideUrl = d?.proxyUrl ?? live?.url ?? proxyPath(cluster, id);
  const running = !deleted && phase === "Running";

  if (!d && !live) {
    if (detail.error?.status === 404 || (deleted && !d)) {
      return (
        <section className="card">
          <h1>{id}</h1>
          <Empty title={deleted ? "This workspace was deleted" : `No workspace “${id}” on cluster “${cluster}”`}>
            <a className="btn" href={href(to.workspaces(cluster))}>
              Back to workspaces
            </a>
          </Empty>
        </section>
      );
    }
    if (detail.error) {
      return <ErrorNotice error={detail.error} retryAt={detail.retryAt} onRetry={detail.reload} what="the workspace" />;
    }
    return <Spinner label="Loading workspace…" />;
  }

  const tabs: { key: ServerTab; label: string }[] = [
    { key: "overview", label: "Overview" },
    { key: "logs", label: "Logs" },
    { key: "ide", label: "IDE" },
  ];

  return (
    <div className="stack">
      <nav className="crumbs" aria-label="Breadcrumb">
        <a href={href(to.workspaces(cluster))}>Workspaces</a> <span aria-hidden="true">/</span> <span>{id}</span>
      </nav>
      <div className="page-head">
        <h1 className="mono-title">{id}</h1>
        <PhaseBadge phase={phase} />
        <span className="spacer" />
        <a
          className={running ? "btn" : "btn btn-disabled"}
          href={running ? ideUrl : undefined}
          target="_blank"
          rel="noopener"
          aria-disabled={running ? undefined : true}
          title={running ? "Open the IDE in a new tab" : "Available once the workspace is Running"}
        >
          Open in new tab ↗
        </a>
        {!deleted && !deleteRequested ? (
          <LifecycleButtons
            cluster={cluster}
            id={id}
            phase={phase}
            stopped={live?.stopped ?? d?.spec.stopped}
            onDone={detail.reload}
          />
        ) : null}
        <button
          type="button"
          className="btn btn-danger-outline"
          disabled={deleted || deleteRequested}
          onClick={() => {
            setDeleteError(null);
            setConfirmDelete(true);
          }}
        >
          {deleteRequested && !deleted ? "Deleting…" : "Delete"}
        </button>
      </div>
      {deleted ? (
        <div className="notice notice-ok" role="status">
          This workspace was deleted. <a href={href(to.workspaces(cluster))}>Back to workspaces</a>
        </div>
      ) : null}
      {detail.error && d ? (
        <ErrorNotice error={detail.error} retryAt={detail.retryAt} onRetry={detail.reload} what="the latest details" />
      ) : null}

      <div className="tabs" role="tablist" aria-label="Workspace sections">
        {tabs.map((t) => (
          <a
            key={t.key}
            role="tab"
            id={`tab-${t.key}`}
            aria-selected={tab === t.key}
            aria-controls={`panel-${t.key}`}
            href={href(to.server(cluster, id, t.key))}
            className={tab === t.key ? "tab tab-on" : "tab"}
          >
            {t.label}
          </a>
        ))}
      </div>

      {tab === "overview" ? (
        <div role="tabpanel" id="panel-overview" aria-labelledby="tab-overview" className="stack">
          <Overview cluster={cluster} id={id} detail={d} live={live} phase={phase} conditions={conditions} events={events} ideUrl={ideUrl} />
          {d && !deleted && phase !== "Terminating" ? <ChangeForm cluster={cluster} id={id} detail={d} onDone={detail.reload} /> : null}
        </div>
      ) : null}
      {tab === "logs" ? (
        <div role="tabpanel" id="panel-logs" aria-labelledby="tab-logs">
          {deleted ? <Empty title="The workspace is gone, and so are its logs." /> : <LogsPanel cluster={cluster} id={id} />}
        </div>
      ) : null}
      {ideOpened ? (
        <div role="tabpanel" id="panel-ide" aria-labelledby="tab-ide" hidden={tab !== "ide"} className="ide-panel">
          {running ? (
            <iframe className="ide-frame" src={ideUrl} title={`IDE of ${id}`} allow="clipboard-read; clipboard-write" />
          ) : (
            <Empty title={deleted ? "The workspace was deleted." : `The IDE opens when the workspace is Running (now ${phase}).`}>
              {!deleted && phase === "Stopped" ? (
                <LifecycleButtons cluster={cluster} id={id} phase={phase} stopped withRestart={false} onDone={detail.reload} />
              ) : !deleted ? (
                <a href={href(to.server(cluster, id))}>See its progress</a>
              ) : null}
            </Empty>
          )}
        </div>
      ) : null}

      <ConfirmDialog
        open={confirmDelete}
        title={`Delete workspace “${id}”?`}
        confirmLabel="Delete workspace"
        danger
        busy={deleting}
        onClose={() => setConfirmDelete(false)}
        onConfirm={() => {
          setDeleting(true);
          api
            .deleteServer(cluster, id, keepVolume)
            .then(() => {
              setDeleteRequested(true);
              setConfirmDelete(false);
            })
            .catch((e: unknown) => {
              if (e instanceof ApiError && e.status === 404) {
                setDeleteRequested(true);
                setConfirmDelete(false);
              } else setDeleteError(e instanceof ApiError ? e.message : String(e));
            })
            .finally(() => setDeleting(false));
        }}
      >
        <p>
          Its Deployment, Service and password are removed, and so is its home volume (the files you saved) unless
          you keep it below. This cannot be undone.
        </p>
        {d?.spec.storage?.ephemeral ? null : (
          <label className="check">
            <input type="checkbox" checked={keepVolume} onChange={(e) => setKeepVolume(e.target.checked)} />{" "}
            Keep the home volume <code>{id}-home</code>: a new workspace named “{id}” gets its files back.
          </label>
        )}
        {deleteError ? (
          <p className="field-error" role="alert">
            {deleteError}
          </p>
        ) : null}
      </ConfirmDialog>
    </div>
  );
}

function Overview({
  cluster,
  id,
  detail,
  live,
  phase,
  conditions,
  events,
  ideUrl,
}: {
  cluster: string;
  id: string;
  detail: ServerDetail | null;
  live: ServerSummary | undefined;
  phase: string;
  conditions: ServerDetail["conditions"];
  events: EventView[];
  ideUrl: string;
}) {
  const now = useNow(5000);
  const steps = progressSteps(conditions, phase);
  const failed = steps.find((s) => s.state === "failed");
  const message = live?.message || detail?.message || "";
  const stopped = phase === "Stopped" ? stoppedInfo(conditions) : null;
  // In subdomain mode (WORKSPACE_ORIGIN=subdomain) the URL is already absolute: the workspace's own origin.
  const fullUrl = /^https?:\/\//.test(ideUrl) ? ideUrl : window.location.origin + ideUrl;
  const idle = idleText(live?.idle ?? detail?.idle, now);
  return (
    <>
      {phase === "Stopped" ? (
        <div className="notice notice-info" role="status" data-stopped-reason={stopped?.reason ?? ""}>
          <strong>Stopped</strong>
          {stopped?.since ? <> {age(stopped.since, now)} ago</> : null}
          {stopped?.reason === "Idle" ? " after being idle" : ""}
          {stopped?.message ? ` (${stopped.message})` : ""}. Its files and password are kept; start it to use it
          again.
        </div>
      ) : failed ? (
        <div className="notice notice-error" role="alert">
          <strong>Failed at “{failed.label}”{failed.reason ? ` (${failed.reason})` : ""}.</strong>{" "}
          {failed.message || message}
        </div>
      ) : (phase === "Pending" || phase === "Starting") && message ? (
        <div className="notice notice-info">{message}</div>
      ) : null}

      <div className="grid-2 grid-top">
        <section className="card" aria-labelledby="progress-h">
          <h2 id="progress-h">Status</h2>
          <ol className="steps">
            {steps.filter((s) => phase !== "Stopped" || s.state === "done" || s.type === "Stopped").map((s) => (
              <li key={s.type} className={`step step-${s.state}`} data-condition={s.type} data-state={s.state}>
                <span className="step-mark" aria-hidden="true">
                  {s.state === "done" ? "✓" : s.state === "failed" ? "✕" : s.state === "current" ? "…" : "○"}
                </span>
                <span className="step-text">
                  <span className="step-label">{s.label}</span>
                  <span className="visually-hidden"> ({s.state})</span>
                  {s.state !== "done" && (s.reason || s.message) ? (
                    <span className="small muted step-detail">
                      {s.reason}
                      {s.reason && s.message ? ": " : ""}
                      {s.message}
                    </span>
                  ) : null}
                </span>
                {s.since ? (
                  <span className="small muted" title={when(s.since)}>
                    {age(s.since, now)}
                  </span>
                ) : null}
              </li>
            ))}
          </ol>
        </section>

        <section className="card" aria-labelledby="details-h">
          <h2 id="details-h">Details</h2>
          <dl className="kv">
            <dt>Image</dt>
            <dd className="mono small">{detail?.spec.image ?? live?.image ?? "—"}</dd>
            <dt>Cluster / namespace</dt>
            <dd>
              {cluster} / {detail?.namespace ?? "…"}
            </dd>
            <dt>Created</dt>
            <dd title={when(detail?.created ?? live?.created)}>{age(detail?.created ?? live?.created, now)} ago</dd>
            <dt>Ready replicas</dt>
            <dd>{live?.readyReplicas ?? detail?.readyReplicas ?? 0}</dd>
            {phase === "Running" && idle ? (
              <>
                <dt>Activity</dt>
                <dd className={idle.soon ? "text-bad" : undefined} title={idle.title} data-idle>
                  {idle.text}
                </dd>
              </>
            ) : null}
            <dt>Proxy URL</dt>
            <dd className="mono small">
              <span className="break">{fullUrl}</span> <CopyButton text={fullUrl} />
            </dd>
            {detail?.serviceDNS ? (
              <>
                <dt>Service</dt>
                <dd className="mono small break">{detail.serviceDNS}</dd>
              </>
            ) : null}
          </dl>
          {detail?.hasPassword && phase !== "Deleted" ? <Password cluster={cluster} id={id} /> : null}
        </section>
      </div>

      <section className="card" aria-labelledby="ports-h">
        <h2 id="ports-h">Ports</h2>
        {!detail ? (
          <Spinner />
        ) : detail.ports.length === 0 ? (
          <p className="muted">No ports.</p>
        ) : (
          <table className="table table-compact">
            <thead>
              <tr>
                <th scope="col">Port</th>
                <th scope="col">Name</th>
                <th scope="col">Protocol</th>
              </tr>
            </thead>
            <tbody>
              {detail.ports.map((p) => (
                <tr key={`${p.containerPort}/${p.protocol ?? "TCP"}`}>
                  <td className="mono">{p.containerPort}</td>
                  <td>{p.name ?? "—"}</td>
                  <td>{p.protocol ?? "TCP"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section className="card" aria-labelledby="pods-h">
        <h2 id="pods-h">Pods</h2>
        {!detail ? (
          <Spinner />
        ) : detail.pods.length === 0 ? (
          <p className="muted">No pod yet.</p>
        ) : (
          <div className="table-wrap">
            <table className="table table-compact">
              <thead>
                <tr>
                  <th scope="col">Pod</th>
                  <th scope="col">Phase</th>
                  <th scope="col">Ready</th>
                  <th scope="col">Container</th>
                  <th scope="col">Restarts</th>
                  <th scope="col">Node / IP</th>
                </tr>
              </thead>
              <tbody>
                {detail.pods.map((p) => {
                  const c = p.containers[0];
                  return (
                    <tr key={p.name}>
                      <td className="mono small">{p.name}</td>
                      <td>{p.terminating ? "Terminating" : p.phase}</td>
                      <td>{p.ready ? "Yes" : "No"}</td>
                      <td className="small">
                        {c ? `${c.state}${c.reason ? ` (${c.reason})` : ""}` : "—"}
                        {c?.message ? <div className="muted">{c.message}</div> : null}
                      </td>
                      <td>{p.containers.reduce((n, x) => n + x.restarts, 0)}</td>
                      <td className="mono small">
                        {p.node ?? "—"} / {p.podIP ?? "—"}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section className="card" aria-labelledby="events-h">
        <h2 id="events-h">Events</h2>
        {events.length === 0 ? (
          <p className="muted">No events yet.</p>
        ) : (
          <div className="table-wrap">
            <table className="table table-compact" aria-live="polite">
              <thead>
                <tr>
                  <th scope="col">Type</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Message</th>
                  <th scope="col">Count</th>
                  <th scope="col">Last seen</th>
                </tr>
              </thead>
              <tbody>
                {[...events].reverse().map((e) => (
                  <tr key={`${e.pod}|${e.reason}|${e.firstTime ?? ""}|${e.message}`} className={e.type === "Warning" ? "row-warn" : ""}>
                    <td>{e.type}</td>
                    <td>{e.reason}</td>
                    <td className="small">{e.message}</td>
                    <td>{e.count}</td>
                    <td className="small" title={when(e.lastTime)}>
                      {age(e.lastTime, now)} ago
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}

function Password({ cluster, id }: { cluster: string; id: string }) {
  const [password, setPassword] = useState<string | null>(null);
  const [shown, setShown] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  return (
    <div className="password">
      <h3>Password</h3>
      <div className="row">
        <code className="password-value" aria-live="polite">
          {shown && password ? password : "••••••••••••"}
        </code>
        <button
          type="button"
          className="btn btn-small"
          disabled={busy}
          onClick={() => {
            if (shown) {
              setShown(false);
              return;
            }
            if (password) {
              setShown(true);
              return;
            }
            setBusy(true);
            setError(null);
            api
              .password(cluster, id)
              .then((p) => {
                setPassword(p);
                setShown(true);
              })
              .catch((e: unknown) => setError(e instanceof ApiError ? e.message : String(e)))
              .finally(() => setBusy(false));
          }}
        >
          {busy ? "Loading…" : shown ? "Hide" : "Reveal"}
        </button>
        {password ? <CopyButton text={password} label="Copy password" /> : null}
      </div>
      {error ? <div className="field-error">{error}</div> : null}
      <p className="small muted">Sign in to the IDE with it. It is stored in the workspace's Secret.</p>
    </div>
  );
}

function envToText(env: EditForm["env"]): string {
  return env.map((e) => `${e.name}=${e.value}`).join("\n");
}

function envFromText(text: string): EditForm["env"] {
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const at = l.indexOf("=");
      return at < 0 ? { name: l.trim(), value: "" } : { name: l.slice(0, at).trim(), value: l.slice(at + 1) };
    });
}

/** Change image, env, args and resources: the operator rolls the pod, the volume stays. */
function ChangeForm({ cluster, id, detail, onDone }: { cluster: string; id: string; detail: ServerDetail; onDone: () => void }) {
  const [form, setForm] = useState<EditForm>(() => editFormFrom(detail.spec));
  const [envText, setEnvText] = useState(() => envToText(form.env));
  const [open, setOpen] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (open) return;
    const fresh = editFormFrom(detail.spec);
    setForm(fresh);
    setEnvText(envToText(fresh.env));
  }, [detail.spec, open]);
  const set = (patch: Partial<EditForm>) => setForm((f) => ({ ...f, ...patch }));
  const input = (field: string) => ({
    id: `change-${field.replace(/[[\].]+/g, "-")}`,
    "aria-invalid": errors[field] ? true : undefined,
  });
  function submit(ev: FormEvent) {
    ev.preventDefault();
    setError(null);
    setResult(null);
    const { errors: errs, body } = changeFrom({ ...form, env: envFromText(envText) }, detail.spec);
    setErrors(errs);
    if (!body) return;
    if (Object.keys(body).length === 0) {
      setResult("Nothing changed.");
      return;
    }
    setBusy(true);
    api
      .changeServer(cluster, id, body)
      .then(() => {
        setResult("Saved: the workspace restarts with the change; its files are kept.");
        onDone();
      })
      .catch((e: unknown) => {
        if (e instanceof ApiError && e.field) setErrors({ [e.field]: e.message });
        setError(e instanceof ApiError ? e.message : String(e));
      })
      .finally(() => setBusy(false));
  }
  return (
    <details className="card advanced" open={open} onToggle={(e) => setOpen((e.target as HTMLDetailsElement).open)}>
      <summary>
        <h2>Change</h2>
        <span className="muted small">Image, environment, arguments, CPU and memory (the pod restarts; files stay)</span>
      </summary>
      <form className="form stack" onSubmit={submit} noValidate aria-label="Change the workspace">
        <Field id="change-image" label="Image" error={errors.image}>
          <input {...input("image")} className="mono" value={form.image} spellCheck={false} onChange={(e) => set({ image: e.target.value })} />
        </Field>
        <Field id="change-env" label="Environment (NAME=value, one per line)" error={errors.env ?? Object.entries(errors).find(([k]) => k.startsWith("env["))?.[1]}>
          <textarea
            {...input("env")}
            className="mono"
            rows={3}
            spellCheck={false}
            value={envText}
            onChange={(e) => setEnvText(e.target.value)}
          />
        </Field>
        <Field id="change-args" label="Arguments (one per line)" error={errors.args}>
          <textarea {...input("args")} className="mono" rows={2} spellCheck={false} value={form.args} onChange={(e) => set({ args: e.target.value })} />
        </Field>
        <div className="grid-4">
          <Field id="change-resources-requests-cpu" label="CPU request" error={errors["resources.requests.cpu"]}>
            <input {...input("resources.requests.cpu")} value={form.cpuRequest} onChange={(e) => set({ cpuRequest: e.target.value })} />
          </Field>
          <Field id="change-resources-limits-cpu" label="CPU limit" error={errors["resources.limits.cpu"]}>
            <input {...input("resources.limits.cpu")} value={form.cpuLimit} onChange={(e) => set({ cpuLimit: e.target.value })} />
          </Field>
          <Field id="change-resources-requests-memory" label="Memory request" error={errors["resources.requests.memory"]}>
            <input {...input("resources.requests.memory")} value={form.memoryRequest} onChange={(e) => set({ memoryRequest: e.target.value })} />
          </Field>
          <Field id="change-resources-limits-memory" label="Memory limit" error={errors["resources.limits.memory"]}>
            <input {...input("resources.limits.memory")} value={form.memoryLimit} onChange={(e) => set({ memoryLimit: e.target.value })} />
          </Field>
        </div>
        <p className="small muted">Leave CPU and memory blank for the image kind's defaults.</p>
        {error ? (
          <div className="notice notice-error" role="alert">
            {error}
          </div>
        ) : null}
        <div className="row">
          <span className="spacer" />
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {busy ? "Saving…" : "Save and restart"}
          </button>
        </div>
      </form>
      {result ? (
        <p className="small" role="status">
          {result}
        </p>
      ) : null}
    </details>
  );
}
