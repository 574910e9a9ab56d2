// Import helpers (pure): the file's format from its name, and the server's dry-run report
// (guildnet/http/db.py import_rows) shaped into the preview the user checks before importing.
import type { Doc, ImportFormat, ImportReport } from "../api/db";
import { columnsOf } from "./dbgrid";

/** The import format a file name suggests; null when its extension says nothing. */
export function formatOf(fileName: string): ImportFormat | null {
  const lower = fileName.toLowerCase();
  if (lower.endsWith(".csv")) return "csv";
  if (lower.endsWith(".ndjson") || lower.endsWith(".jsonl")) return "ndjson";
  if (lower.endsWith(".json")) return "json";
  return null;
}

export interface Preview {
  columns: string[];
  rows: Doc[];
  /** Row number (1-based, as the server counts) -> its error. */
  errors: { row: number; message: string }[];
  /** More errors than the report lists. */
  moreErrors: number;
  summary: string;
  /** The real import would write something. */
  importable: boolean;
}

/** The dry run's report as a preview table, its errors and a one-line summary. */
export function previewOf(report: ImportReport, primaryKey: string): Preview {
  const rows = report.preview ?? [];
  const errors = [...(report.rowErrors ?? [])].sort((a, b) => a.row - b.row);
  const moreErrors = Math.max(0, report.errors - errors.length);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const summary =
    `${plural(report.rows, "row")} read: ${plural(report.valid, "valid row")}, ` +
    `${plural(report.errors, "error")}.`;
  return {
    columns: columnsOf(rows, primaryKey),
    rows,
    errors,
    moreErrors,
    summary,
    importable: report.valid > 0,
  };
}

/** The real import's outcome in words. */
export function importSummary(report: ImportReport): string {
  const parts = [`${report.inserted} inserted`];
  if (report.replaced) parts.push(`${report.replaced} replaced`);
  if (report.unchanged) parts.push(`${report.unchanged} unchanged`);
  if (report.errors) parts.push(`${report.errors} failed`);
  return `Imported ${report.rows} rows: ${parts.join(", ")}.`;
}
