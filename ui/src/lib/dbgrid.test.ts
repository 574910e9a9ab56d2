import { describe, expect, it } from "vitest";
import { columnsOf, compareKeys, gridReducer, initialGrid, keyId, parseDoc, type GridAction, type GridState } from "./dbgrid";

function loaded(rows: { id: unknown; v?: number }[], after: string | null = null, next: string | null = null): GridState {
  return gridReducer(initialGrid(), { type: "page", primaryKey: "id", rows, after, next });
}
const run = (s: GridState, ...actions: GridAction[]) => actions.reduce(gridReducer, s);
const ids = (s: GridState) => s.rows.map((r) => r.id);

describe("grid reducer: snapshot, change, resync", () => {
  it("goes live on snapshot + ready, and every snapshot re-reads the page", () => {
    const s = run(loaded([{ id: 1 }]), { type: "snapshot", primaryKey: "id" }, { type: "ready", epoch: 1 });
    expect(s.live).toEqual({ kind: "live", epoch: 1 });
    expect(s.reloads).toBe(1);
  });

  it("updates a row on the page in place and flashes it", () => {
    const s = run(loaded([{ id: 1, v: 0 }, { id: 2, v: 0 }]), { type: "ready", epoch: 1 }, {
      type: "change",
      kind: "change",
      old: { id: 2, v: 0 },
      new: { id: 2, v: 5 },
    });
    expect(s.rows).toEqual([{ id: 1, v: 0 }, { id: 2, v: 5 }]);
    expect(s.flash[keyId(2)]).toBe(1);
    expect(s.changes).toBe(1);
    const again = gridReducer(s, { type: "change", kind: "change", old: { id: 2, v: 5 }, new: { id: 2, v: 6 } });
    expect(again.flash[keyId(2)]).toBe(2); // a new flash (the row's React key changes)
  });

  it("removes a deleted row", () => {
    const s = gridReducer(loaded([{ id: 1 }, { id: 2 }]), { type: "change", kind: "remove", old: { id: 1 }, new: null });
    expect(ids(s)).toEqual([2]);
  });

  it("adds a new row in key order when it falls on the page", () => {
    const s = gridReducer(loaded([{ id: 1 }, { id: 5 }]), { type: "change", kind: "add", old: null, new: { id: 3 } });
    expect(ids(s)).toEqual([1, 3, 5]);
    expect(s.flash[keyId(3)]).toBe(1);
  });

  it("adds after the last row only on the last page", () => {
    const last = gridReducer(loaded([{ id: 1 }]), { type: "change", kind: "add", old: null, new: { id: 9 } });
    expect(ids(last)).toEqual([1, 9]);
    const notLast = gridReducer(loaded([{ id: 1 }], null, "cursor"), { type: "change", kind: "add", old: null, new: { id: 9 } });
    expect(ids(notLast)).toEqual([1]);
    const before = gridReducer(loaded([{ id: 5 }], "c4", null), { type: "change", kind: "add", old: null, new: { id: 2 } });
    expect(ids(before)).toEqual([5]); // belongs to an earlier page
  });

  it("adds to an empty first page", () => {
    const s = gridReducer(loaded([]), { type: "change", kind: "add", old: null, new: { id: "a" } });
    expect(ids(s)).toEqual(["a"]);
  });

  it("resync stops applying changes until the fresh snapshot, which reloads the page", () => {
    let s = run(loaded([{ id: 1 }]), { type: "snapshot", primaryKey: "id" }, { type: "ready", epoch: 1 });
    s = gridReducer(s, { type: "resync", reason: "connection_lost", at: 1 });
    expect(s.live).toEqual({ kind: "resyncing", reason: "connection_lost", at: 1 });
    expect(s.awaitingSnapshot).toBe(true);
    const ignored = gridReducer(s, { type: "change", kind: "add", old: null, new: { id: 2 } });
    expect(ignored).toBe(s);
    s = run(s, { type: "snapshot", primaryKey: "id" }, { type: "ready", epoch: 2 });
    expect(s.reloads).toBe(2);
    expect(s.awaitingSnapshot).toBe(false);
    expect(s.live).toEqual({ kind: "live", epoch: 2 });
  });

  it("a page load clears flashes and keeps the live state", () => {
    let s = run(loaded([{ id: 1, v: 0 }]), { type: "ready", epoch: 1 }, { type: "change", kind: "change", old: { id: 1, v: 0 }, new: { id: 1, v: 1 } });
    s = gridReducer(s, { type: "page", primaryKey: "id", rows: [{ id: 1, v: 1 }], after: null, next: null });
    expect(s.flash).toEqual({});
    expect(s.live.kind).toBe("live");
  });

  it("gone marks the table dropped", () => {
    expect(gridReducer(loaded([]), { type: "gone", reason: "not_found" }).live).toEqual({ kind: "gone", reason: "not_found" });
  });

  it("handles compound and string keys", () => {
    const s0 = gridReducer(initialGrid(), { type: "page", primaryKey: "k", rows: [{ k: [1, "a"] }, { k: [2, "a"] }], after: null, next: null });
    const s = gridReducer(s0, { type: "change", kind: "add", old: null, new: { k: [1, "b"] } });
    expect(s.rows.map((r) => r.k)).toEqual([[1, "a"], [1, "b"], [2, "a"]]);
  });
});

describe("key order", () => {
  it("follows ReQL: arrays < booleans < numbers < strings", () => {
    const keys = ["b", 10, [1], true, 2, "a", false, [0, "z"]];
    expect([...keys].sort(compareKeys)).toEqual([[0, "z"], [1], false, true, 2, 10, "a", "b"]);
  });
  it("orders strings by code point", () => {
    expect(compareKeys("Z", "a")).toBeLessThan(0);
    expect(compareKeys("é", "z")).toBeGreaterThan(0);
  });
});

describe("columns and editor", () => {
  it("puts the primary key first", () => {
    expect(columnsOf([{ name: "x", id: 1 }, { id: 2, age: 3 }], "id")).toEqual(["id", "name", "age"]);
  });
  it("validates the editor's JSON", () => {
    expect(parseDoc('{"id": 1, "a": 2}', "id").doc).toEqual({ id: 1, a: 2 });
    expect(parseDoc("{", "id").error).toMatch(/Not valid JSON/);
    expect(parseDoc("[1]", "id").error).toMatch(/JSON object/);
    expect(parseDoc('{"id": 2}', "id", 1).error).toMatch(/cannot change/);
    expect(parseDoc('{"a": 1}', "id", 1).error).toBeNull();
  });
});
