import { describe, expect, it } from "vitest";
import type { ImageDefaults } from "../api/types";
import {
  displayField,
  emptyForm,
  formField,
  lines,
  parseQuantity,
  validateClusterId,
  validateLaunch,
  validateName,
  type LaunchForm,
} from "./validation";

const form = (patch: Partial<LaunchForm>): LaunchForm => ({ ...emptyForm(), image: "nginx:1", ...patch });

const codeServerDefaults: ImageDefaults = {
  image: "codercom/code-server:4",
  kind: "code-server",
  ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }],
  env: [{ name: "PORT", value: "8080" }],
  args: [],
  command: [],
  passwordEnv: "PASSWORD",
};

describe("names and ids", () => {
  it("accepts DNS-1035 labels up to 53 characters", () => {
    expect(validateName("a")).toBeNull();
    expect(validateName("my-ws-2")).toBeNull();
    expect(validateName("a".repeat(53))).toBeNull();
    expect(validateName("a".repeat(54))).toMatch(/at most 53/);
    expect(validateName("1abc")).toMatch(/start with a letter/);
    expect(validateName("abc-")).not.toBeNull();
    expect(validateName("ABC")).not.toBeNull();
  });

  it("cluster ids are DNS labels that may start with a digit", () => {
    expect(validateClusterId("default")).toBeNull();
    expect(validateClusterId("1st")).toBeNull();
    expect(validateClusterId("")).toBe("is required");
    expect(validateClusterId("Bad_id")).not.toBeNull();
    expect(validateClusterId("a".repeat(64))).not.toBeNull();
  });
});

describe("quantities", () => {
  it("parses Kubernetes quantities", () => {
    expect(parseQuantity("500m")).toBeCloseTo(0.5);
    expect(parseQuantity("2")).toBe(2);
    expect(parseQuantity("1Gi")).toBe(2 ** 30);
    expect(parseQuantity("512Mi")).toBe(512 * 2 ** 20);
    expect(parseQuantity("1e3")).toBe(1000);
    expect(parseQuantity(".5")).toBe(0.5);
    expect(parseQuantity("1.5G")).toBe(1.5e9);
  });
  it("rejects what the CRD pattern rejects", () => {
    for (const bad of ["", "abc", "1GB", "-1", "1 Gi", "1.2.3"]) expect(parseQuantity(bad)).toBeNull();
  });
});

