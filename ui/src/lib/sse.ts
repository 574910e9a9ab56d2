// One EventSource that reconnects with backoff and reports its state.
//
// The browser's own EventSource reconnects at a fixed interval after a dropped connection,
// but gives up for good when the server answers with an error status (a 503 while a
// cluster is unreachable, a 502 from a gateway). This wrapper takes over both cases: on
// any error it closes the EventSource and opens a new one after an exponential backoff,
// passing the last event id as `lastEventId` so resumable streams (/sse/logs) continue
// where they stopped. The attempt counter resets once a new connection delivers an event.
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff";

export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((ev: Event) => unknown) | null;
  onerror: ((ev: Event) => unknown) | null;
  onmessage: ((ev: MessageEvent) => unknown) | null;
  addEventListener(type: string, listener: (ev: MessageEvent) => void): void;
  close(): void;
}

export type StreamState =
  | { kind: "connecting"; attempt: number }
  | { kind: "open" }
  | { kind: "retrying"; attempt: number; delayMs: number; retryAt: number }
  | { kind: "closed" };

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
  now: () => Date.now(),
};

export interface StreamOptions {
  /** Event name -> handler of its parsed `data` (JSON when it parses, else the text). */
  handlers: Record<string, (data: unknown, ev: MessageEvent) => void>;
  onState?: (state: StreamState) => void;
  backoff?: BackoffOptions;
  factory?: (url: string) => EventSourceLike;
  timers?: Timers;
  random?: () => number;
}

/** Adds (or replaces) the `lastEventId` query parameter of `url`. */
export function withLastEventId(url: string, lastEventId: string | null): string {
  if (!lastEventId) return url;
  const hashless = url.split("#")[0] ?? url;
  const [path, query = ""] = hashless.split("?", 2) as [string, string | undefined];
  const params = new URLSearchParams(query);
  params.set("lastEventId", lastEventId);
  return `${path}?${params.toString()}`;
}

export function parseData(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class ReconnectingStream {
  private readonly url: string;
  private readonly opts: StreamOptions;
  private readonly timers: Timers;
  private source: EventSourceLike | null = null;
  private timer: unknown = null;
  private attempt = 0;
  private stopped = false;
  private _state: StreamState = { kind: "connecting", attempt: 0 };
  /** The id of the last event received, sent back on reconnect. */
  lastEventId: string | null = null;

  constructor(url: string, opts: StreamOptions) {
    this.url = url;
    this.opts = opts;
    this.timers = opts.timers ?? realTimers;
  }

  get state(): StreamState {
    return this._state;
  }

  start(): this {
    this.connect();
    return this;
  }

  /** Closes for good; no more events, state or reconnects. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimer();
    this.dispose();
    this.setState({ kind: "closed" });
  }

  /** Reconnects now, skipping the rest of a backoff wait (the "Retry now" button). */
  retryNow(): void {
    if (this.stopped) return;
    this.clearTimer();
    this.dispose();
    this.connect();
  }

  private connect(): void {
    if (this.stopped) return;
    this.setState({ kind: "connecting", attempt: this.attempt });
    const factory = this.opts.factory ?? ((u: string) => new EventSource(u) as EventSourceLike);
    let source: EventSourceLike;
    try {
      source = factory(withLastEventId(this.url, this.lastEventId));
    } catch {
      this.scheduleRetry();
      return;
    }
    this.source = source;
    let delivered = false;
    source.onopen = () => {
      if (this.source === source) this.setState({ kind: "open" });
    };
    source.onerror = () => {
      if (this.source !== source) return;
      this.dispose();
      this.scheduleRetry();
    };
    const deliver = (name: string) => (ev: MessageEvent) => {
      if (this.source !== source || this.stopped) return;
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      if (!delivered) {
        delivered = true;
        this.attempt = 0;
      }
      const handler = this.opts.handlers[name];
      if (handler) handler(parseData(String(ev.data)), ev);
    };
    for (const name of Object.keys(this.opts.handlers)) {
      if (name === "message") source.onmessage = deliver(name);
      else source.addEventListener(name, deliver(name));
    }
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    const delayMs = backoffDelay(this.attempt, this.opts.backoff ?? DEFAULT_BACKOFF, this.opts.random);
    this.attempt += 1;
    this.setState({
      kind: "retrying",
      attempt: this.attempt,
      delayMs,
      retryAt: this.timers.now() + delayMs,
    });
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delayMs);
  }

  private dispose(): void {
    const source = this.source;
    this.source = null;
    if (source) {
      source.onopen = null;
      source.onerror = null;
      source.onmessage = null;
      source.close();
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      this.timers.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private setState(state: StreamState): void {
    this._state = state;
    if (!this.stopped || state.kind === "closed") this.opts.onState?.(state);
  }
}
