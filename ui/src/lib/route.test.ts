import { describe, expect, it } from "vitest";
import { href, parseRoute, to, type Route } from "./route";
import { progressSteps, currentStep } from "./status";
import { age } from "./format";
import { apiPath, proxyPath, ssePath } from "../api/client";

describe("routes", () => {
  const cases: [string, Route][] = [
    ["", { name: "home" }],
    ["#/", { name: "home" }],
    ["#/clusters", { name: "clusters" }],
    ["#/c/default", { name: "workspaces", cluster: "default", q: "", phase: "" }],
    ["#/c/prod?q=code&phase=Running", { name: "workspaces", cluster: "prod", q: "code", phase: "Running" }],
    ["#/c/prod/launch", { name: "launch", cluster: "prod" }],
    ["#/c/prod/admin", { name: "admin", cluster: "prod" }],
    ["#/c/prod/data", { name: "data", cluster: "prod", db: null, table: null }],
    ["#/c/prod/data/shop", { name: "data", cluster: "prod", db: "shop", table: null }],
    ["#/c/prod/data/shop/orders", { name: "data", cluster: "prod", db: "shop", table: "orders" }],
    ["#/c/prod/servers/ws-1", { name: "server", cluster: "prod", id: "ws-1", tab: "overview" }],
    ["#/c/prod/servers/ws-1/logs", { name: "server", cluster: "prod", id: "ws-1", tab: "logs" }],
    ["#/c/prod/servers/ws-1/ide", { name: "server", cluster: "prod", id: "ws-1", tab: "ide" }],
  ];
  it.each(cases)("parses %s", (hash, route) => {
    expect(parseRoute(hash)).toEqual(route);
  });
  it("round-trips through href", () => {
    for (const [, route] of cases.slice(2)) expect(parseRoute(href(route))).toEqual(route);
  });
  it("rejects unknown paths", () => {
    expect(parseRoute("#/c/prod/servers/ws-1/nope").name).toBe("notfound");
    expect(parseRoute("#/elsewhere").name).toBe("notfound");
    expect(parseRoute("#/c/%E0%A4%A/launch").name).toBe("notfound");
  });
  it("encodes ids", () => {
    expect(href(to.server("a b", "x/y"))).toBe("#/c/a%20b/servers/x%2Fy");
  });
});

describe("API paths", () => {
  it("uses the short form for the default cluster", () => {
    expect(apiPath("default", "servers")).toBe("/api/servers");
    expect(ssePath("default", "servers")).toBe("/sse/servers");
    expect(proxyPath("default", "ws")).toBe("/proxy/server/ws/");
  });
  it("uses per-cluster paths for the others", () => {
    expect(apiPath("prod", "servers/ws")).toBe("/api/cluster/prod/servers/ws");
    expect(ssePath("prod", "logs?server=ws")).toBe("/sse/cluster/prod/logs?server=ws");
    expect(proxyPath("prod", "ws")).toBe("/api/cluster/prod/proxy/server/ws/");
  });
});

describe("progress", () => {
  const conds = [
    { type: "Accepted", status: "True" },
    { type: "Deployed", status: "True" },
    { type: "PodScheduled", status: "True" },
    { type: "ImagePulled", status: "False", reason: "ImagePullBackOff", message: "no such image" },
    { type: "ContainersStarted", status: "Unknown", reason: "Waiting" },
    { type: "Ready", status: "Unknown", reason: "Waiting" },
  ];
  it("marks the first condition that is not True as current", () => {
    expect(progressSteps(conds, "Starting").map((s) => s.state)).toEqual([
      "done",
      "done",
      "done",
      "current",
      "waiting",
      "waiting",
    ]);
  });
  it("marks it failed in a Failed workspace, with the reason", () => {
    const step = currentStep(conds, "Failed");
    expect(step).toMatchObject({ type: "ImagePulled", state: "failed", reason: "ImagePullBackOff" });
  });
  it("shows every step waiting before any status", () => {
    expect(progressSteps([], "Pending")[0]!.state).toBe("current");
    expect(currentStep(conds.map((c) => ({ ...c, status: "True" })), "Running")).toBeNull();
  });
});

describe("age", () => {
  const now = Date.parse("2026-01-02T00:00:00Z");
  it("formats seconds to days", () => {
    expect(age("2026-01-01T23:59:30Z", now)).toBe("30s");
    expect(age("2026-01-01T23:55:00Z", now)).toBe("5m");
    expect(age("2026-01-01T21:00:00Z", now)).toBe("3h");
    expect(age("2025-12-28T00:00:00Z", now)).toBe("5d");
    expect(age(null, now)).toBe("");
    expect(age("garbage", now)).toBe("");
  });
});
