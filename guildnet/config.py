"""Typed, immutable settings read from the environment and twistd options.

Every knob is parsed here, once, so that the rest of the program never reads
``os.environ`` and a malformed value stops start-up with one clear line that
names the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from guildnet.auth.identity import Role
from guildnet.auth.roles import EMPTY_POLICY, Policy, load_policy, parse_role

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})


class ConfigError(ValueError):
    """A configuration value is malformed; ``str()`` is the one-line message."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


@attrs.frozen
class ListenAddress:
    """Where the HTTPS listener binds; ``host`` is always an IP literal."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_bool(value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"unknown boolean word {value!r} (use true/false, yes/no, on/off, 1/0)")


def parse_port(value: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"port {value!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range (1-65535)")
    return port


def parse_listen(value: str) -> ListenAddress:
    """Parse ``host:port``, ``[v6]:port`` or ``:port`` (all interfaces)."""
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{value!r} is not [ipv6]:port")
        host, port_text = text[1:end], text[end + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{value!r} is not host:port")
        if ":" in host:
            raise ValueError(f"{value!r}: put an IPv6 address in brackets, [addr]:port")
    port = parse_port(port_text)
    if host == "":
        host = "0.0.0.0"
    elif host == "localhost":
        host = "127.0.0.1"
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"host {host!r} is not an IP address or 'localhost'") from None
    return ListenAddress(host, port)


def parse_hostport(value: str) -> tuple[str, int]:
    """``host:port`` where host is a DNS name or IP (``[v6]`` bracketed)."""
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{value!r} is not [ipv6]:port")
        host, port_text = text[1:end], text[end + 2 :]
        ipaddress.IPv6Address(host)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{value!r} is not host:port")
        if ":" in host:
            raise ValueError(f"{value!r}: put an IPv6 address in brackets, [addr]:port")
        if not (_is_ip(host) or (host.isascii() and _DNS_SUBDOMAIN.fullmatch(host.lower()))):
            raise ValueError(f"host {host!r} is not a DNS name or IP address")
    return host, parse_port(port_text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_url(value: str, *, origin_only: bool = False) -> str:
    """An absolute http(s) URL; with ``origin_only`` no path, query or fragment."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{value!r} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{value!r} has no host")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed")
    if "?" in text or "#" in text:
        raise ValueError(f"{value!r} must not have a query or fragment")
    if origin_only:
        if parts.path not in ("", "/"):
            raise ValueError(f"{value!r} must be an origin (scheme://host[:port]), without a path")
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"
        # Browsers omit the scheme's default port from Origin; so must we.
        if port == {"http": 80, "https": 443}[parts.scheme]:
            port = None
        return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return text.rstrip("/")


def parse_origin(value: str) -> str:
    return parse_url(value, origin_only=True)


def parse_dns_label(value: str) -> str:
    text = value.strip()
    if not _DNS_LABEL.fullmatch(text):
        raise ValueError(f"{value!r} is not a lower-case DNS label (a-z, 0-9, '-', max 63)")
    return text


def parse_dns_name(value: str) -> str:
    text = value.strip()
    text = text.lower().rstrip(".") if text.isascii() else ""
    if not _DNS_SUBDOMAIN.fullmatch(text):
        raise ValueError(f"{value!r} is not a DNS name")
    return text


def parse_path(value: str) -> Path:
    text = value.strip()
    if not text:
        raise ValueError("empty path")
    return Path(os.path.expanduser(text))


def parse_storage_size(value: str) -> str | None:
    """A volume size such as 10Gi, or none (no home volume by default)."""
    text = value.strip()
    if text.lower() in ("none", "0"):
        return None
    if not re.fullmatch(r"[1-9][0-9]*([KMGTPE]i|[kMGTPE])?", text):
        raise ValueError(f"{value!r} is not a size such as 10Gi or 500Mi (or none)")
    return text


