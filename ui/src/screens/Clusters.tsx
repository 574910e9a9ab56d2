import { useEffect, useRef, useState, type FormEvent } from "react";
import { api, ApiError, clusterHealth } from "../api/client";
import type { Cluster, ClusterHealth } from "../api/types";
import { ConfirmDialog, Empty, ErrorNotice, Field, Spinner } from "../components/common";
import { healthGlance } from "../lib/health";
import { href, to } from "../lib/route";
import { validateClusterId } from "../lib/validation";
import { useAppData } from "../state/AppData";

export function ClustersScreen() {
  const { clusters } = useAppData();
  const [removing, setRemoving] = useState<Cluster | null>(null);
  const [removeBusy, setRemoveBusy] = useState(false);
  const [removeError, setRemoveError] = useState<string | null>(null);
  const [added, setAdded] = useState<Cluster | null>(null);

  const list = clusters.data;
  return (
    <div className="stack">
      <div className="page-head">
        <h1>Clusters</h1>
        <button type="button" className="btn" onClick={clusters.reload} disabled={clusters.loading}>
          {clusters.loading ? "Checking…" : "Check again"}
        </button>
      </div>
      <p className="muted">Kubernetes clusters this Host App manages workspaces on. Pick one to see its workspaces.</p>

      {clusters.error ? (
        <ErrorNotice error={clusters.error} retryAt={clusters.retryAt} onRetry={clusters.reload} what="clusters" />
      ) : null}
      {added ? (
        <div className="notice notice-ok" role="status">
          Cluster <strong>{added.name || added.id}</strong> added
          {added.reachable ? ` (Kubernetes ${added.version ?? "reachable"})` : ""}.{" "}
          <a href={href(to.workspaces(added.id))}>Open its workspaces →</a>
        </div>
      ) : null}

      <section className="card" aria-labelledby="clusters-list">
        <h2 id="clusters-list">Registered clusters</h2>
        {list === null ? (
          clusters.error ? null : <Spinner label="Loading clusters…" />
        ) : list.length === 0 ? (
          <Empty title="No clusters yet">
            <p>Add one below with its kubeconfig. The Host App checks that it can reach it before saving.</p>
          </Empty>
        ) : (
          <div className="table-wrap">
            <table className="table">
              <thead>
                <tr>
                  <th scope="col">Cluster</th>
                  <th scope="col">API server</th>
                  <th scope="col">Reachability</th>
                  <th scope="col">Health</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {list.map((c) => (
                  <tr key={c.id} data-cluster={c.id}>
                    <td>
                      <a href={href(to.workspaces(c.id))} className="strong">
                        {c.name || c.id}
                      </a>
                      {c.name && c.name !== c.id ? <div className="muted small">{c.id}</div> : null}
                      {!c.deletable ? <div className="muted small">from configuration</div> : null}
                    </td>
                    <td className="mono small">{c.server ?? "—"}</td>
                    <td>
                      {c.reachable ? (
                        <span className="reach reach-ok">Reachable{c.version ? ` · ${c.version}` : ""}</span>
                      ) : (
                        <span className="reach reach-bad" title={c.error ?? ""}>
                          Unreachable{c.error ? `: ${c.error}` : ""}
                        </span>
                      )}
                    </td>
                    <td>
                      <HealthCell row={c} />
                    </td>
                    <td className="actions">
                      <a className="btn btn-small" href={href(to.workspaces(c.id))}>
                        Workspaces
                      </a>
                      {c.deletable ? (
                        <button
                          type="button"
                          className="btn btn-small btn-danger-outline"
                          onClick={() => {
                            setRemoveError(null);
                            setRemoving(c);
                          }}
                        >
                          Remove
                        </button>
                      ) : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <AddCluster
        existing={list?.map((c) => c.id) ?? []}
        onAdded={(c) => {
          setAdded(c);
          clusters.reload();
        }}
      />

      <ConfirmDialog
        open={removing !== null}
        title={`Remove cluster “${removing?.name || removing?.id || ""}”?`}
        confirmLabel="Remove cluster"
        danger
        busy={removeBusy}
        onClose={() => setRemoving(null)}
        onConfirm={() => {
          if (!removing) return;
          setRemoveBusy(true);
          setRemoveError(null);
          api
            .deleteCluster(removing.id)
            .then(() => {
              setRemoving(null);
              if (added?.id === removing.id) setAdded(null);
              clusters.reload();
            })
            .catch((e: unknown) => setRemoveError(e instanceof ApiError ? e.message : String(e)))
            .finally(() => setRemoveBusy(false));
        }}
      >
        <p>
          GuildNet forgets this cluster and its stored kubeconfig. Workspaces running on it keep running; add the
          cluster again to manage them.
        </p>
        {removeError ? (
          <p className="field-error" role="alert">
            {removeError}
          </p>
        ) : null}
      </ConfirmDialog>
    </div>
  );
}

/** The cluster's health at a glance; the tooltip lists every part with its reason. */
function HealthCell({ row }: { row: Cluster }) {
  const cluster = row.id;
  const [health, setHealth] = useState<ClusterHealth | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const controller = new AbortController();
    setError(null);
    clusterHealth(cluster, controller.signal)
      .then(setHealth)
      .catch((e: unknown) => {
        if (!controller.signal.aborted) setError(e instanceof ApiError ? e.message : String(e));
      });
    return () => controller.abort();
    // Each "Check again" brings new row objects: health is checked again with them.
  }, [cluster, row]);
  if (error) return <span className="reach reach-bad">Health unknown: {error}</span>;
  if (!health) return <span className="muted small">Checking…</span>;
  const glance = healthGlance(health);
  return (
    <span
      className={`reach ${glance.ok ? "reach-ok" : "reach-bad"}`}
      title={glance.detail}
      data-health={glance.ok ? "ok" : "failing"}
    >
      {glance.text}
    </span>
  );
}

function AddCluster({ existing, onAdded }: { existing: string[]; onAdded: (c: Cluster) => void }) {
  const [id, setId] = useState("");
  const [name, setName] = useState("");
  const [kubeconfig, setKubeconfig] = useState("");
  const [fileName, setFileName] = useState<string | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const fileRef = useRef<HTMLInputElement>(null);

  function validate(): Record<string, string> {
    const e: Record<string, string> = {};
    const idErr = validateClusterId(id.trim());
    if (idErr) e.id = `Cluster id ${idErr}`;
    else if (existing.includes(id.trim())) e.id = `A cluster “${id.trim()}” already exists`;
    if (name.length > 100) e.name = "Name must be at most 100 characters";
    if (!kubeconfig.trim()) e.kubeconfig = "Paste a kubeconfig or choose a file";
    else if (kubeconfig.length > 256 * 1024) e.kubeconfig = "The kubeconfig is larger than 256 KiB";
    return e;
  }

  function submit(ev: FormEvent) {
    ev.preventDefault();
    const e = validate();
    setErrors(e);
    setFormError(null);
    const firstBad = Object.keys(e)[0];
    if (firstBad) {
      document.getElementById(`cluster-${firstBad}`)?.focus();
      return;
    }
    setBusy(true);
    api
      .addCluster({ id: id.trim(), name: name.trim() || undefined, kubeconfig } as {
        id: string;
        name?: string;
        kubeconfig: string;
      })
      .then((c) => {
        setId("");
        setName("");
        setKubeconfig("");
        setFileName(null);
        if (fileRef.current) fileRef.current.value = "";
        onAdded(c);
      })
      .catch((err: unknown) => {
        if (err instanceof ApiError && err.field && ["id", "name", "kubeconfig"].includes(err.field)) {
          setErrors({ [err.field]: err.message });
          document.getElementById(`cluster-${err.field}`)?.focus();
        } else setFormError(err instanceof ApiError ? err.message : String(err));
      })
      .finally(() => setBusy(false));
  }

  return (
    <section className="card" aria-labelledby="add-cluster">
      <h2 id="add-cluster">Add a cluster</h2>
      <form onSubmit={submit} noValidate className="form">
        <div className="grid-2">
          <Field id="cluster-id" label="Cluster id" error={errors.id} hint="Lower-case letters, digits and '-'; used in URLs.">
            <input
              id="cluster-id"
              name="id"
              value={id}
              autoComplete="off"
              spellCheck={false}
              aria-invalid={errors.id ? true : undefined}
              aria-describedby={errors.id ? "cluster-id-error" : undefined}
              onChange={(e) => setId(e.target.value)}
              placeholder="staging"
            />
          </Field>
          <Field id="cluster-name" label="Display name (optional)" error={errors.name}>
            <input
              id="cluster-name"
              name="name"
              value={name}
              autoComplete="off"
              aria-invalid={errors.name ? true : undefined}
              onChange={(e) => setName(e.target.value)}
              placeholder="Staging cluster"
            />
          </Field>
        </div>
        <Field
          id="cluster-kubeconfig"
          label="Kubeconfig"
          error={errors.kubeconfig}
          hint={fileName ? `Loaded from ${fileName}.` : "Paste it here, or load a file."}
        >
          <textarea
            id="cluster-kubeconfig"
            name="kubeconfig"
            rows={8}
            spellCheck={false}
            className="mono"
            value={kubeconfig}
            aria-invalid={errors.kubeconfig ? true : undefined}
            aria-describedby={errors.kubeconfig ? "cluster-kubeconfig-error" : undefined}
            onChange={(e) => {
              setKubeconfig(e.target.value);
              setFileName(null);
            }}
            placeholder={"apiVersion: v1\nkind: Config\nclusters: …"}
          />
        </Field>
        <div className="row">
          <label className="btn btn-file">
            Load kubeconfig file…
            <input
              ref={fileRef}
              type="file"
              className="visually-hidden"
              onChange={(e) => {
                const f = e.target.files?.[0];
                if (!f) return;
                if (f.size > 256 * 1024) {
                  setErrors((x) => ({ ...x, kubeconfig: "The file is larger than 256 KiB" }));
                  return;
                }
                void f.text().then((text) => {
                  setKubeconfig(text);
                  setFileName(f.name);
                  setErrors((x) => {
                    const { kubeconfig: _drop, ...rest } = x;
                    return rest;
                  });
                });
              }}
            />
          </label>
          <span className="spacer" />
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {busy ? "Checking the cluster…" : "Add cluster"}
          </button>
        </div>
        {formError ? (
          <div className="notice notice-error" role="alert">
            {formError}
          </div>
        ) : null}
      </form>
    </section>
  );
}
