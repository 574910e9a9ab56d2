import { useState, type FormEvent } from "react";
import { api, ApiError } from "../api/client";
import type { StopAllResult } from "../api/types";
import { Field } from "../components/common";
import { href, to } from "../lib/route";
import { useServers } from "../state/ServersProvider";

export function AdminScreen({ cluster }: { cluster: string }) {
  const { state } = useServers();
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [result, setResult] = useState<StopAllResult | null>(null);
  const count = Object.keys(state.byId).length;
  const phrase = cluster;
  const matches = typed.trim() === phrase;

  function submit(ev: FormEvent) {
    ev.preventDefault();
    if (!matches || busy) return;
    setBusy(true);
    setError(null);
    api
      .stopAll(cluster)
      .then((r) => {
        setResult(r);
        setTyped("");
      })
      .catch((e: unknown) => setError(e instanceof ApiError ? e.message : String(e)))
      .finally(() => setBusy(false));
  }

  return (
    <div className="stack">
      <div className="page-head">
        <h1>Admin</h1>
      </div>
      <section className="card card-danger" aria-labelledby="stop-all-h">
        <h2 id="stop-all-h">Stop all workspaces</h2>
        <p>
          Deletes every GuildNet workspace on cluster <strong>{cluster}</strong> with its Deployment, Service and
          password. Other workloads in the cluster are not touched.
          {state.loaded ? ` ${count === 0 ? "There are no workspaces now." : `${count} workspace${count === 1 ? "" : "s"} now.`}` : ""}
        </p>
        <form onSubmit={submit} className="form" noValidate>
          <Field id="stop-all-confirm" label={`Type the cluster id “${phrase}” to confirm`}>
            <input
              id="stop-all-confirm"
              value={typed}
              autoComplete="off"
              spellCheck={false}
              onChange={(e) => setTyped(e.target.value)}
            />
          </Field>
          <div className="row">
            <button type="submit" className="btn btn-danger" disabled={!matches || busy}>
              {busy ? "Stopping…" : "Stop all workspaces"}
            </button>
          </div>
        </form>
        {error ? (
          <div className="notice notice-error" role="alert">
            {error}
          </div>
        ) : null}
        {result ? (
          <div className="notice notice-ok" role="status" data-testid="stop-all-result">
            {result.deleted.length === 0 ? (
              <p>There was nothing to stop.</p>
            ) : (
              <>
                <p>
                  Deleted {result.deleted.length} workspace{result.deleted.length === 1 ? "" : "s"}:
                </p>
                <ul className="deleted-list">
                  {result.deleted.map((id) => (
                    <li key={id} className="mono">
                      {id}
                    </li>
                  ))}
                </ul>
              </>
            )}
            {result.failed?.length ? (
              <>
                <p className="text-bad">Could not delete:</p>
                <ul>
                  {result.failed.map((f) => (
                    <li key={f.id}>
                      <span className="mono">{f.id}</span>: {f.error}
                    </li>
                  ))}
                </ul>
              </>
            ) : null}
            <a href={href(to.workspaces(cluster))}>Back to workspaces</a>
          </div>
        ) : null}
      </section>
    </div>
  );
}
