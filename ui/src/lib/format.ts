// Small display helpers.

/** "42s", "5m", "3h", "2d" since `iso` (relative to `now`, ms). Empty for missing dates. */
export function age(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return "";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** A local date-time for titles and tables. */
export function when(iso: string | null | undefined): string {
  if (!iso) return "";
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toLocaleString();
}

/** "in 4s" for a retry countdown. */
export function countdown(at: number, now: number = Date.now()): string {
  const s = Math.max(0, Math.ceil((at - now) / 1000));
  return s <= 0 ? "now" : `in ${s}s`;
}

export function phaseClass(phase: string): string {
  switch (phase) {
    case "Running":
      return "phase phase-running";
    case "Starting":
    case "Pending":
      return "phase phase-starting";
    case "Failed":
      return "phase phase-failed";
    case "Stopped":
      return "phase phase-stopped";
    case "Terminating":
      return "phase phase-terminating";
    default:
      return "phase phase-unknown";
  }
}
