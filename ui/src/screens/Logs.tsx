import { useEffect, useMemo, useReducer, useRef, useState } from "react";
import { api, ssePath } from "../api/client";
import { countdown } from "../lib/format";
import { useNow } from "../lib/hooks";
import { ReconnectingStream, type StreamState } from "../lib/sse";
import { highlight, initialLogs, logsReducer, parseLogLine, searchLines } from "../state/logs";

const FLUSH_MS = 100;

/** "12:34:56" (local time) of an RFC 3339 timestamp; the text itself when it does not parse. */
function clock(iso: string): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toLocaleTimeString([], { hour12: false });
}
const INITIAL_TAIL = 500;

/** Live logs of one workspace: follow (auto-scroll), pause (disconnect and resume), search, download. */
export function LogsPanel({ cluster, id }: { cluster: string; id: string }) {
  const [state, dispatch] = useReducer(logsReducer, initialLogs);
  const [paused, setPaused] = useState(false);
  const [follow, setFollow] = useState(true);
  const [query, setQuery] = useState("");
  const [stream, setStream] = useState<StreamState>({ kind: "connecting", attempt: 0 });
  const lastId = useRef<string | null>(null);
  const streamRef = useRef<ReconnectingStream | null>(null);
  const viewRef = useRef<HTMLDivElement>(null);
  const now = useNow(1000);

  useEffect(() => {
    if (paused) return;
    let pending: { pod: string; time: string; line: string }[] = [];
    let timer: ReturnType<typeof setTimeout> | null = null;
    const flush = () => {
      timer = null;
      if (pending.length) dispatch({ type: "lines", lines: pending });
      pending = [];
    };
    const url = ssePath(cluster, `logs?server=${encodeURIComponent(id)}&tail=${INITIAL_TAIL}`);
    const s = new ReconnectingStream(url, {
      handlers: {
        message: (data) => {
          const line = parseLogLine(data);
          if (!line) return;
          pending.push(line);
          if (!timer) timer = setTimeout(flush, FLUSH_MS);
        },
        pods: (data) => {
          const pods = (data as { pods?: unknown }).pods;
          if (Array.isArray(pods)) dispatch({ type: "pods", pods: pods.map(String) });
        },
        notice: (data) => {
          const d = data as { message?: unknown; pod?: unknown };
          if (typeof d.message === "string") dispatch({ type: "notice", message: d.pod ? `${String(d.pod)}: ${d.message}` : d.message });
        },
        end: (data) => {
          flush();
          dispatch({ type: "end", reason: String((data as { reason?: unknown }).reason ?? "ended") });
          s.close();
        },
      },
      onState: (st) => {
        setStream(st);
        if (st.kind === "open") dispatch({ type: "resumed" });
      },
    });
    s.lastEventId = lastId.current;
    streamRef.current = s;
    s.start();
    return () => {
      if (timer) clearTimeout(timer);
      flush();
      lastId.current = s.lastEventId;
      s.close();
      streamRef.current = null;
    };
  }, [cluster, id, paused]);

  const shown = useMemo(() => searchLines(state.lines, query), [state.lines, query]);

  // Follow: keep the newest line in view.
  useEffect(() => {
    const el = viewRef.current;
    if (follow && el) el.scrollTop = el.scrollHeight;
  }, [shown, follow]);

  const status = paused
    ? "Paused"
    : state.ended
      ? state.ended === "deleted"
        ? "Ended: the workspace was deleted"
        : `Ended (${state.ended})`
      : stream.kind === "open"
        ? "Streaming"
        : stream.kind === "retrying"
          ? `Disconnected, reconnecting ${countdown(stream.retryAt, now)}`
          : "Connecting…";

  return (
    <section className="card logs" aria-label="Logs">
      <div className="logs-toolbar">
        <button type="button" className="btn btn-small" aria-pressed={paused} onClick={() => setPaused((p) => !p)}>
          {paused ? "Resume" : "Pause"}
        </button>
        <label className="check">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Follow
        </label>
        <label className="logs-search">
          <span className="visually-hidden">Search logs</span>
          <input type="search" placeholder="Search logs" value={query} onChange={(e) => setQuery(e.target.value)} />
        </label>
        {query ? (
          <span className="small muted" aria-live="polite">
            {shown.length} of {state.lines.length} lines
          </span>
        ) : null}
        <span className="spacer" />
        <span className={stream.kind === "open" && !paused ? "live live-on" : "live"} data-log-status={paused ? "paused" : stream.kind}>
          {status}
        </span>
        <button type="button" className="btn btn-small" onClick={() => dispatch({ type: "clear" })}>
          Clear
        </button>
        <a className="btn btn-small" href={api.logsUrl(cluster, id)} download={`${id}.log`}>
          Download
        </a>
      </div>
      {state.pods.length > 1 ? <div className="small muted">Pods: {state.pods.join(", ")}</div> : null}
      {state.notices.map((n, i) => (
        <div key={i} className="small muted">
          {n}
        </div>
      ))}
      <div
        ref={viewRef}
        className="log-view"
        tabIndex={0}
        role="log"
        aria-label={`Log lines of ${id}`}
        onScroll={(e) => {
          const el = e.currentTarget;
          const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 8;
          if (!atBottom && follow) setFollow(false);
        }}
      >
        {state.dropped > 0 ? <div className="log-meta">… {state.dropped} earlier lines not kept</div> : null}
        {shown.length === 0 ? (
          <div className="log-meta">
            {state.lines.length === 0
              ? state.pods.length === 0 && stream.kind === "open"
                ? "Waiting for the container to start…"
                : "No log lines yet."
              : "No line matches."}
          </div>
        ) : (
          shown.map((l) => (
            <div key={l.seq} className="log-line">
              {l.time ? (
                <span className="log-time" title={l.time}>
                  {clock(l.time)}
                </span>
              ) : null}
              {state.pods.length > 1 ? <span className="log-pod">{l.pod}</span> : null}
              {highlight(l.text, query).map((part, i) =>
                part.match ? <mark key={i}>{part.text}</mark> : <span key={i}>{part.text}</span>,
              )}
            </div>
          ))
        )}
      </div>
    </section>
  );
}
