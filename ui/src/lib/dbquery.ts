// The query builder's form -> the server's JSON query language (guildnet/rdb/query.py), pure.
//
// Values are typed as JSON when they parse (42, true, "42", [1,2]) and are text otherwise,
// so `age > 30` compares numbers and `name = alice` strings. Errors name the form field.

export type Op = "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "contains" | "match" | "in" | "exists";

export const OPS: { op: Op; label: string }[] = [
  { op: "eq", label: "=" },
  { op: "ne", label: "≠" },
  { op: "lt", label: "<" },
  { op: "le", label: "≤" },
  { op: "gt", label: ">" },
  { op: "ge", label: "≥" },
  { op: "contains", label: "contains" },
  { op: "match", label: "matches regex" },
  { op: "in", label: "in list" },
  { op: "exists", label: "exists" },
];

export interface Condition {
  field: string;
  op: Op;
  value: string;
  negate: boolean;
}

export interface QueryForm {
  combine: "and" | "or";
  conditions: Condition[];
  orderBy: string;
  orderDir: "asc" | "desc";
  orderIndex: boolean;
  pluck: string;
  skip: string;
  limit: string;
}

export function emptyForm(): QueryForm {
  return {
    combine: "and",
    conditions: [],
    orderBy: "",
    orderDir: "asc",
    orderIndex: false,
    pluck: "",
    skip: "",
    limit: "100",
  };
}

export function newCondition(): Condition {
  return { field: "", op: "eq", value: "", negate: false };
}

export type Expr =
  | { field: string; op: Op; value?: unknown }
  | { and: Expr[] }
  | { or: Expr[] }
  | { not: Expr };

export interface JsonQuery {
  filter?: Expr;
  orderBy?: { field: string; dir: "asc" | "desc" }[] | { index: string; dir: "asc" | "desc" };
  pluck?: string[];
  skip?: number;
  limit?: number;
}

export type FormErrors = Record<string, string>;

/** A field path as the server takes it: 1-8 dot-separated non-empty parts. */
export function validField(path: string): boolean {
  const parts = path.split(".");
  return parts.length <= 8 && parts.every((p) => p.length >= 1 && p.length <= 127);
}
const MAX_LIMIT = 1000;

/** A value as typed: JSON when it parses, else the text itself. */
export function parseValue(text: string): unknown {
  const t = text.trim();
  if (t === "") return "";
  try {
    return JSON.parse(t) as unknown;
  } catch {
    return text;
  }
}

function count(text: string, field: string, max: number, errors: FormErrors): number | undefined {
  const t = text.trim();
  if (t === "") return undefined;
  if (!/^\d+$/.test(t) || Number(t) > max) {
    errors[field] = `a whole number from 0 to ${max}`;
    return undefined;
  }
  return Number(t);
}

/** The form as the server's query, or the errors by form field (`conditions.0.field`). */
export function buildQuery(form: QueryForm): { query: JsonQuery; errors: FormErrors } {
  const errors: FormErrors = {};
  const exprs: Expr[] = [];
  form.conditions.forEach((c, i) => {
    const at = `conditions.${i}`;
    const field = c.field.trim();
    if (!validField(field)) {
      errors[`${at}.field`] = "a field name (dots for nested fields: address.city)";
      return;
    }
    let leaf: Expr;
    if (c.op === "exists") leaf = { field, op: "exists" };
    else {
      let value = parseValue(c.value);
      if (c.op === "match") {
        value = c.value;
        if (c.value === "") errors[`${at}.value`] = "a regular expression";
        else {
          try {
            new RegExp(c.value);
          } catch {
            errors[`${at}.value`] = "not a valid regular expression";
          }
        }
      } else if (c.op === "in" && !Array.isArray(value)) {
        errors[`${at}.value`] = 'a JSON list, like [1, 2] or ["a", "b"]';
      } else if (c.value.trim() === "" && c.op !== "eq" && c.op !== "ne") {
        errors[`${at}.value`] = "a value";
      }
      leaf = { field, op: c.op, value };
    }
    exprs.push(c.negate ? { not: leaf } : leaf);
  });
  const query: JsonQuery = {};
  if (exprs.length === 1) query.filter = exprs[0]!;
  else if (exprs.length > 1) query.filter = form.combine === "and" ? { and: exprs } : { or: exprs };

  const order = form.orderBy.trim();
  if (order) {
    if (form.orderIndex) {
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(order)) errors.orderBy = "an index name";
      else query.orderBy = { index: order, dir: form.orderDir };
    } else if (!validField(order)) errors.orderBy = "a field name";
    else query.orderBy = [{ field: order, dir: form.orderDir }];
  }
  const pluck = form.pluck
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  if (pluck.length) {
    const bad = pluck.find((p) => !validField(p));
    if (bad) errors.pluck = `“${bad}” is not a field name`;
    else query.pluck = pluck;
  }
  const skip = count(form.skip, "skip", 100_000, errors);
  if (skip !== undefined && skip > 0) query.skip = skip;
  const limit = count(form.limit, "limit", MAX_LIMIT, errors);
  if (limit !== undefined) {
    if (limit < 1) errors.limit = `a whole number from 1 to ${MAX_LIMIT}`;
    else query.limit = limit;
  }
  return { query, errors };
}