def parse_resources(value: str) -> dict[str, Any]:
    """``requests.cpu=250m,limits.memory=2Gi,...`` as a spec ``resources`` object; none: {}."""
    from guildnet.operator.spec import SpecError, parse_spec

    text = value.strip()
    if text.lower() == "none":
        return {}
    out: dict[str, dict[str, str]] = {}
    for raw in text.split(","):
        item = raw.strip()
        key, sep, amount = item.partition("=")
        section, dot, resource = key.strip().partition(".")
        if not sep or not dot or section not in ("requests", "limits"):
            raise ValueError(f"{item!r} is not requests.<resource>=<amount> or limits.<...>")
        out.setdefault(section, {})[resource] = amount.strip()
    try:
        spec = parse_spec({"image": "x", "resources": out})
    except SpecError as e:
        raise ValueError(f"{e.field}: {e.message}") from None
    return spec.resources.to_dict() if spec.resources is not None else {}


def _comma_entries(value: str, check: Callable[[str], object], what: str) -> tuple[str, ...]:
    """Comma-separated entries, blanks skipped, each passed by ``check`` (else an error
    naming the entry and ``what`` it should have been)."""
    entries: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            check(entry)
        except ValueError:
            raise ValueError(f"entry {entry!r} is {what}") from None
        entries.append(entry)
    return tuple(entries)


def _network_or_hostport(entry: str) -> None:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        parse_hostport(entry)


def parse_allowlist(value: str) -> tuple[str, ...]:
    """Comma-separated CIDRs, IPs and host:port entries for the proxy allowlist."""
    return _comma_entries(value, _network_or_hostport, "neither a CIDR/IP nor host:port")


def parse_hostports(value: str) -> tuple[str, ...]:
    """Comma-separated ``host:port`` entries (``[v6]:port`` for IPv6)."""
    return _comma_entries(value, parse_hostport, "not host:port")