describe("validateLaunch", () => {
  it("builds a minimal body for just an image", () => {
    const v = validateLaunch(form({}));
    expect(v.errors).toEqual({});
    expect(v.job?.body).toEqual({ image: "nginx:1" });
  });

  it("requires an image without whitespace", () => {
    expect(validateLaunch(form({ image: "" })).errors.image).toBe("is required");
    expect(validateLaunch(form({ image: "a b" })).errors.image).toMatch(/whitespace/);
    expect(validateLaunch(form({ image: "x".repeat(513) })).errors.image).toMatch(/512/);
  });

  it("checks the optional name", () => {
    expect(validateLaunch(form({ name: "Bad Name" })).errors.name).toBeDefined();
    expect(validateLaunch(form({ name: "good" })).job?.body.name).toBe("good");
  });

  it("names port fields like the server", () => {
    const v = validateLaunch(
      form({
        ports: [
          { name: "http", containerPort: "8080", protocol: "TCP" },
          { name: "http", containerPort: "70000", protocol: "TCP" },
          { name: "", containerPort: "x", protocol: "TCP" },
          { name: "Bad_Name", containerPort: "8080", protocol: "TCP" },
          { name: "", containerPort: "", protocol: "TCP" },
        ],
      }),
    );
    expect(v.errors).toMatchObject({
      "ports[1].name": "duplicate port name 'http'",
      "ports[1].containerPort": "must be between 1 and 65535",
      "ports[2].containerPort": "must be an integer",
      "ports[3].name": expect.stringMatching(/lower-case/),
      "ports[3].containerPort": "duplicate port 8080/TCP",
    });
    // the blank last row is ignored
    expect(Object.keys(v.errors).some((k) => k.startsWith("ports[4]"))).toBe(false);
    expect(v.job).toBeNull();
  });

  it("allows the same port number on different protocols", () => {
    const v = validateLaunch(
      form({
        ports: [
          { name: "", containerPort: "53", protocol: "TCP" },
          { name: "", containerPort: "53", protocol: "UDP" },
        ],
      }),
    );
    expect(v.errors).toEqual({});
    expect(v.job?.body.ports).toEqual([
      { containerPort: 53, protocol: "TCP" },
      { containerPort: 53, protocol: "UDP" },
    ]);
  });

  it("checks environment variable names and duplicates", () => {
    const v = validateLaunch(
      form({
        env: [
          { name: "A", value: "1" },
          { name: "A", value: "2" },
          { name: "9X", value: "" },
          { name: "", value: "orphan" },
          { name: "", value: "" },
        ],
      }),
    );
    expect(v.errors).toEqual({
      "env[1].name": "duplicate environment variable 'A'",
      "env[2].name": "must be letters, digits and '_', not starting with a digit",
      "env[3].name": "is required",
    });
  });

  it("checks resources and that requests do not exceed limits", () => {
    const bad = validateLaunch(form({ cpuRequest: "lots", memoryRequest: "2Gi", memoryLimit: "1Gi" }));
    expect(bad.errors).toEqual({
      "resources.requests.cpu": expect.stringMatching(/quantity/),
      "resources.requests.memory": "must not be greater than the limit",
    });
    const ok = validateLaunch(form({ cpuRequest: "250m", cpuLimit: "1", memoryLimit: "1Gi" }));
    expect(ok.job?.body.resources).toEqual({ requests: { cpu: "250m" }, limits: { cpu: "1", memory: "1Gi" } });
  });

  it("sends the idle timeout in seconds from whole minutes, blank for the default", () => {
    expect(validateLaunch(form({ idleMinutes: "30" })).job?.body.idleTimeoutSeconds).toBe(1800);
    expect(validateLaunch(form({ idleMinutes: " 0 " })).job?.body.idleTimeoutSeconds).toBe(0);
    expect(validateLaunch(form({ idleMinutes: "" })).job?.body).not.toHaveProperty("idleTimeoutSeconds");
    expect(validateLaunch(form({ idleMinutes: "1.5" })).errors).toEqual({
      idleTimeoutSeconds: "must be a whole number of minutes",
    });
    expect(validateLaunch(form({ idleMinutes: "43201" })).errors.idleTimeoutSeconds).toMatch(/at most 43200/);
  });

  it("sends args and command one per line", () => {
    const v = validateLaunch(form({ args: "\n--port\n8080\n\n", command: "/bin/app" }));
    expect(v.job?.body.args).toEqual(["--port", "8080"]);
    expect(v.job?.body.command).toEqual(["/bin/app"]);
    expect(lines("a\n\nb")).toEqual(["a", "", "b"]);
  });

  it("leaves out ports, env and args equal to the image's defaults", () => {
    const same = validateLaunch(
      form({
        image: "codercom/code-server:4",
        ports: [{ name: "http", containerPort: "8080", protocol: "TCP" }],
        env: [{ name: "PORT", value: "8080" }],
      }),
      codeServerDefaults,
    );
    expect(same.job?.body).toEqual({ image: "codercom/code-server:4" });
    const changed = validateLaunch(
      form({
        image: "codercom/code-server:4",
        ports: [{ name: "http", containerPort: "9000", protocol: "TCP" }],
        env: [{ name: "PORT", value: "9000" }],
      }),
      codeServerDefaults,
    );
    expect(changed.job?.body.ports).toEqual([{ name: "http", containerPort: 9000, protocol: "TCP" }]);
    expect(changed.job?.body.env).toEqual([{ name: "PORT", value: "9000" }]);
  });

  it("maps server field names back to form rows", () => {
    const v = validateLaunch(
      form({
        ports: [
          { name: "", containerPort: "", protocol: "TCP" },
          { name: "a", containerPort: "81", protocol: "TCP" },
          { name: "b", containerPort: "82", protocol: "TCP" },
        ],
        env: [
          { name: "", value: "" },
          { name: "X", value: "1" },
        ],
      }),
    );
    const rows = v.job!.rows;
    expect(rows).toEqual({ ports: [1, 2], env: [1] });
    expect(formField("ports[1].name", rows)).toBe("ports[2].name");
    expect(formField("env[0].valueFrom.secretKeyRef.name", rows)).toBe("env[1].valueFrom.secretKeyRef.name");
    expect(formField("image", rows)).toBe("image");
    expect(formField("ports[9].name", rows)).toBe("ports[9].name");
    expect(displayField("env[1].valueFrom.secretKeyRef.name")).toBe("env[1].value");
    expect(displayField("args[3]")).toBe("args");
  });
});

describe("launch: resources and home volume", () => {
  const base = { ...emptyForm(), image: "codercom/code-server:4.139.1" };
  const defaults = {
    image: base.image,
    kind: "code-server",
    ports: [],
    env: [],
    args: [],
    command: [],
    passwordEnv: "PASSWORD",
    storage: { size: "10Gi", storageClassName: null, mountPath: "/home/coder" },
  };

  it("BestEffort only when asked: resources {} is sent explicitly", () => {
    expect(validateLaunch({ ...base, cpuRequest: "1", bestEffort: true }).job?.body.resources).toEqual({});
    expect(validateLaunch(base).job?.body.resources).toBeUndefined(); // the Host App's defaults apply
  });

  it("storage: none, a size other than the default, or nothing", () => {
    expect(validateLaunch({ ...base, ephemeral: true, storageSize: "5Gi" }, defaults).job?.body.storage).toBe("none");
    expect(validateLaunch({ ...base, storageSize: "5Gi" }, defaults).job?.body.storage).toEqual({ size: "5Gi" });
    expect(validateLaunch({ ...base, storageSize: "10Gi" }, defaults).job?.body.storage).toBeUndefined();
    expect(validateLaunch({ ...base, storageSize: "0.5Gi" }, defaults).errors["storage.size"]).toMatch(/size/);
  });
});
