// The live workspace list: a reducer fed by /sse/servers (snapshot, created, updated,
// deleted, pod events). Pure, so every transition is unit-tested.
import type { EventView, ServerSummary } from "../api/types";

export const MAX_EVENTS_PER_SERVER = 50;

export interface ServersState {
  /** False until the first snapshot: the list is loading, not empty. */
  loaded: boolean;
  byId: Record<string, ServerSummary>;
  /** Recent pod Events per server, oldest first. */
  events: Record<string, EventView[]>;
  /** Servers deleted while the view was open (so a detail page can say so). */
  deleted: Record<string, true>;
}

export type ServersAction =
  | { type: "snapshot"; servers: ServerSummary[] }
  | { type: "created" | "updated"; server: ServerSummary }
  | { type: "deleted"; id: string }
  | { type: "event"; server: string; event: EventView }
  | { type: "reset" };

export const initialServers: ServersState = { loaded: false, byId: {}, events: {}, deleted: {} };

export function eventKey(e: EventView): string {
  return `${e.pod}|${e.reason}|${e.firstTime ?? ""}|${e.message}`;
}

/** Adds or refreshes one Event (same pod/reason/first time/message: newer count wins). */
export function mergeEvents(list: EventView[], add: EventView[], max = MAX_EVENTS_PER_SERVER): EventView[] {
  const out = [...list];
  for (const ev of add) {
    const key = eventKey(ev);
    const at = out.findIndex((e) => eventKey(e) === key);
    if (at >= 0) out.splice(at, 1);
    out.push(ev);
  }
  out.sort((a, b) => (a.lastTime < b.lastTime ? -1 : a.lastTime > b.lastTime ? 1 : 0));
  return out.length > max ? out.slice(out.length - max) : out;
}

export function serversReducer(state: ServersState, action: ServersAction): ServersState {
  switch (action.type) {
    case "reset":
      return initialServers;
    case "snapshot": {
      const byId: Record<string, ServerSummary> = {};
      for (const s of action.servers) byId[s.id] = s;
      // Events of servers that still exist survive a reconnect; deletions seen are kept.
      const events: Record<string, EventView[]> = {};
      for (const [id, list] of Object.entries(state.events)) if (byId[id]) events[id] = list;
      const deleted = { ...state.deleted };
      for (const id of Object.keys(state.byId)) if (!byId[id]) deleted[id] = true;
      for (const id of Object.keys(byId)) delete deleted[id];
      return { loaded: true, byId, events, deleted };
    }
    case "created":
    case "updated": {
      const deleted = { ...state.deleted };
      delete deleted[action.server.id];
      const prev = state.byId[action.server.id];
      // created/updated carry the full state; keep conditions if an older shape lacks them
      const server = prev && !action.server.conditions ? { ...action.server, conditions: prev.conditions } : action.server;
      return { ...state, byId: { ...state.byId, [server.id]: server }, deleted };
    }
    case "deleted": {
      if (!state.byId[action.id] && state.deleted[action.id]) return state;
      const byId = { ...state.byId };
      delete byId[action.id];
      const events = { ...state.events };
      delete events[action.id];
      return { ...state, byId, events, deleted: { ...state.deleted, [action.id]: true } };
    }
    case "event": {
      const list = state.events[action.server] ?? [];
      return { ...state, events: { ...state.events, [action.server]: mergeEvents(list, [action.event]) } };
    }
  }
}

/** Oldest first, then by name: the server's own order. */
export function sortedServers(state: ServersState): ServerSummary[] {
  return Object.values(state.byId).sort((a, b) => {
    const ca = a.created ?? "";
    const cb = b.created ?? "";
    if (ca !== cb) return ca < cb ? -1 : 1;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
}

export const PHASES = ["Pending", "Starting", "Running", "Stopped", "Failed", "Terminating"] as const;

/** Text (name or image, case-insensitive) and phase ("" = any) filter. */
export function filterServers(list: ServerSummary[], text: string, phase: string): ServerSummary[] {
  const q = text.trim().toLowerCase();
  return list.filter((s) => {
    if (phase && s.phase !== phase) return false;
    if (!q) return true;
    return s.name.toLowerCase().includes(q) || (s.image ?? "").toLowerCase().includes(q);
  });
}

/** Count per phase, for the filter's labels. */
export function phaseCounts(list: ServerSummary[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of list) out[s.phase] = (out[s.phase] ?? 0) + 1;
  return out;
}

/** Translates one /sse/servers event into an action (null for unknown payloads). */
export function actionFromEvent(name: string, data: unknown): ServersAction | null {
  if (typeof data !== "object" || data === null) return null;
  const d = data as Record<string, unknown>;
  switch (name) {
    case "snapshot":
      return Array.isArray(d.servers) ? { type: "snapshot", servers: d.servers as ServerSummary[] } : null;
    case "created":
    case "updated":
      return typeof d.id === "string" ? { type: name, server: d as unknown as ServerSummary } : null;
    case "deleted":
      return typeof d.id === "string" ? { type: "deleted", id: d.id } : null;
    case "event": {
      if (typeof d.server !== "string") return null;
      const { server, ...event } = d;
      return { type: "event", server, event: event as unknown as EventView };
    }
    default:
      return null;
  }
}
