"""Build a ``kubernetes`` client Configuration for one cluster.

Three sources, in order: an explicit API proxy URL (``kubectl proxy``), a
kubeconfig, or the in-cluster service account. System proxies from the
environment are honoured, except for hosts matched by NO_PROXY.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import yaml
from kubernetes import client, config


class KubeconfigError(ValueError):
    """The kubeconfig cannot be used; the message says why."""


@attrs.frozen
class ClusterSource:
    """Where one cluster's API comes from."""

    kind: str  # "kubeconfig" | "in-cluster" | "api-proxy"
    kubeconfig: Path | None = None
    api_proxy_url: str | None = None


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The HTTP(S) proxy to use for ``url``, or None when NO_PROXY matches it."""
    parts = urlsplit(url)
    env = {k.lower(): v for k, v in environ.items() if k.lower().endswith("_proxy")}
    proxy = env.get(f"{parts.scheme}_proxy") or env.get("all_proxy")
    if not proxy or not parts.hostname:
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    if _bypassed(host, env.get("no_proxy", "")):
        return None
    return proxy


def _bypassed(host: str, no_proxy: str) -> bool:
    if not no_proxy:
        return False
    if no_proxy.strip() == "*":
        return True
    # urllib handles host suffixes and ports; it ignores CIDRs, which we add.
    if urllib.request.proxy_bypass_environment(host, {"no": no_proxy}):  # type: ignore[attr-defined]
        return True
    import ipaddress

    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        ip = ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        return False
    for entry in no_proxy.split(","):
        entry = entry.strip()
        if "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def parse_kubeconfig(text: str) -> dict[str, Any]:
    """Parse kubeconfig YAML and check it names a usable current context."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KubeconfigError(f"not valid YAML: {e}") from None
    if not isinstance(data, dict) or not data.get("clusters"):
        raise KubeconfigError("not a kubeconfig (no clusters)")
    contexts = {c.get("name"): c for c in data.get("contexts") or [] if isinstance(c, dict)}
    current = data.get("current-context") or (next(iter(contexts)) if contexts else None)
    if current not in contexts:
        raise KubeconfigError(f"current-context {current!r} is not among the contexts")
    return data


def server_of(data: Mapping[str, Any]) -> str | None:
    """The API server URL of the kubeconfig's current context."""
    contexts = {c.get("name"): c for c in data.get("contexts") or []}
    current = data.get("current-context") or next(iter(contexts), None)
    ctx = (contexts.get(current) or {}).get("context") or {}
    for c in data.get("clusters") or []:
        if c.get("name") == ctx.get("cluster"):
            server = (c.get("cluster") or {}).get("server")
            return str(server) if server else None
    return None


def build_configuration(
    source: ClusterSource, environ: Mapping[str, str], temp_dir: Path
) -> client.Configuration:
    """A fresh Configuration (never the client's global default) for ``source``."""
    cfg = client.Configuration()
    if source.kind == "api-proxy":
        assert source.api_proxy_url
        cfg.host = source.api_proxy_url
    elif source.kind == "in-cluster":
        loader = config.incluster_config.InClusterConfigLoader(
            token_filename=config.incluster_config.SERVICE_TOKEN_FILENAME,
            cert_filename=config.incluster_config.SERVICE_CERT_FILENAME,
        )
        loader.load_and_set(cfg)
    else:
        assert source.kubeconfig
        try:
            text = source.kubeconfig.read_text()
        except OSError as e:
            raise KubeconfigError(f"cannot read {source.kubeconfig}: {e.strerror}") from None
        data = parse_kubeconfig(text)
        temp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            config.load_kube_config_from_dict(
                data, client_configuration=cfg, temp_file_path=str(temp_dir)
            )
        except Exception as e:  # the loader raises many types for bad input
            raise KubeconfigError(f"unusable kubeconfig: {e}") from None
    cfg.proxy = proxy_for(cfg.host, environ)
    return cfg


def default_source(
    kubeconfig: Path, api_proxy_url: str | None, in_cluster: bool
) -> ClusterSource | None:
    """The default cluster: API proxy, else kubeconfig file, else in-cluster."""
    if api_proxy_url:
        return ClusterSource("api-proxy", api_proxy_url=api_proxy_url)
    if kubeconfig.is_file():
        return ClusterSource("kubeconfig", kubeconfig=kubeconfig)
    if in_cluster and os.path.exists(config.incluster_config.SERVICE_TOKEN_FILENAME):
        return ClusterSource("in-cluster")
    return None
