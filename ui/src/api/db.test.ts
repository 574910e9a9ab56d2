import { describe, expect, it } from "vitest";
import { dbApi, keySegment } from "./db";

describe("DB API paths", () => {
  it("puts simple string keys in the path as text, every other key as JSON", () => {
    expect(keySegment("alice")).toBe("alice");
    expect(keySegment("42")).toBe(encodeURIComponent('"42"')); // a string, not the number 42
    expect(keySegment(42)).toBe("42");
    expect(keySegment(-1.5)).toBe("-1.5");
    expect(keySegment([1, "a"])).toBe(encodeURIComponent('[1,"a"]'));
    expect(keySegment("a b/c")).toBe(encodeURIComponent('"a b/c"'));
    expect(keySegment("")).toBe(encodeURIComponent('""'));
  });
  it("uses the default cluster's short form and the per-cluster form", () => {
    expect(dbApi.changesUrl("default", "shop", "orders")).toBe("/sse/db/shop/tables/orders/changes");
    expect(dbApi.changesUrl("prod", "shop", "orders")).toBe("/sse/cluster/prod/db/shop/tables/orders/changes");
    expect(dbApi.exportUrl("prod", "shop", "orders", "csv")).toBe("/api/cluster/prod/db/shop/tables/orders/export?format=csv");
  });
});
