"""The Workspace spec: parsing and validation that mirrors the CRD's OpenAPI schema.

The API validates requests with ``parse_spec`` before calling Kubernetes so that a bad
request gets a 400 naming the field instead of an opaque API-server error, and so that
nothing the user sent is silently pruned (unknown fields are rejected, not dropped). The
limits and patterns here are the ones in ``crds/workspaces.guildnet.io.yaml``;
``tests/unit/test_operator_crd.py`` checks that the two agree.

``WorkspaceSpec.to_dict`` produces exactly what the API server stores for the parsed input
(defaults applied, empty lists/maps omitted), so ``parse_spec(s.to_dict()) == s`` and a spec
read back from the cluster equals the one that was sent.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import attrs

from guildnet.operator.constants import LABEL_MANAGED_BY, LABEL_NAME

# --- limits and patterns shared with the CRD (keep in sync; the CRD test compares them) ---
MAX_NAME_LEN: Final = 53  # leaves room for "-password" and stays a DNS label
NAME_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"  # DNS-1035: Services need a leading letter
IMAGE_MAX_LEN: Final = 512
IMAGE_PATTERN: Final = r"^\S+$"
ENV_MAX_ITEMS: Final = 200
ENV_NAME_MAX_LEN: Final = 253
ENV_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
SECRET_NAME_MAX_LEN: Final = 253
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_MAX_LEN: Final = 253
# A ConfigMap/Secret key: not ".", "..", nor starting with "..".
SECRET_KEY_PATTERN: Final = r"^([-_a-zA-Z0-9]|\.[-_a-zA-Z0-9])[-._a-zA-Z0-9]*$"
PORTS_MAX_ITEMS: Final = 20
PORT_NAME_MAX_LEN: Final = 15
# IANA_SVC_NAME: lower-case alphanumerics and single inner hyphens, with at least one letter.
PORT_NAME_PATTERN: Final = r"^([a-z0-9]+-)*[0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$"
PROTOCOLS: Final = ("TCP", "UDP", "SCTP")
ARGS_MAX_ITEMS: Final = 256
RESOURCES_MAX_PROPERTIES: Final = 16
RESOURCE_NAME_MAX_LEN: Final = 253
RESOURCE_NAME_PATTERN: Final = (
    r"^(cpu|memory|ephemeral-storage"
    r"|[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$"
)
QUANTITY_PATTERN: Final = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY_MAX_LEN: Final = 64
# Everything but cpu is counted in whole units; a plain syntax keeps the CRD's CEL rule and
# this module in exact agreement (the CEL quantity library's isInteger rejects "1000m").
WHOLE_QUANTITY_PATTERN: Final = r"^[0-9]+([KMGTPE]i|[kMGTPE])?$"
LABELS_MAX_PROPERTIES: Final = 64
LABEL_KEY_MAX_LEN: Final = 317  # 253 prefix + "/" + 63 name
LABEL_KEY_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_PREFIX_MAX_LEN: Final = 253
LABEL_VALUE_MAX_LEN: Final = 63
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
RESERVED_LABEL_PREFIX: Final = "guildnet.io/"
RESERVED_LABEL_KEYS: Final = (LABEL_MANAGED_BY, LABEL_NAME)
EXPOSURE_TYPES: Final = ("ClusterIP", "LoadBalancer", "Ingress")
PATH_MODES: Final = ("strip", "preserve")
HOST_MAX_LEN: Final = 253
IDLE_TIMEOUT_MAX: Final = 30 * 86400  # seconds; ``workspaces.idle.MAX_IDLE_TIMEOUT``

_SPEC_KEYS: Final = frozenset(
    {
        "image", "env", "ports", "args", "command", "resources", "labels", "exposure", "proxy",
        "stopped", "storage",
    }
)  # fmt: skip
MOUNT_PATH_MAX_LEN: Final = 1024
# An absolute path, no "..", ":" or NUL (what a volumeMount accepts, minus surprises).
MOUNT_PATH_PATTERN: Final = r"^(/[^/:\x00]+)+$"
SIZE_PATTERN: Final = r"^[1-9][0-9]*([KMGTPE]i|[kMGTPE])?$"  # whole, more than zero
STORAGE_CLASS_MAX_LEN: Final = 253

#: Idle culling (``workspaces.idle``): ``idleTimeoutSeconds`` overrides WORKSPACE_IDLE_TIMEOUT.
_IDLE_KEYS: Final = frozenset({"idleTimeoutSeconds"})


class SpecError(ValueError):
    """A spec field is invalid; ``field`` is its dotted path, e.g. ``ports[0].containerPort``."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@attrs.frozen
