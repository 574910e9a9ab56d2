import { describe, expect, it } from "vitest";
import { backoffDelay, DEFAULT_BACKOFF } from "./backoff";

const noJitter = { ...DEFAULT_BACKOFF, jitter: 0 };

describe("backoffDelay", () => {
  it("doubles from the initial delay", () => {
    expect([0, 1, 2, 3].map((n) => backoffDelay(n, noJitter))).toEqual([1000, 2000, 4000, 8000]);
  });

  it("caps at maxMs", () => {
    expect(backoffDelay(10, noJitter)).toBe(30_000);
    expect(backoffDelay(1000, noJitter)).toBe(30_000);
  });

  it("jitters down by at most the jitter fraction", () => {
    const opts = { initialMs: 1000, maxMs: 10_000, factor: 2, jitter: 0.5 };
    expect(backoffDelay(0, opts, () => 0)).toBe(1000);
    expect(backoffDelay(0, opts, () => 1)).toBe(500);
    expect(backoffDelay(0, opts, () => 0.5)).toBe(750);
  });

  it("treats negative or fractional attempts as whole, non-negative", () => {
    expect(backoffDelay(-3, noJitter)).toBe(1000);
    expect(backoffDelay(1.7, noJitter)).toBe(2000);
  });
});
