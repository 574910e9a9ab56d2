// A cluster's health (GET /api/cluster/<id>/health) at a glance: "Healthy", or the
// failing parts named with their reasons.
import type { ClusterHealth } from "../api/types";

const PART_LABELS: Record<string, string> = {
  kubernetes: "Kubernetes API",
  informers: "caches",
  operator: "operator",
  localdb: "local DB",
  portForwards: "port-forwards",
  rethinkdb: "RethinkDB",
};

export function partLabel(name: string): string {
  return PART_LABELS[name] ?? name;
}

export interface HealthGlance {
  ok: boolean;
  /** Short text for the table cell. */
  text: string;
  /** Every part, one per line, for the tooltip. */
  detail: string;
}

export function healthGlance(h: ClusterHealth): HealthGlance {
  const parts = Object.entries(h.parts);
  const detail = parts.map(([name, p]) => `${p.ok ? "✓" : "✗"} ${partLabel(name)}: ${p.reason}`).join("\n");
  if (h.ok) return { ok: true, text: "Healthy", detail };
  const failing = h.failing.length ? h.failing : parts.filter(([, p]) => !p.ok).map(([n]) => n);
  const first = failing[0];
  const reason = first && h.parts[first] ? `: ${h.parts[first].reason}` : "";
  const more = failing.length > 1 ? ` (+${failing.length - 1} more)` : "";
  return { ok: false, text: `Unhealthy · ${partLabel(first ?? "cluster")}${reason}${more}`, detail };
}
