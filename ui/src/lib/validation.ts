// Client-side validation of the Launch form, mirroring guildnet/operator/spec.py (the
// server's parse_spec/validate_name, which mirror the CRD schema). Field names are the
// server's dotted paths ("ports[0].containerPort"), with row indices of the form; the
// body builder records which form row each request item came from, so a server 4xx that
// names a field lands next to the right input.
import type { EnvVarSpec, ImageDefaults, JobRequest, PortSpec } from "../api/types";

export const MAX_NAME_LEN = 53;
export const NAME_RE = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
export const IMAGE_MAX_LEN = 512;
export const ENV_MAX_ITEMS = 200;
export const ENV_NAME_MAX_LEN = 253;
export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const PORTS_MAX_ITEMS = 20;
export const PORT_NAME_MAX_LEN = 15;
export const PORT_NAME_RE = /^([a-z0-9]+-)*[0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
export const PROTOCOLS = ["TCP", "UDP", "SCTP"] as const;
export const ARGS_MAX_ITEMS = 256;
export const QUANTITY_RE =
  /^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/;
export const QUANTITY_MAX_LEN = 64;
export const CLUSTER_ID_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export interface PortRow {
  name: string;
  containerPort: string;
  protocol: string;
}

export interface EnvRow {
  name: string;
  value: string;
}

export interface LaunchForm {
  image: string;
  name: string;
  ports: PortRow[];
  env: EnvRow[];
  /** One argument per line. */
  args: string;
  /** One command word per line (overrides the image's entrypoint). */
  command: string;
  cpuRequest: string;
  cpuLimit: string;
  memoryRequest: string;
  memoryLimit: string;
  /** No requests or limits at all (BestEffort): only when the user asks. */
  bestEffort?: boolean;
  /** Home volume size; blank: the Host App's default (WORKSPACE_STORAGE_SIZE). */
  storageSize?: string;
  /** No home volume: files live as long as the container. */
  ephemeral?: boolean;
  /** Minutes without use before the idle culler stops it: blank = the Host App's default, 0 = never. */
  idleMinutes?: string;
}

/** A volume size: whole, more than zero (guildnet/operator/spec.py SIZE_PATTERN). */
export const SIZE_RE = /^[1-9][0-9]*([KMGTPE]i|[kMGTPE])?$/;

/** 30 days, the CRD's maximum idleTimeoutSeconds. */
export const IDLE_MAX_MINUTES = 43200;

export const emptyForm = (): LaunchForm => ({
  image: "",
  name: "",
  ports: [],
  env: [],
  args: "",
  command: "",
  cpuRequest: "",
  cpuLimit: "",
  memoryRequest: "",
  memoryLimit: "",
  idleMinutes: "",
});

export type FieldErrors = Record<string, string>;

export function validateName(name: string): string | null {
  if (!name) return "must not be empty";
  if (name.length > MAX_NAME_LEN) return `must be at most ${MAX_NAME_LEN} characters`;
  if (!NAME_RE.test(name)) {
    return "must be lower-case letters, digits and '-', start with a letter and end with a letter or digit";
  }
  return null;
}

export function validateImage(image: string): string | null {
  if (!image) return "is required";
  if (image.length > IMAGE_MAX_LEN) return `must be at most ${IMAGE_MAX_LEN} characters`;
  if (/\s/.test(image)) return "must not contain whitespace";
  return null;
}

export function validateClusterId(id: string): string | null {
  if (!id) return "is required";
  if (!CLUSTER_ID_RE.test(id)) {
    return "must be a lower-case DNS label (a-z, 0-9 and '-', 1-63 characters, starting and ending with a letter or digit)";
  }
  return null;
}

const SUFFIX: Record<string, number> = {
  n: 1e-9, u: 1e-6, m: 1e-3, "": 1,
  k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Kubernetes quantity as a number (for request <= limit checks), or null if invalid. */
export function parseQuantity(value: string): number | null {
  if (value.length > QUANTITY_MAX_LEN || !QUANTITY_RE.test(value)) return null;
  const m = /^([0-9]*\.?[0-9]*)(.*)$/.exec(value);
  if (!m) return null;
  const num = Number(m[1]);
  const suffix = m[2] ?? "";
  if (suffix.startsWith("e") || suffix.startsWith("E")) return num * 10 ** Number(suffix.slice(1));
  const mult = SUFFIX[suffix];
  return mult === undefined ? null : num * mult;
}

function quantityError(value: string): string | null {
  if (parseQuantity(value) === null) return "must be a quantity such as '500m', '2', '1Gi' or '512Mi'";
  return null;
}

/** Splits a textarea into items: one per line, surrounding blank lines dropped. */
export function lines(text: string): string[] {
  const items = text.split(/\r?\n/);
  while (items.length && items[items.length - 1]?.trim() === "") items.pop();
  while (items.length && items[0]?.trim() === "") items.shift();
  return items;
}

const rowBlank = (row: object) => Object.values(row).every((v) => String(v).trim() === "");

export interface BuiltJob {
  body: JobRequest;
  /** Request list index -> form row index, per list ("ports", "env"). */
  rows: { ports: number[]; env: number[] };
}

export interface Validation {
  errors: FieldErrors;
  job: BuiltJob | null;
}

function samePorts(a: PortSpec[], b: PortSpec[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((p, i) => {
    const q = b[i];
    return (
      q !== undefined &&
      p.containerPort === q.containerPort &&
      (p.name ?? "") === (q.name ?? "") &&
      (p.protocol ?? "TCP") === (q.protocol ?? "TCP")
    );
  });
}

function sameEnv(a: EnvVarSpec[], b: { name: string; value: string }[]): boolean {
  return a.length === b.length && a.every((e, i) => e.name === b[i]?.name && (e.value ?? "") === b[i]?.value);
}

/**
 * Validates the form like the server would and builds the POST /api/jobs body.
 *
 * `defaults` are the image's defaults (GET /api/image-defaults): ports, env and args equal
 * to them are left out, so the operator's own heuristics apply and the stored spec stays
 * minimal. Blank rows are ignored.
 */
export function validateLaunch(form: LaunchForm, defaults?: ImageDefaults | null): Validation {
  const errors: FieldErrors = {};
  const image = form.image.trim();
  const imageErr = validateImage(image);
  if (imageErr) errors.image = imageErr;
  const name = form.name.trim();
  if (name) {
    const nameErr = validateName(name);
    if (nameErr) errors.name = nameErr;
  }

  // ports
  const ports: PortSpec[] = [];
  const portRows: number[] = [];
  const portNames = new Set<string>();
  const portKeys = new Set<string>();
  form.ports.forEach((row, i) => {
    if (rowBlank({ n: row.name, p: row.containerPort })) return;
    const f = `ports[${i}]`;
    const raw = row.containerPort.trim();
    const number = /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
    if (!raw) errors[`${f}.containerPort`] = "is required";
    else if (!Number.isInteger(number)) errors[`${f}.containerPort`] = "must be an integer";
    else if (number < 1 || number > 65535) errors[`${f}.containerPort`] = "must be between 1 and 65535";
    const pname = row.name.trim();
    if (pname) {
      if (pname.length > PORT_NAME_MAX_LEN) errors[`${f}.name`] = `must be at most ${PORT_NAME_MAX_LEN} characters`;
      else if (!PORT_NAME_RE.test(pname)) {
        errors[`${f}.name`] = "must be lower-case letters, digits and single inner '-', with a letter";
      } else if (portNames.has(pname)) errors[`${f}.name`] = `duplicate port name '${pname}'`;
      portNames.add(pname);
    }
    const protocol = row.protocol || "TCP";
    if (!(PROTOCOLS as readonly string[]).includes(protocol)) {
      errors[`${f}.protocol`] = `must be one of ${PROTOCOLS.join(", ")}`;
    }
    const key = `${number}/${protocol}`;
    if (Number.isInteger(number) && !errors[`${f}.containerPort`]) {
      if (portKeys.has(key)) errors[`${f}.containerPort`] = `duplicate port ${key}`;
      portKeys.add(key);
    }
    const spec: PortSpec = { containerPort: number, protocol };
    if (pname) spec.name = pname;
    ports.push(spec);
    portRows.push(i);
  });
  if (ports.length > PORTS_MAX_ITEMS) errors.ports = `must have at most ${PORTS_MAX_ITEMS} items`;

  // env
  const env: EnvVarSpec[] = [];
  const envRows: number[] = [];
  const envNames = new Set<string>();
  form.env.forEach((row, i) => {
    if (rowBlank(row)) return;
    const f = `env[${i}].name`;
    const ename = row.name.trim();
    if (!ename) errors[f] = "is required";
    else if (ename.length > ENV_NAME_MAX_LEN) errors[f] = `must be at most ${ENV_NAME_MAX_LEN} characters`;
    else if (!ENV_NAME_RE.test(ename)) errors[f] = "must be letters, digits and '_', not starting with a digit";
    else if (envNames.has(ename)) errors[f] = `duplicate environment variable '${ename}'`;
    envNames.add(ename);
    env.push({ name: ename, value: row.value });
    envRows.push(i);
  });
  if (env.length > ENV_MAX_ITEMS) errors.env = `must have at most ${ENV_MAX_ITEMS} items`;

  const args = lines(form.args);
  if (args.length > ARGS_MAX_ITEMS) errors.args = `must have at most ${ARGS_MAX_ITEMS} items`;
  const command = lines(form.command);
  if (command.length > ARGS_MAX_ITEMS) errors.command = `must have at most ${ARGS_MAX_ITEMS} items`;

  // resources
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  const quantities: [string, string, Record<string, string>, string][] = [
    ["cpu", form.cpuRequest, requests, "resources.requests.cpu"],
    ["memory", form.memoryRequest, requests, "resources.requests.memory"],
    ["cpu", form.cpuLimit, limits, "resources.limits.cpu"],
    ["memory", form.memoryLimit, limits, "resources.limits.memory"],
  ];
  for (const [res, raw, into, field] of quantities) {
    const value = raw.trim();
    if (!value) continue;
    const err = quantityError(value);
    if (err) errors[field] = err;
    else into[res] = value;
  }
  for (const res of ["cpu", "memory"]) {
    const req = requests[res];
    const lim = limits[res];
    if (req !== undefined && lim !== undefined) {
      const r = parseQuantity(req);
      const l = parseQuantity(lim);
      if (r !== null && l !== null && r > l) {
        errors[`resources.requests.${res}`] = "must not be greater than the limit";
      }
    }
  }

  const storageSize = (form.storageSize ?? "").trim();
  if (!form.ephemeral && storageSize && !SIZE_RE.test(storageSize)) {
    errors["storage.size"] = "must be a size such as '10Gi' or '500Mi'";
  }

  // idle culling: whole minutes, at most 30 days (the CRD's idleTimeoutSeconds limit)
  const idleRaw = (form.idleMinutes ?? "").trim();
  let idleSeconds: number | null = null;
  if (idleRaw) {
    if (!/^[0-9]+$/.test(idleRaw)) errors.idleTimeoutSeconds = "must be a whole number of minutes";
    else if (Number(idleRaw) > IDLE_MAX_MINUTES) errors.idleTimeoutSeconds = `must be at most ${IDLE_MAX_MINUTES} minutes (30 days)`;
    else idleSeconds = Number(idleRaw) * 60;
  }

  if (Object.keys(errors).length) return { errors, job: null };

  const body: JobRequest = { image };
  if (name) body.name = name;
  const sendPorts = ports.length > 0 && !(defaults && samePorts(ports, defaults.ports));
  if (sendPorts) body.ports = ports;
  const sendEnv = env.length > 0 && !(defaults && sameEnv(env, defaults.env));
  if (sendEnv) body.env = env;
  if (args.length && !(defaults && args.join("\n") === defaults.args.join("\n"))) body.args = args;
  if (command.length) body.command = command;
  if (form.bestEffort) {
    body.resources = {}; // explicit: the Host App adds its defaults only when "resources" is absent
  } else if (Object.keys(requests).length || Object.keys(limits).length) {
    body.resources = {};
    if (Object.keys(requests).length) body.resources.requests = requests;
    if (Object.keys(limits).length) body.resources.limits = limits;
  }
  if (form.ephemeral) body.storage = "none";
  else if (storageSize && storageSize !== (defaults?.storage?.size ?? "")) body.storage = { size: storageSize };
  if (idleSeconds !== null) body.idleTimeoutSeconds = idleSeconds;
  return {
    errors,
    job: { body, rows: { ports: sendPorts ? portRows : [], env: sendEnv ? envRows : [] } },
  };
}

/**
 * A server error's field (request indices) as a form field (row indices).
 * "ports[1].name" with rows.ports = [0, 2] becomes "ports[2].name".
 */
export function formField(field: string, rows: BuiltJob["rows"]): string {
  const m = /^(ports|env)\[(\d+)\](.*)$/.exec(field);
  if (!m) return field;
  const list = m[1] as "ports" | "env";
  const row = rows[list][Number(m[2])];
  return row === undefined ? field : `${list}[${row}]${m[3] ?? ""}`;
}

/** The form field an error should be shown at when the exact input does not exist. */
export function displayField(field: string): string {
  if (/^env\[\d+\]\.valueFrom/.test(field)) return field.replace(/\.valueFrom.*$/, ".value");
  if (/^(args|command)\[\d+\]$/.test(field)) return field.replace(/\[\d+\]$/, "");
  return field;
}
