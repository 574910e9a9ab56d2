// Live log lines of one workspace (from /sse/logs), bounded, searchable.

export const MAX_LINES = 5000;

export interface LogLine {
  /** Client-side sequence number: a stable React key. */
  seq: number;
  pod: string;
  time: string;
  text: string;
}

export interface LogsState {
  lines: LogLine[];
  /** Lines dropped from the front to stay within MAX_LINES. */
  dropped: number;
  nextSeq: number;
  pods: string[];
  notices: string[];
  ended: string | null;
}

export type LogsAction =
  | { type: "lines"; lines: { pod: string; time: string; line: string }[] }
  | { type: "pods"; pods: string[] }
  | { type: "notice"; message: string }
  | { type: "end"; reason: string }
  | { type: "resumed" }
  | { type: "clear" };

export const initialLogs: LogsState = {
  lines: [],
  dropped: 0,
  nextSeq: 0,
  pods: [],
  notices: [],
  ended: null,
};

export function logsReducer(state: LogsState, action: LogsAction): LogsState {
  return reduceLogs(state, action, MAX_LINES);
}

/** logsReducer with an explicit line limit (tests use small ones). */
export function reduceLogs(state: LogsState, action: LogsAction, max: number): LogsState {
  switch (action.type) {
    case "lines": {
      if (!action.lines.length) return state;
      let seq = state.nextSeq;
      const added = action.lines.map((l) => ({ seq: seq++, pod: l.pod, time: l.time, text: l.line }));
      let lines = state.lines.concat(added);
      let dropped = state.dropped;
      if (lines.length > max) {
        dropped += lines.length - max;
        lines = lines.slice(lines.length - max);
      }
      return { ...state, lines, dropped, nextSeq: seq };
    }
    case "pods":
      return { ...state, pods: action.pods };
    case "notice":
      return { ...state, notices: [...state.notices, action.message].slice(-5) };
    case "end":
      return { ...state, ended: action.reason };
    case "resumed":
      return state.ended === null ? state : { ...state, ended: null };
    case "clear":
      return { ...initialLogs, nextSeq: state.nextSeq, pods: state.pods };
  }
}

/** Lines containing `query` (case-insensitive); all lines for an empty query. */
export function searchLines(lines: LogLine[], query: string): LogLine[] {
  const q = query.trim().toLowerCase();
  if (!q) return lines;
  return lines.filter((l) => l.text.toLowerCase().includes(q));
}

/** Splits `text` around case-insensitive matches of `query`, for highlighting. */
export function highlight(text: string, query: string): { text: string; match: boolean }[] {
  const q = query.trim().toLowerCase();
  if (!q) return [{ text, match: false }];
  const out: { text: string; match: boolean }[] = [];
  const lower = text.toLowerCase();
  let at = 0;
  for (;;) {
    const i = lower.indexOf(q, at);
    if (i < 0) break;
    if (i > at) out.push({ text: text.slice(at, i), match: false });
    out.push({ text: text.slice(i, i + q.length), match: true });
    at = i + q.length;
  }
  if (at < text.length) out.push({ text: text.slice(at), match: false });
  return out;
}

/** The /sse/logs `message` payload as a line, or null. */
export function parseLogLine(data: unknown): { pod: string; time: string; line: string } | null {
  if (typeof data !== "object" || data === null) return null;
  const d = data as Record<string, unknown>;
  if (typeof d.line !== "string") return null;
  return { pod: String(d.pod ?? ""), time: String(d.time ?? ""), line: d.line };
}
