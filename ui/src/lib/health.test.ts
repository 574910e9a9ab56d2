import { describe, expect, it } from "vitest";
import type { ClusterHealth } from "../api/types";
import { healthGlance } from "./health";

const part = (ok: boolean, reason: string) => ({ ok, reason, checkedAt: "2026-12-01T23:00:00Z" });

describe("healthGlance", () => {
  it("says Healthy and lists every part in the detail", () => {
    const h: ClusterHealth = {
      cluster: "default",
      ok: true,
      failing: [],
      checkedAt: "2026-12-01T23:00:00Z",
      parts: { kubernetes: part(true, "API server v1.36.3 answered /version"), localdb: part(true, "ok") },
    };
    const g = healthGlance(h);
    expect(g).toMatchObject({ ok: true, text: "Healthy" });
    expect(g.detail).toBe("✓ Kubernetes API: API server v1.36.3 answered /version\n✓ local DB: ok");
  });

  it("names the failing part and its reason", () => {
    const h: ClusterHealth = {
      cluster: "lab",
      ok: false,
      failing: ["informers", "localdb"],
      checkedAt: "2026-12-01T23:00:00Z",
      parts: {
        kubernetes: part(true, "fine"),
        informers: part(false, "not synced: Pod"),
        localdb: part(false, "quick_check: corrupt"),
      },
    };
    const g = healthGlance(h);
    expect(g.ok).toBe(false);
    expect(g.text).toBe("Unhealthy · caches: not synced: Pod (+1 more)");
    expect(g.detail).toContain("✗ local DB: quick_check: corrupt");
  });
});
