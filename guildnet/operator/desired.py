"""Workspace -> the Deployment, Service, Secret and Ingress manifests the operator applies.

Pure: a Workspace dict plus settings in, plain dict manifests out, ready for server-side
apply. Each manifest carries ``guildnet.io/desired-hash`` (sha256 of the manifest without
that annotation) so the controller can compare it with the live object's annotation and
skip the write when nothing changed: an unchanged Workspace makes zero writes.

Decisions (see the issue and lessons.md):

* Pods run hardened: non-root uid/gid 1000 (the code-server and Jupyter images' own user),
  seccomp RuntimeDefault, no privilege escalation, every capability dropped, no service
  account token, no service links (they leak other Services' addresses into the env).
* ``/tmp`` is an emptyDir so tools that need scratch space work whatever the image's
  ``/tmp`` permissions.
* Home volume (``home_volume``): one PersistentVolumeClaim ``<name>-home`` per workspace
  (owned by the Workspace and labelled like the rest, so deleting the Workspace deletes it
  unless the API first takes it out of the Workspace's ownership), mounted at the image
  kind's home (``images``) or ``spec.storage.mountPath``. ``fsGroup`` 1000 makes the
  kubelet give the pod's group write access to a fresh volume. The mount hides what the
  image put in that directory, which is what users expect of a home (JupyterHub does the
  same); ``"storage": "none"`` keeps the old ephemeral behaviour.
* Probes: HTTP GET on the first TCP port (redirects count as success) of the image's
  probe path (``/``; code-server ``/healthz``, which is not counted as use; Jupyter ``/api``,
  which answers without the token) under the app's
  base path: ``/`` in strip mode, the workspace's canonical prefix in preserve mode.
  Readiness from 5 s every 10 s; liveness only after 60 s and then 6 misses 20 s apart,
  so a slow IDE gets ~3 minutes before a restart. No startup probe.
* Path mode (``path_mode``): ``spec.proxy.pathMode``, else the image kind's default
  (Jupyter: preserve, everything else: strip). In preserve mode the app is told its
  canonical prefix (``paths.workspace_prefix`` of the operator's cluster id and the
  workspace name): Jupyter through ``NOTEBOOK_ARGS`` unless the user set that variable.
* ``spec.stopped``: the Deployment gets ``replicas: 0`` and nothing else changes, so the
  Secret (password), the Service (the proxy's route) and the volume outlive the pod and
  a start brings back the same workspace.
* A restart (``guildnet.io/restarted-at`` on the Workspace) becomes the pod template's
  ``kubectl.kubernetes.io/restartedAt``, as ``kubectl rollout restart`` does: one new pod.
* ``Recreate`` strategy: one replica, so a spec change replaces the pod rather than
  running two copies, and status then describes the new pod alone.
* An explicit ``spec.exposure.type`` wins over the cluster defaults (WORKSPACE_LB,
  WORKSPACE_DOMAIN); without it: LoadBalancer when WORKSPACE_LB, else an Ingress when
  WORKSPACE_DOMAIN is set, else ClusterIP.
* The password Secret uses ``data`` (base64), not ``stringData``: server-side apply tracks
  ``data`` but not the write-only ``stringData``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from guildnet.operator.constants import (
    ANNOTATION_DESIRED_HASH,
    ANNOTATION_GENERATION,
    ANNOTATION_RESTARTED_AT,
    API_VERSION,
    CONTAINER_NAME,
    KIND,
    PASSWORD_KEY,
    POD_RESTARTED_AT,
    home_claim_name,
    managed_labels,
    password_secret_name,
    selector_labels,
    tls_secret_name,
)
from guildnet.operator.images import PathMode, image_defaults
from guildnet.operator.spec import Port, WorkspaceSpec, parse_spec, validate_name
from guildnet.proxy.origins import WorkspaceOrigins
from guildnet.proxy.paths import DEFAULT_CLUSTER, workspace_prefix

RUN_AS: Final = 1000
READINESS: Final = {
    "initialDelaySeconds": 5,
    "periodSeconds": 10,
    "timeoutSeconds": 5,
    "successThreshold": 1,
    "failureThreshold": 6,
}
LIVENESS: Final = {
    "initialDelaySeconds": 60,
    "periodSeconds": 20,
    "timeoutSeconds": 5,
    "successThreshold": 1,
    "failureThreshold": 6,
}
PROGRESS_DEADLINE_S: Final = 600
DEFAULT_STORAGE_SIZE: Final = "10Gi"
HOME_VOLUME: Final = "home"
CONTROL_PLANE_TAINTS: Final = (
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
)
# Keep IDE WebSockets and long downloads open for a day (ingress-nginx and NGINX Inc).
INGRESS_ANNOTATIONS: Final = {
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "86400",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "86400",
    "nginx.ingress.kubernetes.io/proxy-body-size": "0",
    "nginx.ingress.kubernetes.io/proxy-buffering": "off",
    "nginx.org/proxy-read-timeout": "86400s",
    "nginx.org/proxy-send-timeout": "86400s",
}
METALLB_POOL_ANNOTATION: Final = "metallb.universe.tf/address-pool"
CERT_MANAGER_ANNOTATION: Final = "cert-manager.io/cluster-issuer"


class DesiredError(ValueError):
    """The Workspace cannot be turned into manifests (bad spec, missing password or host)."""


@attrs.frozen
class OperatorConfig:
    """The settings that shape manifests; a subset of guildnet.config.Settings."""

    namespace: str = "default"
    #: The cluster id this Host App knows the cluster by: it decides the canonical URL
    #: (``paths.workspace_prefix``) that preserve-mode apps are given as their base.
    cluster_id: str = DEFAULT_CLUSTER
    workspace_lb: bool = False
    workspace_lb_pool: str | None = None
    workspace_domain: str | None = None
    ingress_class_name: str | None = None
    cert_manager_issuer: str | None = None
    #: How workspaces are addressed: on their own origin (subdomain mode) an app's base
    #: path is "/" and its status URL that origin.
    origins: WorkspaceOrigins = attrs.field(factory=WorkspaceOrigins)
    #: The home volume's size when the spec gives none; None: workspaces are ephemeral
    #: unless their spec asks for a volume (WORKSPACE_STORAGE_SIZE=none).
    storage_size: str | None = DEFAULT_STORAGE_SIZE
    #: The StorageClass when the spec gives none; None: the cluster's default class.
    storage_class: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> OperatorConfig:
        return cls(
            origins=WorkspaceOrigins.from_settings(settings),
            storage_size=getattr(settings, "workspace_storage_size", DEFAULT_STORAGE_SIZE),
            storage_class=getattr(settings, "workspace_storage_class", None),
            namespace=settings.namespace,
            workspace_lb=settings.workspace_lb,
            workspace_lb_pool=settings.workspace_lb_pool,
            workspace_domain=settings.workspace_domain,
            ingress_class_name=settings.ingress_class_name,
            cert_manager_issuer=settings.cert_manager_issuer,
        )


@attrs.frozen
class Desired:
    """The manifests for one Workspace; ``secret``/``ingress`` are None when not wanted."""

    deployment: dict[str, Any]
    service: dict[str, Any]
    secret: dict[str, Any] | None = None
    ingress: dict[str, Any] | None = None
    volume: dict[str, Any] | None = None  # the home PersistentVolumeClaim

    def objects(self) -> list[dict[str, Any]]:
        """Non-None manifests in apply order (Secret and volume before the pods using them)."""
        order = (self.secret, self.volume, self.deployment, self.service, self.ingress)
        return [o for o in order if o]


@attrs.frozen
class HomeVolume:
    """The effective home volume: spec first, then the Host App's defaults."""

    claim: str
    size: str
    storage_class: str | None
    mount_path: str