class SecretKeyRef:
    name: str
    key: str
    optional: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "key": self.key}
        if self.optional is not None:
            out["optional"] = self.optional
        return out


@attrs.frozen
class EnvVar:
    """``value`` and ``secret_key_ref`` are exclusive; both None means an empty value."""

    name: str
    value: str | None = None
    secret_key_ref: SecretKeyRef | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.value is not None:
            out["value"] = self.value
        if self.secret_key_ref is not None:
            out["valueFrom"] = {"secretKeyRef": self.secret_key_ref.to_dict()}
        return out


@attrs.frozen
class Port:
    container_port: int
    name: str | None = None
    protocol: str = "TCP"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        out["containerPort"] = self.container_port
        out["protocol"] = self.protocol
        return out


Quantity = int | str


@attrs.frozen
class Resources:
    """Pairs sorted by resource name, so equal maps compare (and hash) equal."""

    requests: tuple[tuple[str, Quantity], ...] = ()
    limits: tuple[tuple[str, Quantity], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


@attrs.frozen
class Exposure:
    type: str
    host: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.host is not None:
            out["host"] = self.host
        return out


@attrs.frozen
class ProxySettings:
    """How the Host App's proxy talks to the workspace.

    ``path_mode``: ``strip`` sends the path below the workspace's prefix (``/lab``), for
    apps that serve from ``/`` (code-server, most web apps); ``preserve`` sends the full
    public path (``/proxy/server/ws1/lab``), for apps told their base URL (Jupyter).
    None: the image kind decides (``images.ImageDefaults.path_mode``).
    """

    path_mode: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"pathMode": self.path_mode} if self.path_mode is not None else {}


@attrs.frozen
class Storage:
    """The home volume: a PersistentVolumeClaim unless ``ephemeral`` (an emptyDir).

    None fields take the Host App's defaults (WORKSPACE_STORAGE_SIZE, WORKSPACE_STORAGE_CLASS,
    the image kind's home directory). The API accepts ``"storage": "none"`` for
    ``{"ephemeral": true}``.
    """

    ephemeral: bool = False
    size: str | None = None
    storage_class_name: str | None = None
    mount_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ephemeral:
            out["ephemeral"] = True
        if self.size is not None:
            out["size"] = self.size
        if self.storage_class_name is not None:
            out["storageClassName"] = self.storage_class_name
        if self.mount_path is not None:
            out["mountPath"] = self.mount_path
        return out


@attrs.frozen
class WorkspaceSpec:
    """A validated Workspace spec. Empty lists/maps are normalised to "absent"."""

    image: str
    env: tuple[EnvVar, ...] = ()
    ports: tuple[Port, ...] = ()
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    resources: Resources | None = None
    labels: tuple[tuple[str, str], ...] = ()
    exposure: Exposure | None = None
    proxy: ProxySettings | None = None
    #: Scaled to zero: the volume, Secret and Service stay (``POST /api/servers/{id}/stop``).
    stopped: bool = False
    storage: Storage | None = None
    #: Seconds without use before the idle culler stops it (0: never; None: the knob).
    idle_timeout_seconds: int | None = None

    @property
    def labels_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def env_value(self, name: str) -> EnvVar | None:
        for var in self.env:
            if var.name == name:
                return var
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.image}
        if self.env:
            out["env"] = [e.to_dict() for e in self.env]
        if self.ports:
            out["ports"] = [p.to_dict() for p in self.ports]
        if self.args:
            out["args"] = list(self.args)
        if self.command:
            out["command"] = list(self.command)
        if self.resources is not None:
            res = self.resources.to_dict()
            if res:
                out["resources"] = res
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.exposure is not None:
            out["exposure"] = self.exposure.to_dict()
        if self.proxy is not None:
            out["proxy"] = self.proxy.to_dict()
        if self.stopped:
            out["stopped"] = True
        if self.storage is not None:
            out["storage"] = self.storage.to_dict()
        if self.idle_timeout_seconds is not None:
            out["idleTimeoutSeconds"] = self.idle_timeout_seconds
        return out


