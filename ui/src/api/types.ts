// Shapes of the Host App's JSON API (guildnet/http/api.py, guildnet/http/workspaces.py,
// guildnet/workspaces/views.py). Only what the UI reads is typed.

export interface UiConfig {
  version: string;
  origin: string;
  defaultCluster: string | null;
  namespace: string;
  features: Record<string, unknown>;
}

/** `GET /api/whoami`: who the Host App thinks the caller is (from the connection). */
export interface WhoAmI {
  login: string;
  displayName: string;
  node: string;
  tags: string[];
  source: "local" | "tailnet";
  role: "admin" | "user" | "none";
}

export interface Cluster {
  id: string;
  name: string | null;
  server: string | null;
  reachable: boolean;
  version: string | null;
  error: string | null;
  deletable: boolean;
}

/** One part of GET /api/cluster/<id>/health. */
export interface HealthPart {
  ok: boolean;
  reason: string;
  checkedAt: string;
}

export interface ClusterHealth {
  cluster: string;
  ok: boolean;
  failing: string[];
  checkedAt: string;
  parts: Record<string, HealthPart>;
}

export type Phase = "Pending" | "Starting" | "Running" | "Stopped" | "Failed" | "Terminating" | string;

/** A spec's resources: requests and limits per resource name. */
export interface ResourcesSpec {
  requests?: Record<string, string | number>;
  limits?: Record<string, string | number>;
}

/** A spec's home volume; the API also accepts the string "none" (ephemeral). */
export interface StorageSpec {
  ephemeral?: boolean;
  size?: string;
  storageClassName?: string;
  mountPath?: string;
}

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown" | string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

/** One GET /api/servers item; /sse/servers sends it with conditions. */
/** Idle culling of a running workspace (null otherwise); times are RFC 3339 UTC. */
export interface IdleInfo {
  timeoutSeconds: number;
  lastActivity: string;
  idleSince: string;
  /** When the idle culler stops it if nothing happens; null when culling is off for it. */
  stopsAt: string | null;
}

export interface ServerSummary {
  id: string;
  name: string;
  image: string | null;
  phase: Phase;
  ready: boolean;
  readyReplicas: number;
  /** The workspace's URL: a path on this origin, or (subdomain mode) its own origin; null when it has none. */
  url: string | null;
  created: string | null;
  message: string;
  managed: boolean;
  /** spec.stopped: asked to stop (the phase follows once the pod is gone). */
  stopped?: boolean;
  /** Login of the person who launched it (null: unrecorded; only admins see those). */
  owner?: string | null;
  idle?: IdleInfo | null;
  conditions?: Condition[];
}

export interface PortSpec {
  name?: string;
  containerPort: number;
  protocol?: string;
}

export interface EnvVarSpec {
  name: string;
  value?: string;
  valueFrom?: unknown;
}

export interface ContainerView {
  name: string;
  ready: boolean;
  restarts: number;
  state: string;
  reason: string;
  message: string;
}

export interface PodView {
  name: string;
  phase: string;
  ready: boolean;
  terminating: boolean;
  node: string | null;
  podIP: string | null;
  created: string | null;
  containers: ContainerView[];
}

export interface EventView {
  type: string;
  reason: string;
  message: string;
  pod: string;
  count: number;
  firstTime: string | null;
  lastTime: string;
  source: string;
}

export interface ServerDetail extends ServerSummary {
  namespace: string;
  cluster: string;
  labels: Record<string, string>;
  spec: {
    image: string;
    env?: EnvVarSpec[];
    ports?: PortSpec[];
    args?: string[];
    command?: string[];
    resources?: ResourcesSpec;
    labels?: Record<string, string>;
    stopped?: boolean;
    storage?: StorageSpec;
  };
  status: Record<string, unknown>;
  conditions: Condition[];
  ports: PortSpec[];
  proxyUrl: string | null;
  serviceDNS: string | null;
  hasPassword: boolean;
  pods: PodView[];
  events: EventView[];
}

export interface ImagePreset {
  id: string;
  name: string;
  image: string;
  description: string;
  kind: string;
  ports?: PortSpec[];
  args?: string[];
}

export interface ImageDefaults {
  image: string;
  kind: string;
  ports: PortSpec[];
  env: { name: string; value: string }[];
  args: string[];
  command: string[];
  passwordEnv: string | null;
  homePath?: string;
  /** The per-kind defaults a launch without "resources" gets (WORKSPACE_*_RESOURCES). */
  resources?: ResourcesSpec;
  /** The home volume a launch without "storage" gets; size null: ephemeral. */
  storage?: { size: string | null; storageClassName: string | null; mountPath: string };
}

export interface JobRequest {
  image: string;
  name?: string;
  env?: EnvVarSpec[];
  ports?: PortSpec[];
  args?: string[];
  command?: string[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  labels?: Record<string, string>;
  storage?: StorageSpec | "none";
}

/** PATCH /api/servers/{id}: each key given replaces that field; null removes it
 * (resources: null means the image kind's defaults again). */
export interface ServerChange {
  image?: string;
  env?: EnvVarSpec[] | null;
  args?: string[] | null;
  command?: string[] | null;
  resources?: ResourcesSpec | null;
}

export interface JobCreated {
  id: string;
  url: string;
}

export interface StopAllResult {
  deleted: string[];
  failed?: { id: string; error: string }[];
}

/** The JSON error body of every Host App failure. */
export interface ErrorBody {
  error: string;
  message: string;
  request_id?: string;
  field?: string;
}