def home_volume(name: str, spec: WorkspaceSpec, cfg: OperatorConfig) -> HomeVolume | None:
    """The workspace's persistent home, or None when it is ephemeral.

    Ephemeral: ``spec.storage.ephemeral`` (``"storage": "none"``), or no size anywhere
    (WORKSPACE_STORAGE_SIZE=none and none in the spec). Then nothing is mounted over the
    image's home and its files live as long as the container.
    """
    storage = spec.storage
    if storage is not None and storage.ephemeral:
        return None
    size = (storage.size if storage else None) or cfg.storage_size
    if size is None:
        return None
    return HomeVolume(
        claim=home_claim_name(name),
        size=size,
        storage_class=(storage.storage_class_name if storage else None) or cfg.storage_class,
        mount_path=(storage.mount_path if storage else None) or image_defaults(spec.image).home,
    )


# --- small helpers the controller, status and API share ---


def _spec_of(obj: Mapping[str, Any] | WorkspaceSpec) -> WorkspaceSpec:
    if isinstance(obj, WorkspaceSpec):
        return obj
    if "spec" in obj and isinstance(obj["spec"], Mapping):
        return parse_spec(obj["spec"])
    return parse_spec(obj)


def effective_ports(spec: WorkspaceSpec) -> tuple[Port, ...]:
    """The spec's ports, else the image's; every port named (Services need names)."""
    ports = spec.ports or image_defaults(spec.image).ports
    used = {p.name for p in ports if p.name}
    out: list[Port] = []
    for p in ports:
        name = p.name
        if name is None:
            for candidate in (f"{p.protocol.lower()}-{p.container_port}", f"p-{p.container_port}"):
                if candidate not in used:
                    name = candidate
                    break
            n = 0
            while name is None:
                candidate = f"p{n}-{p.container_port}"
                name = candidate if candidate not in used else None
                n += 1
            used.add(name)
        out.append(Port(p.container_port, name, p.protocol))
    return tuple(out)


