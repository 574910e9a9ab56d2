// The data grid's state (pure): one page of rows from the REST API, kept live by the table's
// changefeed (guildnet/rdb/feeds.py: snapshot, ready, change, resync, gone).
//
// The grid shows one page in primary-key order (cursor pagination). A `change` updates a
// row on the page in place, removes a deleted one, and adds a new row when its key falls
// inside the page's key range (or after it on the last page); every touched row is marked
// to flash. A `resync` means continuity was lost (server died or restarted, the client was
// too slow): the grid says so and ignores changes until the feed's fresh `snapshot`; every
// snapshot asks for the page to be read again (`reloads` goes up). A `gone` means the table was dropped.
import type { Doc, Key } from "../api/db";

export type LiveState =
  | { kind: "connecting" }
  | { kind: "live"; epoch: number }
  | { kind: "resyncing"; reason: string; at: number }
  | { kind: "gone"; reason: string };

export interface GridState {
  primaryKey: string;
  rows: Doc[];
  /** Cursor of the page shown (null: the first page) and of the next one. */
  after: string | null;
  next: string | null;
  /** Keys (as `keyId`) changed by the feed since the page loaded, with a change counter. */
  flash: Record<string, number>;
  live: LiveState;
  /** Goes up when the page must be read again (after a resync's fresh snapshot). */
  reloads: number;
  /** A resync happened and the following snapshot has not arrived yet. */
  awaitingSnapshot: boolean;
  /** Changes seen by this grid (for "N live updates"). */
  changes: number;
}

export type GridAction =
  | { type: "page"; primaryKey: string; rows: Doc[]; after: string | null; next: string | null }
  | { type: "snapshot"; primaryKey: string }
  | { type: "ready"; epoch: number }
  | { type: "change"; kind: string; old: Doc | null; new: Doc | null }
  | { type: "resync"; reason: string; at: number }
  | { type: "gone"; reason: string };

export function initialGrid(): GridState {
  return {
    primaryKey: "id",
    rows: [],
    after: null,
    next: null,
    flash: {},
    live: { kind: "connecting" },
    reloads: 0,
    awaitingSnapshot: false,
    changes: 0,
  };
}

/** A stable string for a key (map keys, React keys). */
export function keyId(key: unknown): string {
  return JSON.stringify(key) ?? "undefined";
}

// ReQL's order of types: arrays < booleans < null < numbers < objects < strings.
const TYPE_RANK: Record<string, number> = { array: 0, boolean: 1, null: 2, number: 3, object: 4, string: 6 };

function rank(v: unknown): number {
  if (Array.isArray(v)) return TYPE_RANK.array!;
  if (v === null || v === undefined) return TYPE_RANK.null!;
  return TYPE_RANK[typeof v] ?? 5;
}

/** Compares primary keys the way RethinkDB orders them (string, number, bool, compound). */
export function compareKeys(a: unknown, b: unknown): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = compareKeys(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
  if (typeof a === "string" && typeof b === "string") {
    // RethinkDB compares strings by UTF-8 bytes, which is code point order.
    const ca = Array.from(a);
    const cb = Array.from(b);
    for (let i = 0; i < Math.min(ca.length, cb.length); i++) {
      const d = ca[i]!.codePointAt(0)! - cb[i]!.codePointAt(0)!;
      if (d !== 0) return d;
    }
    return ca.length - cb.length;
  }
  return 0;
}

/** Whether a new row with `key` belongs on the page shown. */
function onPage(state: GridState, key: Key): boolean {
  const pk = state.primaryKey;
  const rows = state.rows;
  if (rows.length === 0) return state.after === null && state.next === null;
  const first = rows[0]![pk];
  const last = rows[rows.length - 1]![pk];
  if (state.after !== null && compareKeys(key, first) < 0) return false;
  if (compareKeys(key, last) <= 0) return true;
  return state.next === null; // after the last row: only on the last page
}

function applyChange(state: GridState, old: Doc | null, doc: Doc | null): GridState {
  const pk = state.primaryKey;
  const oldKey = old ? (old[pk] as Key) : undefined;
  const newKey = doc ? (doc[pk] as Key) : undefined;
  let rows = state.rows;
  const flash = { ...state.flash };
  if (oldKey !== undefined && (newKey === undefined || keyId(oldKey) !== keyId(newKey))) {
    rows = rows.filter((r) => keyId(r[pk]) !== keyId(oldKey));
  }
  if (doc && newKey !== undefined) {
    const id = keyId(newKey);
    const at = rows.findIndex((r) => keyId(r[pk]) === id);
    if (at >= 0) {
      rows = rows.slice();
      rows[at] = doc;
      flash[id] = (flash[id] ?? 0) + 1;
    } else if (onPage({ ...state, rows }, newKey)) {
      rows = [...rows, doc].sort((a, b) => compareKeys(a[pk], b[pk]));
      flash[id] = (flash[id] ?? 0) + 1;
    }
  }
  return { ...state, rows, flash, changes: state.changes + 1 };
}

export function gridReducer(state: GridState, action: GridAction): GridState {
  switch (action.type) {
    case "page":
      return {
        ...state,
        primaryKey: action.primaryKey,
        rows: action.rows,
        after: action.after,
        next: action.next,
        flash: {},
      };
    case "snapshot":
      // The feed (re)started: read the page again, so nothing written between the REST
      // read and the feed's start (or during an outage) is missing.
      return { ...state, primaryKey: action.primaryKey, awaitingSnapshot: false, reloads: state.reloads + 1 };
    case "ready":
      return { ...state, live: { kind: "live", epoch: action.epoch } };
    case "change":
      if (state.live.kind === "resyncing" || state.live.kind === "gone") return state;
      return applyChange(state, action.old, action.new);
    case "resync":
      return { ...state, live: { kind: "resyncing", reason: action.reason, at: action.at }, awaitingSnapshot: true };
    case "gone":
      return { ...state, live: { kind: "gone", reason: action.reason } };
  }
}

/** Column names of the rows: the primary key first, then the others in first-seen order. */
export function columnsOf(rows: Doc[], primaryKey: string, max = 50): string[] {
  const seen = new Set<string>([primaryKey]);
  const out = [primaryKey];
  for (const row of rows) {
    for (const k of Object.keys(row)) {
      if (!seen.has(k)) {
        seen.add(k);
        out.push(k);
        if (out.length >= max) return out;
      }
    }
  }
  return out;
}

/** A cell's text: strings as they are, other JSON compact, missing fields empty. */
export function cellText(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  const text = JSON.stringify(value) ?? "";
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

/** The editor's text as a document: a JSON object whose primary key, if given, is `key`. */
export function parseDoc(
  text: string,
  primaryKey: string,
  key?: Key,
): { doc: Doc; error: null } | { doc: null; error: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { doc: null, error: `Not valid JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { doc: null, error: "A row is a JSON object: { \"field\": value, … }" };
  }
  const doc = value as Doc;
  if (key !== undefined && primaryKey in doc && keyId(doc[primaryKey]) !== keyId(key)) {
    return { doc: null, error: `The primary key “${primaryKey}” cannot change (it is ${keyId(key)})` };
  }
  return { doc, error: null };
}
