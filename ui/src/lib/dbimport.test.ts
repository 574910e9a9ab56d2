import { describe, expect, it } from "vitest";
import type { ImportReport } from "../api/db";
import { formatOf, importSummary, previewOf } from "./dbimport";

const report = (patch: Partial<ImportReport>): ImportReport => ({
  format: "csv",
  dryRun: true,
  rows: 0,
  valid: 0,
  inserted: 0,
  replaced: 0,
  unchanged: 0,
  errors: 0,
  rowErrors: [],
  preview: [],
  ...patch,
});

describe("import preview", () => {
  it("guesses the format from the file name", () => {
    expect(formatOf("people.CSV")).toBe("csv");
    expect(formatOf("a.json")).toBe("json");
    expect(formatOf("a.ndjson")).toBe("ndjson");
    expect(formatOf("a.jsonl")).toBe("ndjson");
    expect(formatOf("notes.txt")).toBeNull();
  });

  it("shapes a dry run into columns, rows, sorted errors and a summary", () => {
    const p = previewOf(
      report({
        rows: 4,
        valid: 2,
        errors: 3,
        rowErrors: [
          { row: 4, message: "has 3 cells, the header has 2" },
          { row: 2, message: "age: not an integer" },
        ],
        preview: [{ name: "a", id: "1" }, { id: "3", age: 7 }],
      }),
      "id",
    );
    expect(p.columns).toEqual(["id", "name", "age"]);
    expect(p.errors.map((e) => e.row)).toEqual([2, 4]);
    expect(p.moreErrors).toBe(1);
    expect(p.summary).toBe("4 rows read: 2 valid rows, 3 errors.");
    expect(p.importable).toBe(true);
  });

  it("nothing valid is not importable", () => {
    const p = previewOf(report({ rows: 1, errors: 1, rowErrors: [{ row: 1, message: "not JSON" }] }), "id");
    expect(p.importable).toBe(false);
    expect(p.summary).toBe("1 row read: 0 valid rows, 1 error.");
  });

  it("says what the real import did", () => {
    expect(importSummary(report({ dryRun: false, rows: 3, inserted: 2, errors: 1 }))).toBe("Imported 3 rows: 2 inserted, 1 failed.");
  });
});