def _http_port(ports: tuple[Port, ...]) -> Port:
    """The first TCP port (HTTP can only be there), else the first port."""
    return next((p for p in ports if p.protocol == "TCP"), ports[0])


def first_port(obj: Mapping[str, Any] | WorkspaceSpec) -> int:
    """The port probes, ``PORT`` and the proxy use: the first TCP port, spec or image default.

    Accepts a Workspace dict, a spec dict or a WorkspaceSpec.
    """
    return _http_port(effective_ports(_spec_of(obj))).container_port


def password_env(obj: Mapping[str, Any] | WorkspaceSpec) -> str | None:
    """The env var that gets the workspace Secret's password, or None if none is needed.

    None when the image needs no password or the user set that variable themselves. The
    controller generates a password (``secrets.token_urlsafe``) when this is not None.
    """
    spec = _spec_of(obj)
    name = image_defaults(spec.image).password_env
    if name is None or spec.env_value(name) is not None:
        return None
    return name


def password_required(obj: Mapping[str, Any] | WorkspaceSpec) -> bool:
    """code-server must never start without a password; Jupyter can fall back to its token."""
    spec = _spec_of(obj)
    return password_env(spec) is not None and image_defaults(spec.image).kind == "code-server"


def secret_password(secret: Mapping[str, Any] | None) -> str | None:
    """The password stored in a live (or desired) password Secret, if any."""
    if not secret:
        return None
    data = secret.get("data") or {}
    if PASSWORD_KEY in data:
        try:
            return base64.b64decode(data[PASSWORD_KEY]).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    value = (secret.get("stringData") or {}).get(PASSWORD_KEY)
    return value if isinstance(value, str) else None


def service_dns(ws: Mapping[str, Any], namespace: str | None = None) -> str:
    meta = ws.get("metadata") or {}
    ns = meta.get("namespace") or namespace or "default"
    return f"{meta['name']}.{ns}.svc.cluster.local"


def proxy_url(name: str, cluster_id: str = DEFAULT_CLUSTER) -> str:
    """The workspace's one canonical URL (``paths.workspace_prefix`` plus "/")."""
    return workspace_prefix(cluster_id, name) + "/"


def path_mode(obj: Mapping[str, Any] | WorkspaceSpec) -> PathMode:
    """``spec.proxy.pathMode`` if set, else the image kind's default (see images)."""
    spec = _spec_of(obj)
    if spec.proxy is not None and spec.proxy.path_mode == "preserve":
        return "preserve"
    if spec.proxy is not None and spec.proxy.path_mode == "strip":
        return "strip"
    return image_defaults(spec.image).path_mode


