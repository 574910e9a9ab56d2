// The Host App's API over fetch: one error type for every failure, per-cluster paths.
import type {
  Cluster,
  ClusterHealth,
  ErrorBody,
  ImageDefaults,
  ImagePreset,
  JobCreated,
  JobRequest,
  ServerChange,
  ServerDetail,
  ServerSummary,
  StopAllResult,
  UiConfig,
  WhoAmI,
} from "./types";

export const DEFAULT_CLUSTER = "default";
const DEFAULT_TIMEOUT_MS = 20_000;

/** A failed request. `status` 0 means the Host App could not be reached at all. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  readonly requestId: string | undefined;

  constructor(status: number, code: string, message: string, field?: string, requestId?: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
    this.requestId = requestId;
  }

  /** The Host App itself did not answer (network down, process stopped, gateway error). */
  get hostUnreachable(): boolean {
    return this.status === 0 || this.code === "host_unavailable";
  }

  /** The Host App answered, but the cluster behind it is not reachable or not ready. */
  get clusterUnavailable(): boolean {
    return (
      this.status === 503 ||
      this.code === "cluster_unreachable" ||
      this.code === "cluster_unavailable" ||
      this.code === "workspaces_unavailable"
    );
  }

  /** Worth retrying with backoff (as opposed to a 4xx the user must fix). */
  get retryable(): boolean {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

function enc(part: string): string {
  return encodeURIComponent(part);
}

/** `/api/<rest>` for the default cluster, `/api/cluster/<id>/<rest>` for the others. */
export function apiPath(cluster: string, rest: string): string {
  return cluster === DEFAULT_CLUSTER ? `/api/${rest}` : `/api/cluster/${enc(cluster)}/${rest}`;
}

/** `/sse/<rest>` for the default cluster, `/sse/cluster/<id>/<rest>` for the others. */
export function ssePath(cluster: string, rest: string): string {
  return cluster === DEFAULT_CLUSTER ? `/sse/${rest}` : `/sse/cluster/${enc(cluster)}/${rest}`;
}

/** The IDE's address through the Host App's proxy (the server's own `url` when known). */
export function proxyPath(cluster: string, server: string): string {
  const base = `/proxy/server/${enc(server)}/`;
  return cluster === DEFAULT_CLUSTER ? base : `/api/cluster/${enc(cluster)}${base}`;
}

function isErrorBody(value: unknown): value is ErrorBody {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as ErrorBody).error === "string" &&
    typeof (value as ErrorBody).message === "string"
  );
}

/** Turn a non-2xx response into an ApiError (JSON body when the Host App wrote it). */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  let body: unknown = null;
  const ctype = res.headers.get("content-type") ?? "";
  if (ctype.includes("json")) {
    try {
      body = await res.json();
    } catch {
      body = null;
    }
  }
  if (isErrorBody(body)) {
    return new ApiError(res.status, body.error, body.message, body.field, body.request_id);
  }
  if (res.status === 502 || res.status === 504) {
    return new ApiError(res.status, "host_unavailable", `the Host App did not answer (${res.status})`);
  }
  return new ApiError(res.status, `http_${res.status}`, `request failed with HTTP ${res.status}`);
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A JSON request; resolves with the parsed body, rejects with ApiError. */
export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const onAbort = () => controller.abort();
  opts.signal?.addEventListener("abort", onAbort);
  const headers: Record<string, string> = { Accept: "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, {
      method: opts.method ?? "GET",
      headers,
      body: opts.body === undefined ? null : JSON.stringify(opts.body),
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    });
  } catch (e) {
    if (opts.signal?.aborted) throw new ApiError(0, "aborted", "request cancelled");
    const timedOut = controller.signal.aborted;
    throw new ApiError(
      0,
      timedOut ? "timeout" : "network_error",
      timedOut ? "the Host App did not answer in time" : "cannot reach the Host App",
    );
  } finally {
    clearTimeout(timeout);
    opts.signal?.removeEventListener("abort", onAbort);
  }
  if (!res.ok) throw await errorFromResponse(res);
  if (res.status === 204) return undefined as T;
  try {
    return (await res.json()) as T;
  } catch {
    throw new ApiError(res.status, "invalid_response", "the Host App sent a response that is not JSON");
  }
}

