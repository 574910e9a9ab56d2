// Idle culling as the workspace list and detail show it: "idle 12 min, stops in 18 min".

import type { IdleInfo } from "../api/types";

/** "45 s", "12 min", "1 h 5 min", "3 d" for a span in ms (rounded down; never negative). */
export function span(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  return `${Math.floor(h / 24)} d`;
}

export interface IdleText {
  /** What the row shows, e.g. "idle 12 min, stops in 18 min". */
  text: string;
  /** A tooltip with the exact times. */
  title: string;
  /** The stop is due within five minutes (or now): worth a warning colour. */
  soon: boolean;
}

/**
 * The idle line of a running workspace, relative to `now` (ms); null when the API has no
 * idle information (not running). Under a minute of quiet reads "in use".
 */
export function idleText(idle: IdleInfo | null | undefined, now: number = Date.now()): IdleText | null {
  if (!idle) return null;
  const since = Date.parse(idle.idleSince);
  if (Number.isNaN(since)) return null;
  const stops = idle.stopsAt ? Date.parse(idle.stopsAt) : NaN;
  const quiet = now - since;
  const head = quiet < 60_000 ? "in use" : `idle ${span(quiet)}`;
  const title =
    `last activity ${new Date(since).toLocaleString()}` +
    (Number.isNaN(stops)
      ? "; idle culling is off for this workspace"
      : `; stops after ${span(idle.timeoutSeconds * 1000)} without activity, at ${new Date(stops).toLocaleString()}`);
  if (Number.isNaN(stops)) return { text: head, title, soon: false };
  const left = stops - now;
  if (left <= 0) return { text: `${head}, stopping`, title, soon: true };
  return { text: `${head}, stops in ${span(left)}`, title, soon: left <= 5 * 60_000 };
}
