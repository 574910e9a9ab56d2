import { beforeEach, describe, expect, it } from "vitest";
import { ReconnectingStream, withLastEventId, type EventSourceLike, type StreamState, type Timers } from "./sse";

class FakeSource implements EventSourceLike {
  readyState = 0;
  onopen: ((ev: Event) => unknown) | null = null;
  onerror: ((ev: Event) => unknown) | null = null;
  onmessage: ((ev: MessageEvent) => unknown) | null = null;
  listeners = new Map<string, (ev: MessageEvent) => void>();
  closed = false;
  constructor(readonly url: string) {}
  addEventListener(type: string, listener: (ev: MessageEvent) => void) {
    this.listeners.set(type, listener);
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
  open() {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  fail() {
    this.onerror?.(new Event("error"));
  }
  emit(type: string, data: unknown, lastEventId = "") {
    const ev = { data: typeof data === "string" ? data : JSON.stringify(data), lastEventId } as MessageEvent;
    if (type === "message") this.onmessage?.(ev);
    else this.listeners.get(type)?.(ev);
  }
}

class FakeTimers implements Timers {
  t = 0;
  queue: { at: number; fn: () => void; id: number }[] = [];
  next = 1;
  setTimeout(fn: () => void, ms: number) {
    const id = this.next++;
    this.queue.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown) {
    this.queue = this.queue.filter((q) => q.id !== handle);
  }
  now() {
    return this.t;
  }
  advance(ms: number) {
    this.t += ms;
    const due = this.queue.filter((q) => q.at <= this.t);
    this.queue = this.queue.filter((q) => q.at > this.t);
    for (const q of due) q.fn();
  }
}

describe("withLastEventId", () => {
  it("adds or replaces the query parameter", () => {
    expect(withLastEventId("/sse/logs?server=a", "p/1/2")).toBe("/sse/logs?server=a&lastEventId=p%2F1%2F2");
    expect(withLastEventId("/sse/logs?lastEventId=old&x=1", "new")).toBe("/sse/logs?lastEventId=new&x=1");
    expect(withLastEventId("/sse/servers", null)).toBe("/sse/servers");
  });
});

describe("ReconnectingStream", () => {
  let sources: FakeSource[];
  let timers: FakeTimers;
  let states: StreamState[];
  let got: { name: string; data: unknown }[];

  function make(url = "/sse/x") {
    return new ReconnectingStream(url, {
      handlers: {
        snapshot: (data) => got.push({ name: "snapshot", data }),
        message: (data) => got.push({ name: "message", data }),
      },
      onState: (s) => states.push(s),
      factory: (u) => {
        const s = new FakeSource(u);
        sources.push(s);
        return s;
      },
      timers,
      random: () => 0,
      backoff: { initialMs: 1000, maxMs: 8000, factor: 2, jitter: 0.3 },
    });
  }

  beforeEach(() => {
    sources = [];
    timers = new FakeTimers();
    states = [];
    got = [];
  });

  it("delivers parsed events to the named handlers", () => {
    make().start();
    sources[0]!.open();
    sources[0]!.emit("snapshot", { servers: [] });
    sources[0]!.emit("message", "plain text");
    expect(got).toEqual([
      { name: "snapshot", data: { servers: [] } },
      { name: "message", data: "plain text" },
    ]);
    expect(states.map((s) => s.kind)).toEqual(["connecting", "open"]);
  });

  it("reconnects with growing delays while the server keeps failing", () => {
    make().start();
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      sources[i]!.fail();
      expect(sources[i]!.closed).toBe(true);
      const st = states[states.length - 1]!;
      expect(st.kind).toBe("retrying");
      if (st.kind === "retrying") delays.push(st.delayMs);
      timers.advance(delays[i]!);
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000]);
    expect(sources).toHaveLength(6);
  });

  it("resets the backoff once a new connection delivers an event", () => {
    make().start();
    sources[0]!.fail();
    timers.advance(1000);
    sources[1]!.fail();
    timers.advance(2000);
    sources[2]!.open();
    sources[2]!.emit("snapshot", { servers: [] });
    sources[2]!.fail();
    const st = states[states.length - 1]!;
    expect(st.kind === "retrying" && st.delayMs).toBe(1000);
  });

  it("does not reset the backoff for a connection that opens and drops without events", () => {
    make().start();
    sources[0]!.fail();
    timers.advance(1000);
    sources[1]!.open();
    sources[1]!.fail();
    const st = states[states.length - 1]!;
    expect(st.kind === "retrying" && st.delayMs).toBe(2000);
  });

  it("resumes from the last event id", () => {
    make("/sse/logs?server=a").start();
    sources[0]!.open();
    sources[0]!.emit("message", { line: "x" }, "pod/2026-01-01T00:00:00Z/1");
    sources[0]!.fail();
    timers.advance(1000);
    expect(sources[1]!.url).toBe("/sse/logs?server=a&lastEventId=pod%2F2026-01-01T00%3A00%3A00Z%2F1");
  });

  it("stops for good on close: no retries, no events", () => {
    const s = make().start();
    sources[0]!.fail();
    s.close();
    timers.advance(60_000);
    expect(sources).toHaveLength(1);
    expect(states[states.length - 1]!.kind).toBe("closed");
    sources[0]!.emit("snapshot", {});
    expect(got).toEqual([]);
  });

  it("retryNow skips the wait", () => {
    const s = make().start();
    sources[0]!.fail();
    s.retryNow();
    expect(sources).toHaveLength(2);
    timers.advance(60_000);
    expect(sources).toHaveLength(2);
  });

  it("ignores events from a replaced connection", () => {
    const s = make().start();
    const old = sources[0]!;
    s.retryNow();
    old.emit("snapshot", { stale: true });
    expect(got).toEqual([]);
    expect(old.closed).toBe(true);
  });
});
