import { describe, expect, it } from "vitest";
import { buildQuery, emptyForm, parseValue, type Condition, type QueryForm } from "./dbquery";

const cond = (field: string, op: Condition["op"], value = "", negate = false): Condition => ({ field, op, value, negate });
const form = (patch: Partial<QueryForm>): QueryForm => ({ ...emptyForm(), ...patch });

describe("query builder -> JSON query", () => {
  it("an empty form is the default limit only", () => {
    expect(buildQuery(emptyForm())).toEqual({ query: { limit: 100 }, errors: {} });
  });

  it("types values as JSON when they parse", () => {
    expect(parseValue("42")).toBe(42);
    expect(parseValue("true")).toBe(true);
    expect(parseValue('"42"')).toBe("42");
    expect(parseValue("alice")).toBe("alice");
    expect(parseValue("[1, 2]")).toEqual([1, 2]);
  });

  it("one condition is the filter itself; several are and/or; not wraps", () => {
    expect(buildQuery(form({ conditions: [cond("age", "gt", "30")] })).query.filter).toEqual({ field: "age", op: "gt", value: 30 });
    const many = buildQuery(form({ combine: "or", conditions: [cond("a.b", "eq", "x"), cond("tags", "contains", "red", true)] }));
    expect(many.query.filter).toEqual({
      or: [{ field: "a.b", op: "eq", value: "x" }, { not: { field: "tags", op: "contains", value: "red" } }],
    });
  });

  it("exists takes no value, match keeps the text, in needs a list", () => {
    const q = buildQuery(form({ conditions: [cond("x", "exists"), cond("name", "match", "^a[0-9]+$"), cond("n", "in", "[1, 2]")] }));
    expect(q.errors).toEqual({});
    expect(q.query.filter).toEqual({
      and: [
        { field: "x", op: "exists" },
        { field: "name", op: "match", value: "^a[0-9]+$" },
        { field: "n", op: "in", value: [1, 2] },
      ],
    });
    expect(buildQuery(form({ conditions: [cond("n", "in", "1")] })).errors["conditions.0.value"]).toMatch(/JSON list/);
    expect(buildQuery(form({ conditions: [cond("n", "match", "(")] })).errors["conditions.0.value"]).toMatch(/regular/);
  });

  it("order, pluck, skip and limit", () => {
    const q = buildQuery(form({ orderBy: "age", orderDir: "desc", pluck: "id, name ,", skip: "5", limit: "10" }));
    expect(q.query).toEqual({ orderBy: [{ field: "age", dir: "desc" }], pluck: ["id", "name"], skip: 5, limit: 10 });
    expect(buildQuery(form({ orderBy: "by_age", orderIndex: true })).query.orderBy).toEqual({ index: "by_age", dir: "asc" });
  });

  it("names the form field of each error", () => {
    const q = buildQuery(form({ conditions: [cond("", "eq", "1"), cond("a..b", "eq", "1")], limit: "5000", skip: "-1" }));
    expect(Object.keys(q.errors).sort()).toEqual(["conditions.0.field", "conditions.1.field", "limit", "skip"]);
    expect(buildQuery(form({ limit: "0" })).errors.limit).toBeDefined();
    expect(buildQuery(form({ conditions: [cond("age", "gt", "")] })).errors["conditions.0.value"]).toBe("a value");
  });
});
