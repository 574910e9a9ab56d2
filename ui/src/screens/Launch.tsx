import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { api, ApiError } from "../api/client";
import type { ImageDefaults, ImagePreset } from "../api/types";
import { ErrorNotice, Field, Spinner } from "../components/common";
import { navigate, useFetch } from "../lib/hooks";
import { to } from "../lib/route";
import {
  displayField,
  emptyForm,
  formField,
  PROTOCOLS,
  validateImage,
  validateLaunch,
  type EnvRow,
  type FieldErrors,
  type LaunchForm,
  type PortRow,
} from "../lib/validation";

const CUSTOM = "__custom";

/** The DOM id of the input for a form field ("ports[0].name" -> "launch-ports-0-name"). */
export function fieldId(field: string): string {
  return `launch-${field.replace(/[[\].]+/g, "-").replace(/-+$/, "")}`;
}

type Prefilled = Pick<
  LaunchForm,
  "ports" | "env" | "args" | "command" | "cpuRequest" | "cpuLimit" | "memoryRequest" | "memoryLimit" | "storageSize"
>;

function quantity(value: string | number | undefined): string {
  return value === undefined ? "" : String(value);
}

function advancedFrom(defaults: ImageDefaults | null, preset: ImagePreset | null): Prefilled {
  const ports = preset?.ports ?? defaults?.ports ?? [];
  const args = preset?.args ?? defaults?.args ?? [];
  const res = defaults?.resources;
  return {
    cpuRequest: quantity(res?.requests?.cpu),
    cpuLimit: quantity(res?.limits?.cpu),
    memoryRequest: quantity(res?.requests?.memory),
    memoryLimit: quantity(res?.limits?.memory),
    storageSize: defaults?.storage?.size ?? "",
    ports: ports.map((p) => ({ name: p.name ?? "", containerPort: String(p.containerPort), protocol: p.protocol ?? "TCP" })),
    env: (defaults?.env ?? []).map((e) => ({ name: e.name, value: e.value })),
    args: args.join("\n"),
    command: (defaults?.command ?? []).join("\n"),
  };
}

