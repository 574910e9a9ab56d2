import { describe, expect, it } from "vitest";
import type { ServerDetail } from "../api/types";
import { changeFrom, editFormFrom, lifecycleActions, stoppedInfo } from "./lifecycle";

const spec: ServerDetail["spec"] = {
  image: "codercom/code-server:4.139.1",
  env: [
    { name: "A", value: "1" },
    { name: "TOKEN", valueFrom: { secretKeyRef: { name: "s", key: "k" } } },
  ],
  args: ["--x"],
  resources: { requests: { cpu: "250m", memory: "512Mi" }, limits: { cpu: "2", memory: "2Gi" } },
};

describe("lifecycleActions", () => {
  it("offers stop and restart while running, start while stopped, nothing while deleting", () => {
    expect(lifecycleActions("Running")).toEqual({ stop: true, start: false, restart: true });
    expect(lifecycleActions("Failed")).toEqual({ stop: true, start: false, restart: true });
    expect(lifecycleActions("Stopped")).toEqual({ stop: false, start: true, restart: false });
    // spec.stopped wins while the status still says Running (the operator has not caught up)
    expect(lifecycleActions("Running", true)).toEqual({ stop: false, start: true, restart: false });
    expect(lifecycleActions("Terminating")).toEqual({ stop: false, start: false, restart: false });
  });
});

describe("stoppedInfo", () => {
  it("reads the Stopped condition", () => {
    const c = [{ type: "Stopped", status: "True", reason: "Idle", message: "no traffic", lastTransitionTime: "t" }];
    expect(stoppedInfo(c)).toEqual({ reason: "Idle", message: "no traffic", since: "t" });
    expect(stoppedInfo([{ type: "Ready", status: "True" }])).toBeNull();
    expect(stoppedInfo(undefined)).toBeNull();
  });
});

describe("changeFrom", () => {
  it("sends nothing when nothing changed", () => {
    expect(changeFrom(editFormFrom(spec), spec)).toEqual({ errors: {}, body: {} });
  });

  it("sends only what changed and keeps Secret-backed env", () => {
    const form = { ...editFormFrom(spec), image: "codercom/code-server:4.140.0", args: "" };
    form.env = [...form.env, { name: "B", value: "2" }];
    const { body } = changeFrom(form, spec);
    expect(body).toEqual({
      image: "codercom/code-server:4.140.0",
      args: null,
      env: [
        { name: "A", value: "1" },
        { name: "B", value: "2" },
        { name: "TOKEN", valueFrom: { secretKeyRef: { name: "s", key: "k" } } },
      ],
    });
  });

  it("blank resources mean the defaults again; bad ones name the field", () => {
    const blank = { ...editFormFrom(spec), cpuRequest: "", cpuLimit: "", memoryRequest: "", memoryLimit: "" };
    expect(changeFrom(blank, spec).body).toEqual({ resources: null });
    const more = { ...editFormFrom(spec), cpuLimit: "4" };
    expect(changeFrom(more, spec).body).toEqual({
      resources: { requests: { cpu: "250m", memory: "512Mi" }, limits: { cpu: "4", memory: "2Gi" } },
    });
    const bad = { ...editFormFrom(spec), cpuRequest: "3", cpuLimit: "2" };
    const out = changeFrom(bad, spec);
    expect(out.body).toBeNull();
    expect(out.errors["resources.requests.cpu"]).toMatch(/greater than the limit/);
  });
});
