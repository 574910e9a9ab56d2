import { describe, expect, it } from "vitest";
import { idleText, span } from "./idle";

const T = Date.parse("2026-12-02T01:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();

describe("span", () => {
  it("rounds down to the largest useful unit", () => {
    expect(span(-5)).toBe("0 s");
    expect(span(45_000)).toBe("45 s");
    expect(span(12 * 60_000 + 59_000)).toBe("12 min");
    expect(span(65 * 60_000)).toBe("1 h 5 min");
    expect(span(3 * 3_600_000)).toBe("3 h");
    expect(span(3 * 86_400_000)).toBe("3 d");
  });
});

describe("idleText", () => {
  it("says how long it has been idle and when it stops", () => {
    const idle = { timeoutSeconds: 1800, lastActivity: iso(T), idleSince: iso(T), stopsAt: iso(T + 1_800_000) };
    const t = idleText(idle, T + 12 * 60_000);
    expect(t).toMatchObject({ text: "idle 12 min, stops in 18 min", soon: false });
    expect(t?.title).toContain("stops after 30 min without activity");
    expect(idleText(idle, T + 27 * 60_000)).toMatchObject({ text: "idle 27 min, stops in 3 min", soon: true });
    expect(idleText(idle, T + 31 * 60_000)).toMatchObject({ text: "idle 31 min, stopping", soon: true });
  });

  it("reads a recent activity as in use", () => {
    const idle = { timeoutSeconds: 600, lastActivity: iso(T), idleSince: iso(T), stopsAt: iso(T + 600_000) };
    expect(idleText(idle, T + 20_000)?.text).toBe("in use, stops in 9 min");
  });

  it("has no stop time when culling is off, and nothing when not running", () => {
    const off = { timeoutSeconds: 0, lastActivity: iso(T), idleSince: iso(T), stopsAt: null };
    expect(idleText(off, T + 3_600_000)).toMatchObject({ text: "idle 1 h", soon: false });
    expect(idleText(null, T)).toBeNull();
    expect(idleText({ ...off, idleSince: "garbage" }, T)).toBeNull();
  });
});