def base_path(spec: WorkspaceSpec, name: str, cluster_id: str, own_origin: bool = False) -> str:
    """The path the app serves under, without trailing slash ("" in strip mode, and on
    the workspace's own origin, where it is served at the root)."""
    if own_origin:
        return ""
    return workspace_prefix(cluster_id, name) if path_mode(spec) == "preserve" else ""


def jupyter_args(base: str) -> str:
    """``NOTEBOOK_ARGS`` for a Jupyter served under ``base`` (see images' notes)."""
    return f"--ServerApp.base_url={base}/ --ServerApp.trust_xheaders=True"


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of a manifest, ignoring its own hash annotation."""
    body = copy.deepcopy(dict(manifest))
    annotations = (body.get("metadata") or {}).get("annotations")
    if annotations:
        annotations.pop(ANNOTATION_DESIRED_HASH, None)
        if not annotations:
            del body["metadata"]["annotations"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _stamp(manifest: dict[str, Any]) -> dict[str, Any]:
    digest = manifest_hash(manifest)
    manifest["metadata"].setdefault("annotations", {})[ANNOTATION_DESIRED_HASH] = digest
    return manifest


# --- the builders ---


def _exposure(spec: WorkspaceSpec, cfg: OperatorConfig) -> str:
    if spec.exposure is not None:
        return spec.exposure.type
    if cfg.workspace_lb:
        return "LoadBalancer"
    if cfg.workspace_domain:
        return "Ingress"
    return "ClusterIP"


def _metadata(
    name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner],
    }


def _env(
    spec: WorkspaceSpec, port: int, pw_env: str | None, secret: str, base: str
) -> list[dict[str, Any]]:
    """Injected variables first (so user values can reference them with $(VAR)), then user's."""
    out: list[dict[str, Any]] = []
    defaults = image_defaults(spec.image)
    for key, value in defaults.env:
        if spec.env_value(key) is None:
            out.append({"name": key, "value": str(port) if key == "PORT" else value})
    if base and defaults.kind == "jupyter" and spec.env_value("NOTEBOOK_ARGS") is None:
        out.append({"name": "NOTEBOOK_ARGS", "value": jupyter_args(base)})
    if pw_env is not None:
        ref = {"secretKeyRef": {"name": secret, "key": PASSWORD_KEY}}
        out.append({"name": pw_env, "valueFrom": ref})
    out.extend(var.to_dict() for var in spec.env)
    return out


def _container(
    spec: WorkspaceSpec,
    ports: tuple[Port, ...],
    env: list[dict[str, Any]],
    base: str,
    home: HomeVolume | None = None,
) -> dict[str, Any]:
    defaults = image_defaults(spec.image)
    http = _http_port(ports)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "ports": [p.to_dict() for p in ports],
        "env": env,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if home is not None:
        container["volumeMounts"].append({"name": HOME_VOLUME, "mountPath": home.mount_path})
    if http.protocol == "TCP":
        path = base + defaults.probe_path
        probe = {"httpGet": {"path": path, "port": http.container_port, "scheme": "HTTP"}}
        container["readinessProbe"] = {**probe, **READINESS}
        container["livenessProbe"] = {**copy.deepcopy(probe), **LIVENESS}
    command = spec.command or defaults.command
    args = spec.args or defaults.args
    if command:
        container["command"] = list(command)
    if args:
        container["args"] = list(args)
    if spec.resources is not None:
        container["resources"] = spec.resources.to_dict()
    return container


def _deployment(
    name: str,
    meta: dict[str, Any],
    labels: dict[str, str],
    container: dict[str, Any],
    generation: int | None,
    stopped: bool = False,
    restarted_at: str | None = None,
    home: HomeVolume | None = None,
) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if home is not None:
        volumes.append({"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": home.claim}})
    if generation is not None:
        meta["annotations"] = {ANNOTATION_GENERATION: str(generation)}
    template_meta: dict[str, Any] = {"labels": dict(labels)}
    if restarted_at:
        template_meta["annotations"] = {POD_RESTARTED_AT: restarted_at}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 0 if stopped else 1,
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_S,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels(name)},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "tolerations": [
                        {"key": key, "operator": "Exists", "effect": "NoSchedule"}
                        for key in CONTROL_PLANE_TAINTS
                    ],
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _service(
    name: str, meta: dict[str, Any], ports: tuple[Port, ...], lb: bool, cfg: OperatorConfig
) -> dict[str, Any]:
    if lb and cfg.workspace_lb_pool:
        meta["annotations"] = {METALLB_POOL_ANNOTATION: cfg.workspace_lb_pool}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "LoadBalancer" if lb else "ClusterIP",
            "selector": selector_labels(name),
            "ports": [
                {
                    "name": p.name,
                    "port": p.container_port,
                    "targetPort": p.container_port,
                    "protocol": p.protocol,
                }
                for p in ports
            ],
        },
    }


