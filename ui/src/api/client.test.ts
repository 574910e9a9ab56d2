import { afterEach, describe, expect, it, vi } from "vitest";
import { diagnose } from "../state/ServersProvider";
import { api, ApiError, request } from "./client";

type Route = (url: string, init?: RequestInit) => Response | Promise<Response> | "refuse";

function stubFetch(route: Route) {
  const calls: string[] = [];
  vi.stubGlobal("fetch", async (url: string, init?: RequestInit) => {
    calls.push(`${init?.method ?? "GET"} ${url}`);
    const r = await route(url, init);
    if (r === "refuse") throw new TypeError("Failed to fetch");
    return r;
  });
  return calls;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("request", () => {
  it("returns parsed JSON and sends JSON bodies", async () => {
    let sent: RequestInit | undefined;
    stubFetch((_u, init) => {
      sent = init;
      return json(201, { id: "x" });
    });
    await expect(request("/api/clusters", { method: "POST", body: { id: "x" } })).resolves.toEqual({ id: "x" });
    expect(sent?.body).toBe('{"id":"x"}');
    expect((sent?.headers as Record<string, string>)["Content-Type"]).toBe("application/json");
  });

  it("turns the Host App's error body into an ApiError with its field", async () => {
    stubFetch(() =>
      json(400, { error: "invalid_field", message: "ports[0].containerPort: bad", field: "ports[0].containerPort", request_id: "r1" }),
    );
    const err = await request("/api/jobs").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 400, code: "invalid_field", field: "ports[0].containerPort", requestId: "r1" });
    expect((err as ApiError).retryable).toBe(false);
  });

  it("reports a refused connection as the Host App being unreachable", async () => {
    stubFetch(() => "refuse");
    const err = (await request("/api/x").catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(0);
    expect(err.hostUnreachable).toBe(true);
    expect(err.retryable).toBe(true);
  });

  it("treats a gateway's 502 without a JSON body as the Host App being unreachable", async () => {
    stubFetch(() => new Response("<html>bad gateway</html>", { status: 502, headers: { "content-type": "text/html" } }));
    const err = (await request("/api/x").catch((e: unknown) => e)) as ApiError;
    expect(err.hostUnreachable).toBe(true);
  });

  it("a 503 from the Host App means the cluster is unavailable, and is retried", async () => {
    stubFetch(() => json(503, { error: "cluster_unreachable", message: "dial tcp: refused" }));
    const err = (await api.servers("prod").catch((e: unknown) => e)) as ApiError;
    expect(err.clusterUnavailable).toBe(true);
    expect(err.hostUnreachable).toBe(false);
    expect(err.retryable).toBe(true);
  });

  it("uses per-cluster paths", async () => {
    const calls = stubFetch(() => json(200, []));
    await api.servers("prod");
    await api.servers("default");
    expect(calls).toEqual(["GET /api/cluster/prod/servers", "GET /api/servers"]);
  });
});

describe("diagnose", () => {
  it("says when the Host App is down", async () => {
    stubFetch(() => "refuse");
    expect((await diagnose("default")).kind).toBe("host");
  });

  it("names the cluster and its error when it is unreachable", async () => {
    stubFetch((url) =>
      url === "/healthz"
        ? json(200, { status: "ok" })
        : json(200, { id: "prod", name: "Production", reachable: false, error: "connection refused" }),
    );
    const p = await diagnose("prod");
    expect(p.kind).toBe("cluster");
    expect(p.message).toContain("Production");
    expect(p.message).toContain("connection refused");
  });

  it("says when the cluster does not exist", async () => {
    stubFetch((url) =>
      url === "/healthz" ? json(200, { status: "ok" }) : json(404, { error: "cluster_not_found", message: "no cluster" }),
    );
    expect((await diagnose("gone")).kind).toBe("missing");
  });

  it("passes on the server's message when the cluster is reachable but workspaces are not", async () => {
    stubFetch((url) => {
      if (url === "/healthz") return json(200, { status: "ok" });
      if (url.startsWith("/api/clusters/")) return json(200, { id: "prod", reachable: true });
      return json(503, { error: "workspaces_unavailable", message: "the Workspace cache is not ready" });
    });
    const p = await diagnose("prod");
    expect(p).toEqual({ kind: "cluster", message: "the Workspace cache is not ready" });
  });
});
