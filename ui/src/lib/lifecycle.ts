// Stop, start, restart and change of a workspace: which actions fit its state, what its
// Stopped condition says, and the PATCH body an edit form makes (guildnet/workspaces/
// lifecycle.py on the server). Pure, so the screens stay thin and this is unit-tested.
import type { Condition, EnvVarSpec, ResourcesSpec, ServerChange, ServerDetail } from "../api/types";
import { type EnvRow, type FieldErrors, emptyForm, lines, validateLaunch } from "./validation";

export interface Actions {
  stop: boolean;
  start: boolean;
  restart: boolean;
}

/** The lifecycle buttons a workspace offers in its phase (none while it goes away). */
export function lifecycleActions(phase: string, stopped?: boolean): Actions {
  if (phase === "Terminating" || phase === "Deleted") return { stop: false, start: false, restart: false };
  if (stopped || phase === "Stopped") return { stop: false, start: true, restart: false };
  return { stop: true, start: false, restart: true };
}

export interface StoppedInfo {
  reason: string;
  message: string;
  since: string | null;
}

/** The Stopped condition (reason UserRequested or Idle), if the workspace is stopped. */
export function stoppedInfo(conditions: Condition[] | undefined): StoppedInfo | null {
  const c = (conditions ?? []).find((x) => x.type === "Stopped" && x.status === "True");
  if (!c) return null;
  return { reason: c.reason ?? "", message: c.message ?? "", since: c.lastTransitionTime ?? null };
}

/** What the user can change on a running workspace. */
export interface EditForm {
  image: string;
  env: EnvRow[];
  /** One argument per line. */
  args: string;
  cpuRequest: string;
  cpuLimit: string;
  memoryRequest: string;
  memoryLimit: string;
}

function q(res: ResourcesSpec | undefined, kind: "requests" | "limits", name: string): string {
  const v = res?.[kind]?.[name];
  return v === undefined ? "" : String(v);
}

export function editFormFrom(spec: ServerDetail["spec"]): EditForm {
  return {
    image: spec.image,
    env: (spec.env ?? []).filter((e) => e.valueFrom === undefined).map((e) => ({ name: e.name, value: e.value ?? "" })),
    args: (spec.args ?? []).join("\n"),
    cpuRequest: q(spec.resources, "requests", "cpu"),
    cpuLimit: q(spec.resources, "limits", "cpu"),
    memoryRequest: q(spec.resources, "requests", "memory"),
    memoryLimit: q(spec.resources, "limits", "memory"),
  };
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/**
 * The PATCH body for an edit (only what changed), or the form's errors.
 * Blank resources mean "the image kind's defaults" (null); env values from Secrets are
 * kept as they are.
 */
export function changeFrom(form: EditForm, spec: ServerDetail["spec"]): { errors: FieldErrors; body: ServerChange | null } {
  const { errors, job } = validateLaunch({ ...emptyForm(), ...form, name: "" }, null);
  if (!job) return { errors, body: null };
  const body: ServerChange = {};
  if (job.body.image !== spec.image) body.image = job.body.image;
  const secretEnv: EnvVarSpec[] = (spec.env ?? []).filter((e) => e.valueFrom !== undefined);
  const env = [...(job.body.env ?? []), ...secretEnv];
  if (!same(env, spec.env ?? [])) body.env = env.length ? env : null;
  const args = lines(form.args);
  if (!same(args, spec.args ?? [])) body.args = args.length ? args : null;
  const resources = job.body.resources ?? null;
  const current = spec.resources ?? null;
  if (!same(resources, current)) body.resources = resources;
  return { errors, body };
}
