// One /sse/servers stream per cluster for the whole app: the list and the detail page
// share it, so a tab holds at most this connection plus a detail page's log stream
// (browsers allow ~6 HTTP/1.1 connections per origin).
import { createContext, useContext, useEffect, useMemo, useReducer, useRef, useState, type ReactNode } from "react";
import { api, ApiError, ssePath } from "../api/client";
import { ReconnectingStream, type StreamState } from "../lib/sse";
import { actionFromEvent, initialServers, serversReducer, type ServersState } from "./servers";

export interface Problem {
  kind: "host" | "cluster" | "missing" | "other";
  message: string;
}

/** Why a stream or request failed, in words a person can act on. */
export async function diagnose(cluster: string, signal?: AbortSignal): Promise<Problem> {
  try {
    await api.health(signal);
  } catch {
    return { kind: "host", message: "The Host App is not reachable. Is it running, and is the network up?" };
  }
  try {
    const c = await api.cluster(cluster, signal);
    if (!c.reachable) {
      return {
        kind: "cluster",
        message: `Cluster “${c.name || c.id}” is not reachable${c.error ? `: ${c.error}` : "."}`,
      };
    }
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 400)) {
      return { kind: "missing", message: `There is no cluster “${cluster}”.` };
    }
    if (e instanceof ApiError && e.hostUnreachable) {
      return { kind: "host", message: "The Host App is not reachable." };
    }
  }
  try {
    await api.servers(cluster, signal);
  } catch (e) {
    if (e instanceof ApiError) {
      return { kind: e.clusterUnavailable ? "cluster" : "other", message: e.message };
    }
  }
  return { kind: "other", message: "The live update stream was interrupted." };
}

export interface ServersContextValue {
  cluster: string;
  state: ServersState;
  stream: StreamState;
  problem: Problem | null;
  retryNow: () => void;
}

const ServersContext = createContext<ServersContextValue | null>(null);

const EVENTS = ["snapshot", "created", "updated", "deleted", "event"] as const;

export function ServersProvider({ cluster, children }: { cluster: string; children: ReactNode }) {
  const [state, dispatch] = useReducer(serversReducer, initialServers);
  const [stream, setStream] = useState<StreamState>({ kind: "connecting", attempt: 0 });
  const [problem, setProblem] = useState<Problem | null>(null);
  const streamRef = useRef<ReconnectingStream | null>(null);

  useEffect(() => {
    dispatch({ type: "reset" });
    setProblem(null);
    let diagnosing: AbortController | null = null;
    const handlers: Record<string, (data: unknown) => void> = {};
    for (const name of EVENTS) {
      handlers[name] = (data) => {
        const action = actionFromEvent(name, data);
        if (action) dispatch(action);
        if (name === "snapshot") setProblem(null);
      };
    }
    const s = new ReconnectingStream(ssePath(cluster, "servers"), {
      handlers,
      onState: (st) => {
        setStream(st);
        if (st.kind === "retrying" && !diagnosing) {
          diagnosing = new AbortController();
          const d = diagnosing;
          diagnose(cluster, d.signal)
            .then((p) => {
              if (!d.signal.aborted) setProblem(p);
            })
            .catch(() => undefined)
            .finally(() => {
              if (diagnosing === d) diagnosing = null;
            });
        }
      },
    });
    streamRef.current = s;
    s.start();
    return () => {
      diagnosing?.abort();
      s.close();
      streamRef.current = null;
    };
  }, [cluster]);

  const value = useMemo<ServersContextValue>(
    () => ({ cluster, state, stream, problem, retryNow: () => streamRef.current?.retryNow() }),
    [cluster, state, stream, problem],
  );
  return <ServersContext.Provider value={value}>{children}</ServersContext.Provider>;
}

export function useServers(): ServersContextValue {
  const v = useContext(ServersContext);
  if (!v) throw new Error("useServers outside ServersProvider");
  return v;
}