def parse_seconds(value: str) -> float:
    try:
        seconds = float(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 7 * 86400:
        raise ValueError(f"{seconds} out of range (0-604800 seconds)")
    return seconds


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([dhms])")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
MAX_DURATION = 30 * 86400


def parse_duration(value: str) -> float:
    """Seconds (``1800``) or a duration (``30m``, ``1h30m``, ``2d``), 0 to 30 days; 0 is off."""
    text = value.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        pos, seconds = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(
                f"{value!r} is not seconds or a duration such as 30m, 1h30m or 2d"
            ) from None
    if not 0 <= seconds <= MAX_DURATION:
        raise ValueError(f"{value!r} out of range (0 to 30 days)")
    return seconds


def parse_file(value: str) -> Path:
    path = parse_path(value)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a readable file")
    return path


def parse_connect_timeout(value: str) -> float:
    seconds = parse_seconds(value)
    if not 0.5 <= seconds <= 5:
        raise ValueError(f"{seconds} out of range (0.5-5 seconds)")
    return seconds


def parse_text(value: str) -> str:
    return value.strip()


def parse_workspace_origin(value: str) -> str:
    word = value.strip().lower()
    if word not in ("single", "subdomain"):
        raise ValueError(f"{value!r} is neither 'single' nor 'subdomain'")
    return word


def parse_tailnet_listen(value: str) -> ListenAddress | str | None:
    """``off`` (None), ``auto`` (this node's Tailscale addresses, port 443) or host:port."""
    word = value.strip().lower()
    if word in ("off", "false", "no", "0"):
        return None
    if word == "auto":
        return "auto"
    try:
        return parse_listen(value)
    except ValueError as e:
        raise ValueError(f"use off, auto or host:port ({e})") from None


def parse_whois_ttl(value: str) -> float:
    seconds = parse_seconds(value)
    if not 1 <= seconds <= 600:
        raise ValueError(f"{seconds} out of range (1-600 seconds)")
    return seconds


def parse_policy_file(value: str) -> Policy:
    """``GUILDNET_POLICY``: a YAML or JSON file of logins and tags -> roles."""
    return load_policy(parse_file(value))


@attrs.frozen
class Knob:
    """One configuration knob: its variable, twistd option, parser and help."""

    env: str
    option: str
    help: str
    parse: Callable[[str], Any]
    default: str | None


KNOBS: tuple[Knob, ...] = (
    Knob("LISTEN_LOCAL", "listen-local", "HTTPS bind address, host:port or [v6]:port.",
         parse_listen, "127.0.0.1:8090"),
    Knob("FRONTEND_ORIGIN", "frontend-origin",
         "The one origin allowed by CORS (default: https://<LISTEN_LOCAL>).", parse_origin, None),
    Knob("HOSTAPP_API_PROXY_URL", "api-proxy-url",
         "Base URL of a Kubernetes API proxy (e.g. kubectl proxy) used for all API calls.",
         parse_url, None),
    Knob("HOSTAPP_EMBED_OPERATOR", "embed-operator", "Run the embedded Workspace operator.",
         parse_bool, "true"),
    Knob("HOSTAPP_DISABLE_API_PROXY", "disable-api-proxy",
         "Never use the API server's pod proxy; dial Services directly.", parse_bool, "false"),
    Knob("HOSTAPP_USE_PORT_FORWARD", "use-port-forward",
         "Allow port-forwards as the last resort to reach a workspace.", parse_bool, "false"),
    Knob("K8S_NAMESPACE", "namespace", "Namespace for Workspaces.", parse_dns_label, "default"),
    Knob("WORKSPACE_LB", "workspace-lb", "Expose workspaces with LoadBalancer Services.",
         parse_bool, "false"),
    Knob("WORKSPACE_LB_POOL", "workspace-lb-pool", "MetalLB address pool for workspace LBs.",
         parse_text, None),
    Knob("WORKSPACE_DOMAIN", "workspace-domain",
         "Create an Ingress <name>.<domain> per workspace (when LB is off).", parse_dns_name,
         None),
    Knob("WORKSPACE_STORAGE_SIZE", "workspace-storage-size",
         "Home volume size of a new workspace (e.g. 10Gi); none: ephemeral unless its spec "
         "asks for a volume.", parse_storage_size, "10Gi"),
    Knob("WORKSPACE_STORAGE_CLASS", "workspace-storage-class",
         "StorageClass of home volumes (unset: the cluster's default class).",
         parse_dns_name, None),
    Knob("WORKSPACE_IDE_RESOURCES", "workspace-ide-resources",
         "Default resources of code-server and Jupyter workspaces: requests.cpu=..,"
         "requests.memory=..,limits.cpu=..,limits.memory=.. (none: BestEffort).",
         parse_resources, "requests.cpu=250m,requests.memory=512Mi,limits.cpu=2,limits.memory=2Gi"),
    Knob("WORKSPACE_APP_RESOURCES", "workspace-app-resources",
         "Default resources of other workspaces, as WORKSPACE_IDE_RESOURCES.",
         parse_resources, "requests.cpu=50m,requests.memory=64Mi,limits.cpu=1,limits.memory=512Mi"),
    Knob("INGRESS_CLASS_NAME", "ingress-class-name", "IngressClass for workspace Ingresses.",
         parse_text, None),
    Knob("CERT_MANAGER_ISSUER", "cert-manager-issuer",
         "cert-manager ClusterIssuer for workspace Ingress TLS.", parse_text, None),
    Knob("RETHINKDB_ADDR", "rethinkdb-addr", "Explicit RethinkDB host:port (skips discovery).",
         parse_hostport, None),
    Knob("RETHINKDB_SERVICE_NAME", "rethinkdb-service-name", "RethinkDB Service to discover.",
         parse_dns_label, "rethinkdb"),
    Knob("RETHINKDB_NAMESPACE", "rethinkdb-namespace",
         "Namespace of the RethinkDB Service (default: K8S_NAMESPACE).",
         parse_dns_label, None),
    Knob("RETHINKDB_USER", "rethinkdb-user", "RethinkDB user (RETHINKDB_SECRET overrides).",
         parse_text, "admin"),
    Knob("RETHINKDB_SECRET", "rethinkdb-secret",
         "Secret in RETHINKDB_NAMESPACE with the RethinkDB username/password.",
         parse_dns_name, None),
    Knob("RETHINKDB_TLS", "rethinkdb-tls", "Use TLS to RethinkDB (system trust roots).",
         parse_bool, "false"),
    Knob("RETHINKDB_CA_FILE", "rethinkdb-ca-file",
         "PEM CA that signed RethinkDB's certificate; implies RETHINKDB_TLS.", parse_file, None),
    Knob("RETHINKDB_CONNECT_TIMEOUT", "rethinkdb-connect-timeout",
         "Seconds one RethinkDB connection attempt may take (0.5-5).", parse_connect_timeout,
         "3"),
    Knob("RETHINKDB_PING_INTERVAL", "rethinkdb-ping-interval",
         "Seconds between RethinkDB health pings.", parse_seconds, "5"),
    Knob("WORKSPACE_ORIGIN", "workspace-origin",
         "single: workspaces under the Host App's origin (/proxy/server/<id>/); subdomain: "
         "each at the root of its own origin https://<id>--<cluster>.<WORKSPACE_ORIGIN_DOMAIN>.",
         parse_workspace_origin, "single"),
    Knob("WORKSPACE_ORIGIN_DOMAIN", "workspace-origin-domain",
         "The domain under which subdomain mode serves workspace origins (e.g. ws.localhost, "
         "ws.example.com: needs wildcard DNS and a wildcard certificate).", parse_dns_name,
         None),
    Knob("HOSTAPP_PROXY_ALLOWLIST", "proxy-allowlist",
         "Extra /proxy targets: comma-separated CIDRs, IPs and host:port entries.",
         parse_allowlist, ""),
    Knob("HOSTAPP_PROXY_PRESERVE_PATH", "proxy-preserve-path",
         "host:port targets of /proxy/<host:port>/ sent the full public path (apps told "
         "their base URL), comma-separated.", parse_hostports, ""),
    Knob("PORT_FORWARD_IDLE_TIMEOUT", "port-forward-idle-timeout",
         "Seconds an unused port-forward stays open.", parse_seconds, "600"),
    Knob("WORKSPACE_IDLE_TIMEOUT", "workspace-idle-timeout",
         "Stop a running workspace nobody used for this long: seconds or 30m, 1h30m, 2d "
         "(0: never; spec.idleTimeoutSeconds overrides).", parse_duration, "0"),
    Knob("WORKSPACE_IDLE_CHECK_INTERVAL", "workspace-idle-check-interval",
         "Seconds between idle-culling checks.", parse_seconds, "30"),
    Knob("METRICS_LISTEN", "metrics-listen",
         "Also serve /metrics over plain HTTP here, host:port (unset: HTTPS listener only).",
         parse_listen, None),
    Knob("TAILNET_LISTEN", "tailnet-listen",
         "Serve HTTPS to the tailnet: off, auto (this node's Tailscale addresses, port 443) or "
         "host:port (e.g. where a userspace-networking tailscaled forwards).",
         parse_tailnet_listen, "off"),
    Knob("TAILSCALE_SOCKET", "tailscale-socket", "tailscaled's LocalAPI unix socket.",
         parse_path, "/var/run/tailscale/tailscaled.sock"),
    Knob("TAILNET_SERVE_SOCKET", "tailnet-serve-socket",
         "Also listen (plain HTTP, mode 0600) on this unix socket for `tailscale serve`, "
         "trusting the identity headers it sets there.", parse_path, None),
    Knob("TAILNET_WHOIS_TTL", "tailnet-whois-ttl",
         "Seconds a tailnet peer's WhoIs answer is trusted before it is asked again (1-600).",
         parse_whois_ttl, "15"),
    Knob("LOCAL_ROLE", "local-role",
         "Role of every caller on the loopback listener: admin, user or none.", parse_role,
         "admin"),
    Knob("GUILDNET_POLICY", "policy",
         "YAML/JSON file mapping tailnet logins and tags to roles (when grants give none).",
         parse_policy_file, None),
    Knob("KUBECONFIG", "kubeconfig", "kubeconfig of the default cluster.", parse_path,
         "~/.guildnet/kubeconfig"),
    Knob("GUILDNET_STATE_DIR", "state-dir", "State directory (certificates, cluster state).",
         parse_path, "~/.guildnet/state"),
)  # fmt: skip


@attrs.frozen
class Settings:
    """Everything GuildNet is configured with; built once at start-up."""

    listen: ListenAddress
    frontend_origin: str
    api_proxy_url: str | None
    embed_operator: bool
    disable_api_proxy: bool
    use_port_forward: bool
    namespace: str
    workspace_lb: bool
    workspace_lb_pool: str | None
    workspace_domain: str | None
    ingress_class_name: str | None
    cert_manager_issuer: str | None
    rethinkdb_addr: tuple[str, int] | None
    rethinkdb_service_name: str
    rethinkdb_namespace: str
    kubeconfig: Path
    state_dir: Path
    rethinkdb_user: str = "admin"
    rethinkdb_password: str = attrs.field(default="", repr=False)
    rethinkdb_secret: str | None = None
    rethinkdb_tls: bool = False
    rethinkdb_ca_file: Path | None = None
    rethinkdb_connect_timeout: float = 3.0
    rethinkdb_ping_interval: float = 5.0
    proxy_allowlist: tuple[str, ...] = ()
    proxy_preserve_path: tuple[str, ...] = ()
    port_forward_idle_timeout: float = 600.0
    in_cluster: bool = False
    metrics_listen: ListenAddress | None = None
    workspace_origin: str = "single"
    workspace_origin_domain: str | None = None
    #: None (off), "auto", or an explicit address.
    tailnet_listen: ListenAddress | str | None = None
    tailscale_socket: Path = Path("/var/run/tailscale/tailscaled.sock")
    tailnet_whois_ttl: float = 15.0
    tailnet_serve_socket: Path | None = None
    workspace_storage_size: str | None = "10Gi"
    workspace_storage_class: str | None = None
    #: Default spec.resources per image kind ({} when the knob says none).
    workspace_ide_resources: dict[str, Any] = attrs.field(factory=dict, hash=False)
    workspace_app_resources: dict[str, Any] = attrs.field(factory=dict, hash=False)
    local_role: Role = Role.ADMIN
    policy: Policy = EMPTY_POLICY
    workspace_idle_timeout: float = 0.0
    workspace_idle_check_interval: float = 30.0

    @property
    def certs_dir(self) -> Path:
        return self.state_dir / "certs"

    @property
    def clusters_dir(self) -> Path:
        return self.state_dir / "clusters"


def origin_of(listen: ListenAddress) -> str:
    """The browser origin for a listen address (wildcards become loopback)."""
    host = listen.host
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{listen.port}"


def load_settings(
    environ: Mapping[str, str], overrides: Mapping[str, str | None] | None = None
) -> Settings:
    """Build Settings from ``environ``; ``overrides`` (keyed by variable) win.

    Raises ConfigError naming the first malformed variable.
    """
    overrides = overrides or {}
    values: dict[str, Any] = {}
    for knob in KNOBS:
        raw = overrides.get(knob.env)
        if raw is None:
            raw = environ.get(knob.env)
        if raw is None or raw.strip() == "":
            raw = knob.default
        if raw is None:
            values[knob.env] = None
            continue
        try:
            values[knob.env] = knob.parse(raw)
        except ValueError as e:
            raise ConfigError(knob.env, str(e)) from None
    if values["FRONTEND_ORIGIN"] is None:
        values["FRONTEND_ORIGIN"] = origin_of(values["LISTEN_LOCAL"])
    _check_workspace_origin(
        values["WORKSPACE_ORIGIN"], values["WORKSPACE_ORIGIN_DOMAIN"], values["FRONTEND_ORIGIN"]
    )
    return Settings(
        listen=values["LISTEN_LOCAL"],
        frontend_origin=values["FRONTEND_ORIGIN"],
        api_proxy_url=values["HOSTAPP_API_PROXY_URL"],
        embed_operator=values["HOSTAPP_EMBED_OPERATOR"],
        disable_api_proxy=values["HOSTAPP_DISABLE_API_PROXY"],
        use_port_forward=values["HOSTAPP_USE_PORT_FORWARD"],
        namespace=values["K8S_NAMESPACE"],
        workspace_lb=values["WORKSPACE_LB"],
        workspace_lb_pool=values["WORKSPACE_LB_POOL"] or None,
        workspace_domain=values["WORKSPACE_DOMAIN"],
        ingress_class_name=values["INGRESS_CLASS_NAME"] or None,
        cert_manager_issuer=values["CERT_MANAGER_ISSUER"] or None,
        rethinkdb_addr=values["RETHINKDB_ADDR"],
        rethinkdb_service_name=values["RETHINKDB_SERVICE_NAME"],
        rethinkdb_namespace=values["RETHINKDB_NAMESPACE"] or values["K8S_NAMESPACE"],
        rethinkdb_user=values["RETHINKDB_USER"] or "admin",
        # Environment only (never a command-line option, which every user could read).
        rethinkdb_password=environ.get("RETHINKDB_PASSWORD", ""),
        rethinkdb_secret=values["RETHINKDB_SECRET"],
        rethinkdb_tls=values["RETHINKDB_TLS"],
        rethinkdb_ca_file=values["RETHINKDB_CA_FILE"],
        rethinkdb_connect_timeout=values["RETHINKDB_CONNECT_TIMEOUT"],
        rethinkdb_ping_interval=values["RETHINKDB_PING_INTERVAL"],
        proxy_allowlist=values["HOSTAPP_PROXY_ALLOWLIST"] or (),
        proxy_preserve_path=values["HOSTAPP_PROXY_PRESERVE_PATH"] or (),
        port_forward_idle_timeout=values["PORT_FORWARD_IDLE_TIMEOUT"],
        kubeconfig=values["KUBECONFIG"],
        state_dir=values["GUILDNET_STATE_DIR"],
        in_cluster=bool(environ.get("KUBERNETES_SERVICE_HOST")),
        metrics_listen=values["METRICS_LISTEN"],
        workspace_origin=values["WORKSPACE_ORIGIN"],
        workspace_origin_domain=values["WORKSPACE_ORIGIN_DOMAIN"],
        tailnet_listen=values["TAILNET_LISTEN"],
        tailscale_socket=values["TAILSCALE_SOCKET"],
        tailnet_whois_ttl=values["TAILNET_WHOIS_TTL"],
        tailnet_serve_socket=values["TAILNET_SERVE_SOCKET"],
        workspace_storage_size=values["WORKSPACE_STORAGE_SIZE"],
        workspace_storage_class=values["WORKSPACE_STORAGE_CLASS"],
        workspace_ide_resources=values["WORKSPACE_IDE_RESOURCES"],
        workspace_app_resources=values["WORKSPACE_APP_RESOURCES"],
        local_role=values["LOCAL_ROLE"],
        policy=values["GUILDNET_POLICY"] or EMPTY_POLICY,
        workspace_idle_timeout=values["WORKSPACE_IDLE_TIMEOUT"],
        workspace_idle_check_interval=values["WORKSPACE_IDLE_CHECK_INTERVAL"],
    )


def _check_workspace_origin(mode: str, domain: str | None, frontend_origin: str) -> None:
    """Subdomain mode needs a domain that is a name (not an address) and does not hold
    the Host App's own host (which would then be served as a workspace)."""
    if mode != "subdomain":
        return
    if not domain:
        raise ConfigError(
            "WORKSPACE_ORIGIN_DOMAIN",
            "required when WORKSPACE_ORIGIN=subdomain (e.g. ws.localhost)",
        )
    if _is_ip(domain) or domain.replace(".", "").isdigit():
        raise ConfigError("WORKSPACE_ORIGIN_DOMAIN", f"{domain!r} is an address, not a DNS name")
    host = (urlsplit(frontend_origin).hostname or "").rstrip(".")
    if host.endswith("." + domain):
        raise ConfigError(
            "WORKSPACE_ORIGIN_DOMAIN",
            f"the Host App's own host {host!r} (FRONTEND_ORIGIN) is under {domain!r}: it "
            "would be served as a workspace origin",
        )
