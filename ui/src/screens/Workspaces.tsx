import { useMemo } from "react";
import { Empty, PhaseBadge, Spinner } from "../components/common";
import { LifecycleButtons } from "../components/lifecycle";
import { age, when } from "../lib/format";
import { idleText } from "../lib/idle";
import { navigate, useNow } from "../lib/hooks";
import { href, to } from "../lib/route";
import { currentStep } from "../lib/status";
import { filterServers, PHASES, phaseCounts, sortedServers } from "../state/servers";
import { useServers } from "../state/ServersProvider";

export function WorkspacesScreen({ cluster, q, phase }: { cluster: string; q: string; phase: string }) {
  const { state, stream } = useServers();
  const now = useNow(5000);
  const all = useMemo(() => sortedServers(state), [state]);
  const shown = useMemo(() => filterServers(all, q, phase), [all, q, phase]);
  const counts = useMemo(() => phaseCounts(all), [all]);

  return (
    <div className="stack">
      <div className="page-head">
        <h1>Workspaces</h1>
        <span className={stream.kind === "open" ? "live live-on" : "live"} title="Live updates from the cluster">
          {stream.kind === "open" ? "Live" : stream.kind === "retrying" ? "Reconnecting" : "Connecting"}
        </span>
        <span className="spacer" />
        <a className="btn btn-primary" href={href(to.launch(cluster))}>
          Launch workspace
        </a>
      </div>

      <div className="filters" role="search">
        <label className="filter-text">
          <span className="visually-hidden">Filter by name or image</span>
          <input
            type="search"
            placeholder="Filter by name or image"
            value={q}
            onChange={(e) => navigate(to.workspaces(cluster, e.target.value, phase), true)}
          />
        </label>
        <label>
          <span className="visually-hidden">Phase</span>
          <select value={phase} onChange={(e) => navigate(to.workspaces(cluster, q, e.target.value), true)}>
            <option value="">All phases ({all.length})</option>
            {PHASES.map((p) => (
              <option key={p} value={p}>
                {p} ({counts[p] ?? 0})
              </option>
            ))}
          </select>
        </label>
        {q || phase ? (
          <button type="button" className="btn btn-small" onClick={() => navigate(to.workspaces(cluster), true)}>
            Clear filters
          </button>
        ) : null}
      </div>

      <section className="card card-flush" aria-label="Workspace list">
        {!state.loaded ? (
          <Spinner label={stream.kind === "retrying" ? "Waiting for the cluster…" : "Loading workspaces…"} />
        ) : all.length === 0 ? (
          <Empty title="No workspaces on this cluster yet">
            <p>Launch an IDE, a notebook or any web app image; it shows up here as it starts.</p>
            <a className="btn btn-primary" href={href(to.launch(cluster))}>
              Launch your first workspace
            </a>
          </Empty>
        ) : shown.length === 0 ? (
          <Empty title="No workspace matches these filters">
            <button type="button" className="btn" onClick={() => navigate(to.workspaces(cluster), true)}>
              Clear filters
            </button>
          </Empty>
        ) : (
          <div className="table-wrap">
            <table className="table" aria-live="polite">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Image</th>
                  <th scope="col">Phase</th>
                  <th scope="col">Ready</th>
                  <th scope="col">Age</th>
                  <th scope="col">
                    <span className="visually-hidden">Open</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {shown.map((s) => {
                  const step =
                    s.phase === "Running" || s.phase === "Stopped" ? null : currentStep(s.conditions, s.phase);
                  const idle = s.phase === "Running" ? idleText(s.idle, now) : null;
                  return (
                    <tr key={s.id} data-server={s.id} data-phase={s.phase}>
                      <td>
                        <a className="strong" href={href(to.server(cluster, s.id))}>
                          {s.name}
                        </a>
                      </td>
                      <td className="mono small ellipsis" title={s.image ?? ""}>
                        {s.image ?? "—"}
                      </td>
                      <td>
                        <PhaseBadge phase={s.phase} />
                        {step && s.phase !== "Terminating" ? (
                          <div className={step.state === "failed" ? "small text-bad" : "small muted"}>
                            {step.state === "failed" ? `${step.label}: ${step.reason || "failed"}` : `${step.label}…`}
                          </div>
                        ) : null}
                        {idle ? (
                          <div className={idle.soon ? "small text-bad" : "small muted"} title={idle.title} data-idle>
                            {idle.text}
                          </div>
                        ) : null}
                      </td>
                      <td>
                        <span className={s.ready ? "ready ready-yes" : "ready"}>
                          {s.ready ? "Yes" : "No"}
                        </span>{" "}
                        <span className="muted small">({s.readyReplicas})</span>
                      </td>
                      <td title={when(s.created)}>{age(s.created, now)}</td>
                      <td className="actions">
                        <LifecycleButtons cluster={cluster} id={s.id} phase={s.phase} stopped={s.stopped} small withRestart={false} />{" "}
                        {s.ready ? (
                          <a className="btn btn-small" href={s.url ?? undefined} target="_blank" rel="noopener">
                            Open ↗
                          </a>
                        ) : (
                          <a className="btn btn-small" href={href(to.server(cluster, s.id))}>
                            Details
                          </a>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </div>
  );
}
