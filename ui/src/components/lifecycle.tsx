// Stop / Start / Restart buttons for one workspace, shared by the list and the detail view.
import { useState } from "react";
import { api, ApiError } from "../api/client";
import { lifecycleActions } from "../lib/lifecycle";

type Action = "stop" | "start" | "restart";

const LABELS: Record<Action, [string, string]> = {
  stop: ["Stop", "Stopping…"],
  start: ["Start", "Starting…"],
  restart: ["Restart", "Restarting…"],
};

const TITLES: Record<Action, string> = {
  stop: "Scale to zero; files and password are kept",
  start: "Start again with the same files and password",
  restart: "Replace the pod (files are kept)",
};

export function LifecycleButtons({
  cluster,
  id,
  phase,
  stopped,
  small = false,
  withRestart = true,
  onDone,
}: {
  cluster: string;
  id: string;
  phase: string;
  stopped?: boolean | undefined;
  small?: boolean;
  withRestart?: boolean;
  onDone?: () => void;
}) {
  const [busy, setBusy] = useState<Action | null>(null);
  const [error, setError] = useState<string | null>(null);
  const actions = lifecycleActions(phase, stopped);
  const shown = (["stop", "start", "restart"] as Action[]).filter(
    (a) => actions[a] && (withRestart || a !== "restart"),
  );
  function run(action: Action) {
    setBusy(action);
    setError(null);
    const call =
      action === "stop" ? api.stopServer : action === "start" ? api.startServer : api.restartServer;
    call(cluster, id)
      .then(() => onDone?.())
      .catch((e: unknown) => setError(e instanceof ApiError ? e.message : String(e)))
      .finally(() => setBusy(null));
  }
  return (
    <>
      {shown.map((a) => (
        <button
          key={a}
          type="button"
          className={`btn${small ? " btn-small" : ""}${a === "start" ? " btn-primary" : ""}`}
          data-action={a}
          disabled={busy !== null}
          title={TITLES[a]}
          onClick={() => run(a)}
        >
          {busy === a ? LABELS[a][1] : LABELS[a][0]}
        </button>
      ))}
      {error ? (
        <span className="field-error small" role="alert">
          {error}
        </span>
      ) : null}
    </>
  );
}
