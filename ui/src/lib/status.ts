// A workspace's start-up progress from its conditions (guildnet/operator/status.py):
// the first condition that is not True is the step it waits on.
import type { Condition } from "../api/types";

export const CONDITION_ORDER = [
  "Accepted",
  "Deployed",
  "PodScheduled",
  "ImagePulled",
  "ContainersStarted",
  "Ready",
] as const;

export const CONDITION_LABELS: Record<string, string> = {
  Accepted: "Spec accepted",
  Deployed: "Deployment created",
  PodScheduled: "Pod scheduled",
  ImagePulled: "Image pulled",
  ContainersStarted: "Container started",
  Ready: "Ready",
  Stopped: "Stopped",
};

export type StepState = "done" | "current" | "failed" | "waiting";

export interface Step {
  type: string;
  label: string;
  state: StepState;
  reason: string;
  message: string;
  since: string | null;
}

/**
 * The steps in order with their state. In a Failed workspace the first step that is not
 * True is the one that failed; otherwise it is the one in progress.
 */
export function progressSteps(conditions: Condition[] | undefined, phase: string): Step[] {
  const byType = new Map((conditions ?? []).map((c) => [c.type, c]));
  const types: string[] = [...CONDITION_ORDER];
  for (const c of conditions ?? []) if (!types.includes(c.type)) types.push(c.type);
  let blocked = false;
  return types.map((type) => {
    const c = byType.get(type);
    let state: StepState;
    // Stopped is a state, not a step: true even though the pod steps are not.
    if (type === "Stopped" && c?.status === "True") state = "done";
    else if (blocked) state = "waiting";
    else if (c?.status === "True") state = "done";
    else {
      blocked = true;
      state = phase === "Failed" ? "failed" : "current";
    }
    return {
      type,
      label: CONDITION_LABELS[type] ?? type,
      state,
      reason: c?.reason ?? "",
      message: c?.message ?? "",
      since: c?.lastTransitionTime ?? null,
    };
  });
}

/** The failed step of a Failed workspace, or the step it is waiting on. */
export function currentStep(conditions: Condition[] | undefined, phase: string): Step | null {
  return progressSteps(conditions, phase).find((s) => s.state === "current" || s.state === "failed") ?? null;
}