# --- parsing ---


def _match(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _str(value: Any, field: str, *, max_len: int | None = None, min_len: int = 0) -> str:
    if not isinstance(value, str):
        raise SpecError(field, "must be a string")
    if len(value) < min_len:
        raise SpecError(field, "must not be empty")
    if max_len is not None and len(value) > max_len:
        raise SpecError(field, f"must be at most {max_len} characters")
    return value


def _obj(value: Any, field: str, allowed: frozenset[str] | None = None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(field, "must be an object")
    for key in value:
        if not isinstance(key, str):
            raise SpecError(field, "keys must be strings")
        if allowed is not None and key not in allowed:
            prefix = f"{field}." if field else ""
            raise SpecError(f"{prefix}{key}", "unknown field")
    # The API server drops nulls of non-nullable fields, so null means "absent" here too.
    return {k: v for k, v in value.items() if v is not None}


def _list(value: Any, field: str, max_items: int) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise SpecError(field, "must be a list")
    if len(value) > max_items:
        raise SpecError(field, f"must have at most {max_items} items")
    return value


def _int(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, "must be an integer")
    if not lo <= value <= hi:
        raise SpecError(field, f"must be between {lo} and {hi}")
    return value


def _parse_env(value: Any) -> tuple[EnvVar, ...]:
    items = _list(value, "env", ENV_MAX_ITEMS)
    out: list[EnvVar] = []
    seen: set[str] = set()
    for i, raw in enumerate(items):
        f = f"env[{i}]"
        item = _obj(raw, f, frozenset({"name", "value", "valueFrom"}))
        if "name" not in item:
            raise SpecError(f"{f}.name", "is required")
        name = _str(item["name"], f"{f}.name", max_len=ENV_NAME_MAX_LEN, min_len=1)
        if not _match(ENV_NAME_PATTERN, name):
            raise SpecError(
                f"{f}.name", "must be letters, digits and '_', not starting with a digit"
            )
        if name in seen:
            raise SpecError(f"{f}.name", f"duplicate environment variable {name!r}")
        seen.add(name)
        env_value = None
        if "value" in item:
            env_value = _str(item["value"], f"{f}.value")
        ref = None
        if "valueFrom" in item:
            if env_value is not None:
                raise SpecError(f"{f}.valueFrom", "cannot be used together with value")
            vf = _obj(item["valueFrom"], f"{f}.valueFrom", frozenset({"secretKeyRef"}))
            if "secretKeyRef" not in vf:
                raise SpecError(f"{f}.valueFrom.secretKeyRef", "is required")
            ref = _parse_secret_ref(vf["secretKeyRef"], f"{f}.valueFrom.secretKeyRef")
        out.append(EnvVar(name=name, value=env_value, secret_key_ref=ref))
    return tuple(out)


def _parse_secret_ref(value: Any, f: str) -> SecretKeyRef:
    ref = _obj(value, f, frozenset({"name", "key", "optional"}))
    for key in ("name", "key"):
        if key not in ref:
            raise SpecError(f"{f}.{key}", "is required")
    name = _str(ref["name"], f"{f}.name", max_len=SECRET_NAME_MAX_LEN, min_len=1)
    if not _match(DNS_SUBDOMAIN_PATTERN, name):
        raise SpecError(f"{f}.name", "must be a lower-case DNS subdomain")
    key = _str(ref["key"], f"{f}.key", max_len=SECRET_KEY_MAX_LEN, min_len=1)
    if not _match(SECRET_KEY_PATTERN, key):
        raise SpecError(
            f"{f}.key", "must be letters, digits, '-', '_' or '.', not '.' nor starting with '..'"
        )
    optional = None
    if "optional" in ref:
        optional = ref["optional"]
        if not isinstance(optional, bool):
            raise SpecError(f"{f}.optional", "must be a boolean")
    return SecretKeyRef(name=name, key=key, optional=optional)


def _parse_ports(value: Any) -> tuple[Port, ...]:
    items = _list(value, "ports", PORTS_MAX_ITEMS)
    out: list[Port] = []
    names: set[str] = set()
    keys: set[tuple[int, str]] = set()
    for i, raw in enumerate(items):
        f = f"ports[{i}]"
        item = _obj(raw, f, frozenset({"name", "containerPort", "protocol"}))
        if "containerPort" not in item:
            raise SpecError(f"{f}.containerPort", "is required")
        number = _int(item["containerPort"], f"{f}.containerPort", 1, 65535)
        name = None
        if "name" in item:
            name = _str(item["name"], f"{f}.name", max_len=PORT_NAME_MAX_LEN, min_len=1)
            if not _match(PORT_NAME_PATTERN, name):
                raise SpecError(
                    f"{f}.name",
                    "must be lower-case letters, digits and single inner '-', with a letter",
                )
            if name in names:
                raise SpecError(f"{f}.name", f"duplicate port name {name!r}")
            names.add(name)
        protocol = "TCP"
        if "protocol" in item:
            protocol = _str(item["protocol"], f"{f}.protocol")
            if protocol not in PROTOCOLS:
                raise SpecError(f"{f}.protocol", f"must be one of {', '.join(PROTOCOLS)}")
        if (number, protocol) in keys:
            raise SpecError(f"{f}.containerPort", f"duplicate port {number}/{protocol}")
        keys.add((number, protocol))
        out.append(Port(container_port=number, name=name, protocol=protocol))
    return tuple(out)


def _parse_strings(value: Any, field: str) -> tuple[str, ...]:
    items = _list(value, field, ARGS_MAX_ITEMS)
    return tuple(_str(v, f"{field}[{i}]") for i, v in enumerate(items))


_SUFFIX: Final = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip


def parse_quantity(value: Quantity) -> Decimal:
    """A Kubernetes resource quantity as a Decimal (to compare requests with limits)."""
    if isinstance(value, int):
        return Decimal(value)
    m = re.fullmatch(r"([0-9]*\.?[0-9]*)(.*)", value)
    if m is None or not _match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a quantity")
    number, suffix = m.group(1), m.group(2)
    if suffix[:1] in ("e", "E"):
        return Decimal(number) * (Decimal(10) ** Decimal(suffix[1:]))
    return Decimal(number) * _SUFFIX[suffix]


def _parse_quantities(value: Any, field: str) -> tuple[tuple[str, Quantity], ...]:
    amounts = _obj(value, field)
    if len(amounts) > RESOURCES_MAX_PROPERTIES:
        raise SpecError(field, f"must have at most {RESOURCES_MAX_PROPERTIES} entries")
    out: list[tuple[str, Quantity]] = []
    for key, amount in amounts.items():
        f = f"{field}.{key}"
        if (
            len(key) > RESOURCE_NAME_MAX_LEN
            or not _match(RESOURCE_NAME_PATTERN, key)
            or "kubernetes.io/" in key
        ):
            raise SpecError(
                f,
                "is not a resource name (cpu, memory, ephemeral-storage or <domain>/<name> "
                "outside kubernetes.io)",
            )
        if isinstance(amount, bool) or not isinstance(amount, int | str):
            raise SpecError(f, "must be an integer or a quantity string such as '500m' or '1Gi'")
        if isinstance(amount, int) and amount < 0:
            raise SpecError(f, "must not be negative")
        if isinstance(amount, str) and (
            len(amount) > QUANTITY_MAX_LEN or not _match(QUANTITY_PATTERN, amount)
        ):
            raise SpecError(f, "must be a quantity such as '500m', '2', '1Gi' or '512Mi'")
        if key != "cpu" and isinstance(amount, str) and not _match(WHOLE_QUANTITY_PATTERN, amount):
            raise SpecError(
                f, "must be a whole number such as '512Mi', '2Gi' or '4' (only cpu takes fractions)"
            )
        out.append((key, amount))
    return tuple(sorted(out))


def _exact_only(key: str) -> bool:
    """Extended resources (GPUs...) cannot be overcommitted: request == limit, whole numbers."""
    return "/" in key


def _parse_resources(value: Any) -> Resources | None:
    res = _obj(value, "resources", frozenset({"requests", "limits"}))
    requests = _parse_quantities(res["requests"], "resources.requests") if "requests" in res else ()
    limits = _parse_quantities(res["limits"], "resources.limits") if "limits" in res else ()
    capped = dict(limits)
    for key, request in requests:
        if key not in capped:
            if _exact_only(key):
                raise SpecError(f"resources.limits.{key}", "is required for extended resources")
            continue
        if _exact_only(key) and parse_quantity(request) != parse_quantity(capped[key]):
            raise SpecError(
                f"resources.requests.{key}",
                "must equal the limit for extended resources",
            )
        if parse_quantity(request) > parse_quantity(capped[key]):
            raise SpecError(f"resources.requests.{key}", "must not be greater than the limit")
    if not requests and not limits:
        return None
    return Resources(requests=requests, limits=limits)


def _parse_labels(value: Any) -> tuple[tuple[str, str], ...]:
    labels = _obj(value, "labels")
    if len(labels) > LABELS_MAX_PROPERTIES:
        raise SpecError("labels", f"must have at most {LABELS_MAX_PROPERTIES} entries")
    out: list[tuple[str, str]] = []
    for key, label_value in labels.items():
        f = f"labels.{key}"
        if (
            len(key) > LABEL_KEY_MAX_LEN
            or not _match(LABEL_KEY_PATTERN, key)
            or key.find("/") > LABEL_PREFIX_MAX_LEN
        ):
            raise SpecError(f, "is not a valid label key ([prefix/]name, name at most 63)")
        if key.startswith(RESERVED_LABEL_PREFIX) or key in RESERVED_LABEL_KEYS:
            raise SpecError(f, "is reserved for GuildNet")
        label_value = _str(label_value, f, max_len=LABEL_VALUE_MAX_LEN)
        if not _match(LABEL_VALUE_PATTERN, label_value):
            raise SpecError(f, "is not a valid label value")
        out.append((key, label_value))
    return tuple(sorted(out))


def _parse_exposure(value: Any) -> Exposure:
    exp = _obj(value, "exposure", frozenset({"type", "host"}))
    if "type" not in exp:
        raise SpecError("exposure.type", "is required")
    etype = _str(exp["type"], "exposure.type")
    if etype not in EXPOSURE_TYPES:
        raise SpecError("exposure.type", f"must be one of {', '.join(EXPOSURE_TYPES)}")
    host = None
    if "host" in exp:
        host = _str(exp["host"], "exposure.host", max_len=HOST_MAX_LEN, min_len=1)
        if not _match(DNS_SUBDOMAIN_PATTERN, host):
            raise SpecError("exposure.host", "must be a lower-case DNS name")
        if etype != "Ingress":
            raise SpecError("exposure.host", "is only allowed with type Ingress")
    return Exposure(type=etype, host=host)


def _parse_proxy(value: Any) -> ProxySettings | None:
    settings = _obj(value, "proxy", frozenset({"pathMode"}))
    mode = None
    if "pathMode" in settings:
        mode = _str(settings["pathMode"], "proxy.pathMode")
        if mode not in PATH_MODES:
            raise SpecError("proxy.pathMode", f"must be one of {', '.join(PATH_MODES)}")
    return ProxySettings(path_mode=mode) if mode is not None else None


def _parse_storage(value: Any) -> Storage | None:
    if value == "none":
        return Storage(ephemeral=True)
    if isinstance(value, str):
        raise SpecError("storage", 'must be an object or "none"')
    st = _obj(value, "storage", frozenset({"ephemeral", "size", "storageClassName", "mountPath"}))
    ephemeral = st.get("ephemeral", False)
    if not isinstance(ephemeral, bool):
        raise SpecError("storage.ephemeral", "must be a boolean")
    size = None
    if "size" in st:
        size = _str(st["size"], "storage.size", max_len=QUANTITY_MAX_LEN, min_len=1)
        if not _match(SIZE_PATTERN, size):
            raise SpecError("storage.size", "must be a size such as '10Gi' or '500Mi'")
        if ephemeral:
            raise SpecError("storage.size", "cannot be set for ephemeral storage")
    sc = None
    if "storageClassName" in st:
        sc = _str(st["storageClassName"], "storage.storageClassName", max_len=253, min_len=1)
        if not _match(DNS_SUBDOMAIN_PATTERN, sc):
            raise SpecError("storage.storageClassName", "must be a lower-case DNS subdomain")
        if ephemeral:
            raise SpecError("storage.storageClassName", "cannot be set for ephemeral storage")
    mount = None
    if "mountPath" in st:
        mount = _str(st["mountPath"], "storage.mountPath", max_len=MOUNT_PATH_MAX_LEN, min_len=1)
        if not _match(MOUNT_PATH_PATTERN, mount) or ".." in mount.split("/"):
            raise SpecError(
                "storage.mountPath", "must be an absolute path below / without '..' or ':'"
            )
        if mount == "/tmp":
            raise SpecError("storage.mountPath", "/tmp is the workspace's scratch space")
    out = Storage(ephemeral=ephemeral, size=size, storage_class_name=sc, mount_path=mount)
    return out if out != Storage() else None


def parse_spec(data: Mapping[str, Any]) -> WorkspaceSpec:
    """Validate a Workspace spec (exactly as the CRD schema does) and normalise it.

    Raises SpecError naming the first bad field. Unknown fields are errors: the API server
    would prune them silently, and a setting that vanishes is worse than a 400.
    """
    spec = _obj(data, "", _SPEC_KEYS | _IDLE_KEYS)
    if "image" not in spec:
        raise SpecError("image", "is required")
    image = _str(spec["image"], "image", max_len=IMAGE_MAX_LEN, min_len=1)
    if not _match(IMAGE_PATTERN, image):
        raise SpecError("image", "must not contain whitespace")
    stopped = spec.get("stopped", False)
    if not isinstance(stopped, bool):
        raise SpecError("stopped", "must be a boolean")
    return WorkspaceSpec(
        image=image,
        env=_parse_env(spec["env"]) if "env" in spec else (),
        ports=_parse_ports(spec["ports"]) if "ports" in spec else (),
        args=_parse_strings(spec["args"], "args") if "args" in spec else (),
        command=_parse_strings(spec["command"], "command") if "command" in spec else (),
        resources=_parse_resources(spec["resources"]) if "resources" in spec else None,
        labels=_parse_labels(spec["labels"]) if "labels" in spec else (),
        exposure=_parse_exposure(spec["exposure"]) if "exposure" in spec else None,
        proxy=_parse_proxy(spec["proxy"]) if "proxy" in spec else None,
        stopped=stopped,
        storage=_parse_storage(spec["storage"]) if "storage" in spec else None,
        idle_timeout_seconds=(
            _int(spec["idleTimeoutSeconds"], "idleTimeoutSeconds", 0, IDLE_TIMEOUT_MAX)
            if "idleTimeoutSeconds" in spec
            else None
        ),
    )


def validate_name(name: object) -> str:
    """A workspace name: a DNS-1035 label of at most 53 characters.

    DNS-1035 (leading letter) because the Service is named after the workspace; 53 so that
    derived names such as ``<name>-password`` stay valid labels.
    """
    if not isinstance(name, str) or not name:
        raise SpecError("name", "must be a non-empty string")
    if len(name) > MAX_NAME_LEN:
        raise SpecError("name", f"must be at most {MAX_NAME_LEN} characters")
    if not _match(NAME_PATTERN, name):
        raise SpecError(
            "name",
            "must be lower-case letters, digits and '-', start with a letter and end with a "
            "letter or digit",
        )
    return name


# Kubernetes' generateName alphabet: no vowels (no words), no look-alike characters.
_SUFFIX_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
_SUFFIX_LEN: Final = 5


def generate_name(image: str, *, suffix: str | None = None) -> str:
    """A fresh workspace name from an image, e.g. ``code-server-7f3k2``.

    The base is the image's repository name (no registry, tag or digest) made into a label;
    ``suffix`` is random unless given (tests).
    """
    ref = image.strip().split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    base = re.sub(r"[^a-z0-9]+", "-", last).strip("-")
    if not base or not base[0].isalpha():
        base = f"ws-{base}" if base else "workspace"
    base = base[: MAX_NAME_LEN - _SUFFIX_LEN - 1].rstrip("-")
    if suffix is None:
        suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(_SUFFIX_LEN))
    return validate_name(f"{base}-{suffix}")