export function LaunchScreen({ cluster }: { cluster: string }) {
  const presets = useFetch(`images:${cluster}`, (signal) => api.images(cluster, signal));
  const [choice, setChoice] = useState<string>("");
  const [form, setForm] = useState<LaunchForm>(emptyForm);
  const [defaults, setDefaults] = useState<ImageDefaults | null>(null);
  const [defaultsError, setDefaultsError] = useState<string | null>(null);
  const [dirty, setDirty] = useState(false);
  const [advancedOpen, setAdvancedOpen] = useState(false);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const advancedRef = useRef<HTMLDetailsElement>(null);

  const preset = useMemo(
    () => presets.data?.find((p) => p.id === choice) ?? null,
    [presets.data, choice],
  );

  // First preset selected once the presets arrive.
  useEffect(() => {
    if (!choice && presets.data && presets.data.length > 0) {
      const first = presets.data[0]!;
      setChoice(first.id);
      setForm((f) => ({ ...f, image: first.image }));
    }
  }, [presets.data, choice]);

  // The image's defaults, fetched (debounced while typing) whenever the image changes.
  const image = form.image.trim();
  useEffect(() => {
    if (!image || validateImage(image)) {
      setDefaults(null);
      return;
    }
    const controller = new AbortController();
    const t = setTimeout(() => {
      api
        .imageDefaults(cluster, image, controller.signal)
        .then((d) => {
          setDefaults(d);
          setDefaultsError(null);
        })
        .catch((e: unknown) => {
          if (controller.signal.aborted) return;
          setDefaults(null);
          setDefaultsError(e instanceof ApiError ? e.message : String(e));
        });
    }, choice === CUSTOM ? 400 : 0);
    return () => {
      clearTimeout(t);
      controller.abort();
    };
  }, [cluster, image, choice]);

  // Prefill the advanced section from the defaults until the user edits it.
  useEffect(() => {
    if (dirty) return;
    if (defaults && defaults.image !== image) return;
    setForm((f) => ({ ...f, ...advancedFrom(defaults, preset && preset.image === image ? preset : null) }));
  }, [defaults, preset, image, dirty]);

  function update(patch: Partial<LaunchForm>, advanced = false) {
    setForm((f) => ({ ...f, ...patch }));
    if (advanced) setDirty(true);
    const keys = Object.keys(patch);
    setErrors((e) => {
      const next = { ...e };
      for (const k of Object.keys(next)) if (keys.some((key) => k === key || k.startsWith(`${key}[`) || k.startsWith(`${key}.`))) delete next[k];
      return next;
    });
  }

  function setPort(i: number, patch: Partial<PortRow>) {
    update({ ports: form.ports.map((p, j) => (j === i ? { ...p, ...patch } : p)) }, true);
  }
  function setEnv(i: number, patch: Partial<EnvRow>) {
    update({ env: form.env.map((p, j) => (j === i ? { ...p, ...patch } : p)) }, true);
  }

  function focusField(field: string) {
    const isAdvanced = !["image", "name"].includes(field);
    if (isAdvanced && advancedRef.current) {
      advancedRef.current.open = true;
      setAdvancedOpen(true);
    }
    setTimeout(() => {
      const el = document.getElementById(fieldId(field)) ?? document.getElementById(fieldId(field.split(/[[.]/)[0] ?? field));
      el?.focus();
    }, 0);
  }

  function submit(ev: FormEvent) {
    ev.preventDefault();
    setFormError(null);
    const { errors: errs, job } = validateLaunch(form, defaults);
    setErrors(errs);
    if (!job) {
      const first = Object.keys(errs)[0];
      if (first) focusField(first);
      return;
    }
    setBusy(true);
    api
      .launch(cluster, job.body)
      .then((created) => navigate(to.server(cluster, created.id)))
      .catch((e: unknown) => {
        setBusy(false);
        if (!(e instanceof ApiError)) {
          setFormError(String(e));
          return;
        }
        if (e.field) {
          const field = displayField(formField(e.field, job.rows));
          if (document.getElementById(fieldId(field)) || isAdvancedField(field)) {
            setErrors({ [field]: e.message.replace(/^[^:]+: /, "") });
            focusField(field);
            return;
          }
          setFormError(`${e.field}: ${e.message}`);
          return;
        }
        setFormError(e.message);
      });
  }

  const err = (field: string) => errors[field];
  const inputProps = (field: string) => ({
    id: fieldId(field),
    "aria-invalid": errors[field] ? true : undefined,
    "aria-describedby": errors[field] ? `${fieldId(field)}-error` : undefined,
  });

  return (
    <div className="stack">
      <div className="page-head">
        <h1>Launch a workspace</h1>
      </div>
      {presets.error ? (
        <ErrorNotice error={presets.error} retryAt={presets.retryAt} onRetry={presets.reload} what="the image presets" />
      ) : null}
      <form className="form stack" onSubmit={submit} noValidate>
        <section className="card" aria-labelledby="launch-image-h">
          <h2 id="launch-image-h">Image</h2>
          {presets.data === null && !presets.error ? <Spinner label="Loading presets…" /> : null}
          <fieldset className="presets">
            <legend className="visually-hidden">Choose an image</legend>
            {(presets.data ?? []).map((p) => (
              <label key={p.id} className={choice === p.id ? "preset preset-on" : "preset"} data-preset={p.id}>
                <input
                  type="radio"
                  name="preset"
                  value={p.id}
                  checked={choice === p.id}
                  onChange={() => {
                    setChoice(p.id);
                    setDirty(false);
                    update({ image: p.image });
                  }}
                />
                <span className="preset-name">{p.name}</span>
                <span className="preset-image mono small">{p.image}</span>
                <span className="preset-desc small">{p.description}</span>
              </label>
            ))}
            <label className={choice === CUSTOM ? "preset preset-on" : "preset"} data-preset="custom">
              <input
                type="radio"
                name="preset"
                value={CUSTOM}
                checked={choice === CUSTOM}
                onChange={() => {
                  setChoice(CUSTOM);
                  setDirty(false);
                  update({ image: "" });
                  setTimeout(() => document.getElementById(fieldId("image"))?.focus(), 0);
                }}
              />
              <span className="preset-name">Custom image</span>
              <span className="preset-desc small">Any image reference, e.g. ghcr.io/org/app:1.2. Web apps should listen on port 8080.</span>
            </label>
          </fieldset>
          <div className="grid-2">
            <Field id={fieldId("image")} label="Image reference" error={err("image")} hint={defaults ? `Detected: ${defaults.kind}` : undefined}>
              <input
                {...inputProps("image")}
                className="mono"
                value={form.image}
                spellCheck={false}
                autoComplete="off"
                placeholder="registry/repository:tag"
                onChange={(e) => {
                  if (choice !== CUSTOM) setChoice(CUSTOM);
                  setDirty(false);
                  update({ image: e.target.value });
                }}
              />
            </Field>
            <Field id={fieldId("name")} label="Name (optional)" error={err("name")} hint="Generated from the image when empty.">
              <input
                {...inputProps("name")}
                value={form.name}
                spellCheck={false}
                autoComplete="off"
                placeholder="my-workspace"
                onChange={(e) => update({ name: e.target.value })}
              />
            </Field>
          </div>
        </section>

        <details
          ref={advancedRef}
          className="card advanced"
          open={advancedOpen}
          onToggle={(e) => setAdvancedOpen((e.target as HTMLDetailsElement).open)}
        >
          <summary>
            <h2>Advanced</h2>
            <span className="muted small">Ports, environment, arguments, CPU and memory{dirty ? " · edited" : ""}</span>
          </summary>
          {defaultsError ? <div className="notice notice-warn">Could not load the image's defaults: {defaultsError}</div> : null}
          <div className="row">
            <span className="muted small">
              {defaults ? `Prefilled with what GuildNet uses for ${defaults.kind} images.` : "Set the image to see its defaults."}
            </span>
            <span className="spacer" />
            {dirty ? (
              <button type="button" className="btn btn-small" onClick={() => setDirty(false)}>
                Reset to image defaults
              </button>
            ) : null}
          </div>

          <h3>Ports</h3>
          {err("ports") ? <div className="field-error">{err("ports")}</div> : null}
          <div className="rows">
            {form.ports.length === 0 ? <p className="muted small">No ports: the image's defaults apply.</p> : null}
            {form.ports.map((p, i) => (
              <div className="row-item" key={i}>
                <Field id={fieldId(`ports[${i}].containerPort`)} label="Port" error={err(`ports[${i}].containerPort`)}>
                  <input
                    {...inputProps(`ports[${i}].containerPort`)}
                    inputMode="numeric"
                    value={p.containerPort}
                    onChange={(e) => setPort(i, { containerPort: e.target.value })}
                  />
                </Field>
                <Field id={fieldId(`ports[${i}].name`)} label="Name" error={err(`ports[${i}].name`)}>
                  <input {...inputProps(`ports[${i}].name`)} value={p.name} onChange={(e) => setPort(i, { name: e.target.value })} />
                </Field>
                <Field id={fieldId(`ports[${i}].protocol`)} label="Protocol" error={err(`ports[${i}].protocol`)}>
                  <select {...inputProps(`ports[${i}].protocol`)} value={p.protocol || "TCP"} onChange={(e) => setPort(i, { protocol: e.target.value })}>
                    {PROTOCOLS.map((x) => (
                      <option key={x}>{x}</option>
                    ))}
                  </select>
                </Field>
                <button
                  type="button"
                  className="btn btn-small btn-icon"
                  aria-label={`Remove port ${p.containerPort || i + 1}`}
                  onClick={() => update({ ports: form.ports.filter((_, j) => j !== i) }, true)}
                >
                  ✕
                </button>
              </div>
            ))}
            <button type="button" className="btn btn-small" onClick={() => update({ ports: [...form.ports, { name: "", containerPort: "", protocol: "TCP" }] }, true)}>
              Add port
            </button>
          </div>

          <h3>Environment</h3>
          {err("env") ? <div className="field-error">{err("env")}</div> : null}
          <div className="rows">
            {form.env.length === 0 ? <p className="muted small">No variables.</p> : null}
            {form.env.map((v, i) => (
              <div className="row-item row-item-env" key={i}>
                <Field id={fieldId(`env[${i}].name`)} label="Name" error={err(`env[${i}].name`)}>
                  <input {...inputProps(`env[${i}].name`)} className="mono" value={v.name} spellCheck={false} onChange={(e) => setEnv(i, { name: e.target.value })} />
                </Field>
                <Field id={fieldId(`env[${i}].value`)} label="Value" error={err(`env[${i}].value`)}>
                  <input {...inputProps(`env[${i}].value`)} className="mono" value={v.value} spellCheck={false} onChange={(e) => setEnv(i, { value: e.target.value })} />
                </Field>
                <button
                  type="button"
                  className="btn btn-small btn-icon"
                  aria-label={`Remove variable ${v.name || i + 1}`}
                  onClick={() => update({ env: form.env.filter((_, j) => j !== i) }, true)}
                >
                  ✕
                </button>
              </div>
            ))}
            <button type="button" className="btn btn-small" onClick={() => update({ env: [...form.env, { name: "", value: "" }] }, true)}>
              Add variable
            </button>
          </div>

          <div className="grid-2">
            <Field id={fieldId("args")} label="Arguments (one per line)" error={err("args")}>
              <textarea {...inputProps("args")} className="mono" rows={3} value={form.args} spellCheck={false} onChange={(e) => update({ args: e.target.value }, true)} />
            </Field>
            <Field id={fieldId("command")} label="Command (one per line; replaces the entrypoint)" error={err("command")}>
              <textarea {...inputProps("command")} className="mono" rows={3} value={form.command} spellCheck={false} onChange={(e) => update({ command: e.target.value }, true)} />
            </Field>
          </div>

          <h3>Resources</h3>
          <div className="grid-4">
            <Field id={fieldId("resources.requests.cpu")} label="CPU request" error={err("resources.requests.cpu")}>
              <input {...inputProps("resources.requests.cpu")} value={form.cpuRequest} placeholder="250m" onChange={(e) => update({ cpuRequest: e.target.value }, true)} />
            </Field>
            <Field id={fieldId("resources.limits.cpu")} label="CPU limit" error={err("resources.limits.cpu")}>
              <input {...inputProps("resources.limits.cpu")} value={form.cpuLimit} placeholder="2" onChange={(e) => update({ cpuLimit: e.target.value }, true)} />
            </Field>
            <Field id={fieldId("resources.requests.memory")} label="Memory request" error={err("resources.requests.memory")}>
              <input {...inputProps("resources.requests.memory")} value={form.memoryRequest} placeholder="512Mi" onChange={(e) => update({ memoryRequest: e.target.value }, true)} />
            </Field>
            <Field id={fieldId("resources.limits.memory")} label="Memory limit" error={err("resources.limits.memory")}>
              <input {...inputProps("resources.limits.memory")} value={form.memoryLimit} placeholder="2Gi" onChange={(e) => update({ memoryLimit: e.target.value }, true)} />
            </Field>
          </div>
          <label className="check">
            <input
              id={fieldId("bestEffort")}
              type="checkbox"
              checked={form.bestEffort ?? false}
              onChange={(e) => update({ bestEffort: e.target.checked }, true)}
            />{" "}
            No requests or limits (BestEffort: the first to be evicted when the node runs short)
          </label>

          <h3>Home volume</h3>
          <div className="grid-2">
            <Field
              id={fieldId("storage.size")}
              label="Size"
              error={err("storage.size")}
              hint={defaults?.homePath ? `Mounted at ${defaults.homePath}; kept across restarts and stops.` : undefined}
            >
              <input
                {...inputProps("storage.size")}
                value={form.ephemeral ? "" : (form.storageSize ?? "")}
                disabled={form.ephemeral}
                placeholder="10Gi"
                onChange={(e) => update({ storageSize: e.target.value }, true)}
              />
            </Field>
            <label className="check">
              <input
                id={fieldId("ephemeral")}
                type="checkbox"
                checked={form.ephemeral ?? false}
                onChange={(e) => update({ ephemeral: e.target.checked }, true)}
              />{" "}
              No volume (ephemeral: files are lost when the pod restarts)
            </label>
          </div>

          <h3>Idle culling</h3>
          <div className="grid-4">
            <Field id={fieldId("idleTimeoutSeconds")} label="Stop after idle (minutes)" error={err("idleTimeoutSeconds")}>
              <input {...inputProps("idleTimeoutSeconds")} inputMode="numeric" value={form.idleMinutes ?? ""} placeholder="default" title="Blank: the Host App's WORKSPACE_IDLE_TIMEOUT; 0: never. Stopping keeps the home volume." onChange={(e) => update({ idleMinutes: e.target.value }, true)} />
            </Field>
          </div>
        </details>

        {formError ? (
          <div className="notice notice-error" role="alert">
            {formError}
          </div>
        ) : null}
        {Object.keys(errors).length > 0 ? (
          <div className="notice notice-error" role="alert">
            Fix the highlighted {Object.keys(errors).length === 1 ? "field" : "fields"} to launch.
          </div>
        ) : null}
        <div className="row">
          <span className="spacer" />
          <button type="submit" className="btn btn-primary btn-large" disabled={busy}>
            {busy ? "Launching…" : "Launch"}
          </button>
        </div>
      </form>
    </div>
  );
}

function isAdvancedField(field: string): boolean {
  return /^(ports|env)\[\d+\]\.|^(args|command|idleTimeoutSeconds)$|^resources\.(requests|limits)\.(cpu|memory)$|^storage\./.test(field);
}