def _ingress(
    name: str, meta: dict[str, Any], host: str, port: int, cfg: OperatorConfig
) -> dict[str, Any]:
    annotations = dict(INGRESS_ANNOTATIONS)
    spec: dict[str, Any] = {}
    if cfg.ingress_class_name:
        spec["ingressClassName"] = cfg.ingress_class_name
    if cfg.cert_manager_issuer:
        annotations[CERT_MANAGER_ANNOTATION] = cfg.cert_manager_issuer
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret_name(name)}]
    backend = {"service": {"name": name, "port": {"number": port}}}
    spec["rules"] = [
        {
            "host": host,
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
        }
    ]
    meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def _claim(meta: dict[str, Any], home: HomeVolume) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": home.size}},
    }
    if home.storage_class:
        spec["storageClassName"] = home.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def _secret(meta: dict[str, Any], password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {PASSWORD_KEY: base64.b64encode(password.encode()).decode()},
    }


def desired_objects(ws: Mapping[str, Any], cfg: OperatorConfig, password: str | None) -> Desired:
    """Build every manifest for Workspace ``ws`` (the whole object as a dict).

    ``password`` is the workspace's password (the controller generates it once and then
    reuses the stored one); it is required when ``password_required(ws)``. Raises
    DesiredError (a ValueError; SpecError for a bad spec) when no manifests can be built.
    """
    meta = ws.get("metadata") or {}
    name = validate_name(meta.get("name"))
    namespace = meta.get("namespace") or cfg.namespace
    uid = meta.get("uid")
    if not uid:
        raise DesiredError("the Workspace has no metadata.uid (it must exist before its parts)")
    spec = parse_spec(ws.get("spec") or {})
    generation = meta.get("generation")

    owner = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    # GuildNet's keys last: a user label can never retarget selectors or ownership.
    labels = {**spec.labels_dict, **managed_labels(name)}

    def md(obj_name: str) -> dict[str, Any]:
        return _metadata(obj_name, namespace, labels, owner)

    ports = effective_ports(spec)
    http = _http_port(ports)
    pw_env = password_env(spec)
    secret = None
    if pw_env is not None:
        if password is None:
            if password_required(spec):
                raise DesiredError(f"{name}: code-server needs a password and none was given")
            pw_env = None
        else:
            secret = _stamp(_secret(md(password_secret_name(name)), password))
    base = base_path(spec, name, cfg.cluster_id, cfg.origins.subdomain)
    env = _env(spec, http.container_port, pw_env, password_secret_name(name), base)
    home = home_volume(name, spec, cfg)
    container = _container(spec, ports, env, base, home)
    volume = _stamp(_claim(md(home.claim), home)) if home is not None else None
    deployment = _stamp(
        _deployment(
            name,
            md(name),
            labels,
            container,
            generation,
            stopped=spec.stopped,
            restarted_at=(meta.get("annotations") or {}).get(ANNOTATION_RESTARTED_AT),
            home=home,
        )
    )

    exposure = _exposure(spec, cfg)
    service = _stamp(_service(name, md(name), ports, exposure == "LoadBalancer", cfg))
    ingress = None
    if exposure == "Ingress":
        host = spec.exposure.host if spec.exposure is not None else None
        if host is None and cfg.workspace_domain:
            host = f"{name}.{cfg.workspace_domain}"
        if host is None:
            raise DesiredError(
                f"{name}: an Ingress needs spec.exposure.host or WORKSPACE_DOMAIN to be set"
            )
        ingress = _stamp(_ingress(name, md(name), host, http.container_port, cfg))
    return Desired(
        deployment=deployment, service=service, secret=secret, ingress=ingress, volume=volume
    )
