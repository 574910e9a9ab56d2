// The DB API (guildnet/http/db.py): databases, tables, rows, query, import, export, health.
import { apiPath, ApiError, errorFromResponse, request, ssePath } from "./client";

export type Key = string | number | boolean | Key[];
export type Doc = Record<string, unknown>;

export interface DbHealth {
  cluster: string;
  state: string; // idle, connecting, ready, backoff, failed
  ready: boolean;
  since?: number;
  reason?: string;
  message?: string;
  address?: string;
  source?: string;
  attempts?: number;
  nextAttemptAt?: number;
  nextAttemptIn?: number;
  lastOkAt?: number;
  server?: unknown;
}

export interface Database {
  id: string;
  name: string;
  description: string;
}

export interface TableSummary {
  name: string;
  primaryKey: string;
  indexes: unknown[];
  documents: number | null;
}

export interface Page {
  primaryKey: string;
  rows: Doc[];
  next: string | null;
}

export interface QueryResult {
  primaryKey: string;
  rows: Doc[];
  count: number;
  truncated: boolean;
}

export interface WriteResult {
  inserted: number;
  replaced: number;
  unchanged: number;
  deleted: number;
  skipped: number;
  errors: number;
  firstError?: string;
  generatedKeys?: Key[];
}

export interface ImportReport {
  format: string;
  dryRun: boolean;
  rows: number;
  valid: number;
  inserted: number;
  replaced: number;
  unchanged: number;
  errors: number;
  rowErrors: { row: number; message: string }[];
  preview: Doc[];
}

export type ExportFormat = "json" | "ndjson" | "csv";
export type ImportFormat = ExportFormat;
export type Conflict = "error" | "replace" | "update";

const enc = encodeURIComponent;
const SAFE_KEY = /^[A-Za-z_][A-Za-z0-9_.:@~+-]*$/;

/** A primary key as the API's path segment: plain text for simple strings, else JSON. */
export function keySegment(key: Key): string {
  if (typeof key === "string" && SAFE_KEY.test(key)) return enc(key);
  return enc(JSON.stringify(key));
}

const db = (cluster: string, rest = "") => apiPath(cluster, `db${rest}`);
const tbl = (cluster: string, d: string, t: string, rest = "") => db(cluster, `/${enc(d)}/tables/${enc(t)}${rest}`);

/** The health answers 503 with the same body when not ready: both are data here. */
async function health(cluster: string, signal?: AbortSignal): Promise<DbHealth> {
  let res: Response;
  try {
    res = await fetch(db(cluster, "/health"), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
      signal: signal ?? null,
    });
  } catch {
    throw new ApiError(0, "network_error", "cannot reach the Host App");
  }
  if (res.status === 200 || res.status === 503) {
    const body = (await res.json().catch(() => null)) as DbHealth | { error?: string } | null;
    if (body && "state" in body) return body;
  }
  throw await errorFromResponse(res);
}

/** Sends a file as the body (import); the answer is JSON either way. */
async function upload<T>(path: string, file: Blob): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/octet-stream" },
      body: file,
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network_error", "cannot reach the Host App");
  }
  const body = (await res.json().catch(() => null)) as T | null;
  if (res.ok && body) return body;
  if (body && typeof body === "object" && "error" in body) {
    const b = body as unknown as { error: string; message: string; field?: string };
    const err = new ApiError(res.status, b.error, b.message, b.field) as ApiError & { report?: T };
    err.report = body;
    throw err;
  }
  throw new ApiError(res.status, `http_${res.status}`, `import failed with HTTP ${res.status}`);
}

export const dbApi = {
  health,
  reconnect: (cluster: string) => request<DbHealth>(db(cluster, "/reconnect"), { method: "POST" }),
  deploy: (cluster: string) =>
    request<{ applied: unknown[]; image: string }>(db(cluster, "/deploy"), { method: "POST", body: {}, timeoutMs: 60_000 }),

  databases: (cluster: string, signal?: AbortSignal) =>
    request<{ databases: Database[] }>(db(cluster), { signal }).then((r) => r.databases),
  createDatabase: (cluster: string, body: { id: string; name?: string; description?: string }) =>
    request<Database>(db(cluster), { method: "POST", body }),
  dropDatabase: (cluster: string, d: string) =>
    request<{ dropped: string }>(db(cluster, `/${enc(d)}?confirm=${enc(d)}`), { method: "DELETE", timeoutMs: 60_000 }),

  tables: (cluster: string, d: string, signal?: AbortSignal) =>
    request<{ db: string; tables: TableSummary[] }>(db(cluster, `/${enc(d)}/tables`), { signal }).then((r) => r.tables),
  createTable: (cluster: string, d: string, body: { name: string; primaryKey?: string }) =>
    request<TableSummary>(db(cluster, `/${enc(d)}/tables`), { method: "POST", body, timeoutMs: 60_000 }),
  dropTable: (cluster: string, d: string, t: string) =>
    request<{ dropped: string }>(tbl(cluster, d, t, `?confirm=${enc(t)}`), { method: "DELETE", timeoutMs: 60_000 }),
  table: (cluster: string, d: string, t: string, signal?: AbortSignal) =>
    request<TableSummary & { durability?: string }>(tbl(cluster, d, t), { signal }),

  rows: (cluster: string, d: string, t: string, after: string | null, limit: number, signal?: AbortSignal) =>
    request<Page>(tbl(cluster, d, t, `/rows?limit=${limit}${after ? `&after=${enc(after)}` : ""}`), { signal }),
  insert: (cluster: string, d: string, t: string, doc: Doc | Doc[], conflict: Conflict = "error") =>
    request<WriteResult>(tbl(cluster, d, t, `/rows?conflict=${conflict}`), { method: "POST", body: doc }),
  replace: (cluster: string, d: string, t: string, key: Key, doc: Doc) =>
    request<WriteResult>(tbl(cluster, d, t, `/rows/${keySegment(key)}`), { method: "PUT", body: doc }),
  remove: (cluster: string, d: string, t: string, key: Key) =>
    request<WriteResult>(tbl(cluster, d, t, `/rows/${keySegment(key)}`), { method: "DELETE" }),

  query: (cluster: string, d: string, t: string, query: unknown) =>
    request<QueryResult>(tbl(cluster, d, t, "/query"), { method: "POST", body: query, timeoutMs: 60_000 }),

  importFile: (
    cluster: string,
    d: string,
    t: string,
    file: Blob,
    opts: { format: ImportFormat; dryRun: boolean; conflict: Conflict; types?: string },
  ) =>
    upload<ImportReport>(
      tbl(cluster, d, t, `/import?format=${opts.format}&conflict=${opts.conflict}${opts.dryRun ? "&dryRun=true" : ""}${
          opts.types?.trim() && opts.format === "csv" ? `&types=${enc(opts.types.trim())}` : ""
        }`),
      file,
    ),

  exportUrl: (cluster: string, d: string, t: string, format: ExportFormat) =>
    tbl(cluster, d, t, `/export?format=${format}`),
  changesUrl: (cluster: string, d: string, t: string) =>
    ssePath(cluster, `db/${enc(d)}/tables/${enc(t)}/changes`),
};