/** A cluster's health report. `probe=false`: a failing part answers 200 too (the report
 * says so), so the browser logs no console error while a new cluster's caches sync. */
export async function clusterHealth(cluster: string, signal?: AbortSignal): Promise<ClusterHealth> {
  let res: Response;
  try {
    res = await fetch(apiPath(cluster, "health?probe=false"), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch {
    if (signal?.aborted) throw new ApiError(0, "aborted", "request cancelled");
    throw new ApiError(0, "network_error", "cannot reach the Host App");
  }
  if (res.status === 200 || res.status === 503) {
    const body: unknown = await res
      .clone()
      .json()
      .catch(() => null);
    if (body && typeof body === "object" && "parts" in body) return body as ClusterHealth;
  }
  throw await errorFromResponse(res);
}

export const api = {
  uiConfig: (signal?: AbortSignal) => request<UiConfig>("/api/ui-config", { signal }),
  whoami: (signal?: AbortSignal) => request<WhoAmI>("/api/whoami", { signal }),
  health: (signal?: AbortSignal) =>
    request<{ status: string; version: string }>("/healthz", { signal, timeoutMs: 5000 }),

  clusters: (signal?: AbortSignal) =>
    request<{ clusters: Cluster[] }>("/api/clusters", { signal }).then((r) => r.clusters),
  cluster: (id: string, signal?: AbortSignal) =>
    request<Cluster>(`/api/clusters/${enc(id)}`, { signal }),
  addCluster: (body: { id: string; name?: string; kubeconfig: string }) =>
    request<Cluster>("/api/clusters", { method: "POST", body, timeoutMs: 60_000 }),
  deleteCluster: (id: string) =>
    request<{ deleted: string }>(`/api/clusters/${enc(id)}`, { method: "DELETE" }),

  servers: (cluster: string, signal?: AbortSignal) =>
    request<ServerSummary[]>(apiPath(cluster, "servers"), { signal }),
  server: (cluster: string, id: string, signal?: AbortSignal) =>
    request<ServerDetail>(apiPath(cluster, `servers/${enc(id)}`), { signal }),
  password: (cluster: string, id: string) =>
    request<{ password: string }>(apiPath(cluster, `servers/${enc(id)}/password`)).then(
      (r) => r.password,
    ),
  deleteServer: (cluster: string, id: string, keepVolume = false) =>
    request<{ deleted: string; keptVolume?: string | null }>(
      apiPath(cluster, `servers/${enc(id)}${keepVolume ? "?keep_volume=true" : ""}`),
      { method: "DELETE" },
    ),
  stopServer: (cluster: string, id: string) =>
    request<ServerSummary>(apiPath(cluster, `servers/${enc(id)}/stop`), { method: "POST" }),
  startServer: (cluster: string, id: string) =>
    request<ServerSummary>(apiPath(cluster, `servers/${enc(id)}/start`), { method: "POST" }),
  restartServer: (cluster: string, id: string) =>
    request<ServerSummary>(apiPath(cluster, `servers/${enc(id)}/restart`), { method: "POST" }),
  changeServer: (cluster: string, id: string, body: ServerChange) =>
    request<ServerSummary>(apiPath(cluster, `servers/${enc(id)}`), { method: "PATCH", body }),
  launch: (cluster: string, body: JobRequest) =>
    request<JobCreated>(apiPath(cluster, "jobs"), { method: "POST", body, timeoutMs: 30_000 }),
  stopAll: (cluster: string) =>
    request<StopAllResult>(apiPath(cluster, "admin/stop-all"), { method: "POST", timeoutMs: 60_000 }),

  images: (cluster: string, signal?: AbortSignal) =>
    request<{ images: ImagePreset[] }>(apiPath(cluster, "images"), { signal }).then((r) => r.images),
  imageDefaults: (cluster: string, image: string, signal?: AbortSignal) =>
    request<ImageDefaults>(apiPath(cluster, `image-defaults?image=${enc(image)}`), { signal }),

  logsUrl: (cluster: string, id: string, tail = 10000) =>
    apiPath(cluster, `servers/${enc(id)}/logs?tail=${tail}`),
};
