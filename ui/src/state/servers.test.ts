import { describe, expect, it } from "vitest";
import type { EventView, ServerSummary } from "../api/types";
import {
  actionFromEvent,
  filterServers,
  initialServers,
  mergeEvents,
  phaseCounts,
  serversReducer,
  sortedServers,
  type ServersAction,
  type ServersState,
} from "./servers";

const server = (id: string, patch: Partial<ServerSummary> = {}): ServerSummary => ({
  id,
  name: id,
  image: "img:1",
  phase: "Pending",
  ready: false,
  readyReplicas: 0,
  url: `/proxy/server/${id}/`,
  created: "2026-01-01T00:00:00Z",
  message: "",
  managed: true,
  ...patch,
});

const event = (patch: Partial<EventView> = {}): EventView => ({
  type: "Normal",
  reason: "Scheduled",
  message: "assigned",
  pod: "ws-abc-1",
  count: 1,
  firstTime: "2026-01-01T00:00:01Z",
  lastTime: "2026-01-01T00:00:01Z",
  source: "scheduler",
  ...patch,
});

const run = (actions: ServersAction[], start: ServersState = initialServers) => actions.reduce(serversReducer, start);

describe("serversReducer", () => {
  it("is loading until the first snapshot", () => {
    expect(initialServers.loaded).toBe(false);
    const s = run([{ type: "snapshot", servers: [] }]);
    expect(s.loaded).toBe(true);
    expect(sortedServers(s)).toEqual([]);
  });

  it("applies created, updated and deleted", () => {
    const s = run([
      { type: "snapshot", servers: [server("a")] },
      { type: "created", server: server("b") },
      { type: "updated", server: server("a", { phase: "Running", ready: true }) },
      { type: "deleted", id: "b" },
    ]);
    expect(Object.keys(s.byId)).toEqual(["a"]);
    expect(s.byId.a!.phase).toBe("Running");
    expect(s.deleted).toEqual({ b: true });
  });

  it("a new snapshot replaces the list and marks vanished servers deleted", () => {
    const s = run([
      { type: "snapshot", servers: [server("a"), server("b")] },
      { type: "event", server: "a", event: event() },
      { type: "event", server: "b", event: event() },
      { type: "snapshot", servers: [server("a")] },
    ]);
    expect(Object.keys(s.byId)).toEqual(["a"]);
    expect(s.deleted).toEqual({ b: true });
    expect(Object.keys(s.events)).toEqual(["a"]);
  });

  it("a server created again is no longer deleted", () => {
    const s = run([
      { type: "snapshot", servers: [server("a")] },
      { type: "deleted", id: "a" },
      { type: "created", server: server("a") },
    ]);
    expect(s.deleted).toEqual({});
    expect(s.byId.a).toBeDefined();
  });

  it("keeps conditions when an update lacks them", () => {
    const conditions = [{ type: "Accepted", status: "True" }];
    const s = run([
      { type: "snapshot", servers: [server("a", { conditions })] },
      { type: "updated", server: server("a", { phase: "Starting" }) },
    ]);
    expect(s.byId.a!.conditions).toEqual(conditions);
  });

  it("collects pod events per server, de-duplicated and bounded", () => {
    const s = run([
      { type: "snapshot", servers: [server("a")] },
      { type: "event", server: "a", event: event() },
      { type: "event", server: "a", event: event({ count: 3, lastTime: "2026-01-01T00:00:09Z" }) },
      { type: "event", server: "a", event: event({ reason: "Pulled", lastTime: "2026-01-01T00:00:05Z" }) },
    ]);
    expect(s.events.a!.map((e) => [e.reason, e.count])).toEqual([
      ["Pulled", 1],
      ["Scheduled", 3],
    ]);
    const many = Array.from({ length: 70 }, (_, i) =>
      event({ reason: `R${i}`, lastTime: `2026-01-01T00:01:${String(i % 60).padStart(2, "0")}Z` }),
    );
    expect(mergeEvents([], many, 50)).toHaveLength(50);
  });
});

describe("filters", () => {
  const list = [
    server("alpha", { image: "codercom/code-server:4", phase: "Running" }),
    server("beta", { image: "jupyter/base", phase: "Failed", created: "2026-01-02T00:00:00Z" }),
    server("gamma", { image: "traefik/whoami", phase: "Running", created: "2025-12-31T00:00:00Z" }),
  ];
  it("filters by name or image text, case-insensitively", () => {
    expect(filterServers(list, "ALP", "").map((s) => s.id)).toEqual(["alpha"]);
    expect(filterServers(list, "jupyter", "").map((s) => s.id)).toEqual(["beta"]);
    expect(filterServers(list, "  ", "")).toHaveLength(3);
  });
  it("filters by phase and text together", () => {
    expect(filterServers(list, "", "Running").map((s) => s.id)).toEqual(["alpha", "gamma"]);
    expect(filterServers(list, "whoami", "Running").map((s) => s.id)).toEqual(["gamma"]);
    expect(filterServers(list, "whoami", "Failed")).toEqual([]);
  });
  it("sorts oldest first and counts phases", () => {
    const s = run([{ type: "snapshot", servers: list }]);
    expect(sortedServers(s).map((x) => x.id)).toEqual(["gamma", "alpha", "beta"]);
    expect(phaseCounts(list)).toEqual({ Running: 2, Failed: 1 });
  });
});

describe("actionFromEvent", () => {
  it("translates the /sse/servers events", () => {
    expect(actionFromEvent("snapshot", { cluster: "default", servers: [] })).toEqual({ type: "snapshot", servers: [] });
    expect(actionFromEvent("updated", server("a"))).toEqual({ type: "updated", server: server("a") });
    expect(actionFromEvent("deleted", { id: "a" })).toEqual({ type: "deleted", id: "a" });
    expect(actionFromEvent("event", { server: "a", ...event() })).toEqual({ type: "event", server: "a", event: event() });
  });
  it("ignores malformed payloads and unknown events", () => {
    expect(actionFromEvent("snapshot", { servers: "nope" })).toBeNull();
    expect(actionFromEvent("deleted", {})).toBeNull();
    expect(actionFromEvent("created", "text")).toBeNull();
    expect(actionFromEvent("mystery", { id: "a" })).toBeNull();
  });
});
