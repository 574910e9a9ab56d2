"""Raw connections to a cluster's API server, built from its ``kubernetes`` Configuration.

The ``kubernetes`` client speaks to the API server through urllib3 in threads; streaming
upgrades (port-forward, and pod proxy for WebSockets) want a Twisted connection instead,
so this turns the same Configuration (server URL, CA, client certificate, token, HTTP
proxy) into what Twisted needs. Reading key files and running token refresh hooks
(exec plugins) block, so ``api_server`` and ``ApiServer.authorization`` run in a thread.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
from twisted.internet import ssl

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class ApiServerError(ValueError):
    """The Configuration cannot be turned into a raw connection (the message says why)."""


@attrs.frozen(eq=False)
class ApiServer:
    """Where and how to open a raw connection to one API server."""

    scheme: str
    host: str
    port: int
    base_path: str  # "" or "/prefix" (a URL path in front of /api, e.g. Rancher)
    tls: Any  # an IOpenSSLClientConnectionCreator or context factory; None for http
    proxy: tuple[str, int] | None = None  # an HTTP proxy reached with CONNECT
    proxy_authorization: bytes | None = None
    configuration: Any = None

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def authorization(self) -> bytes | None:
        """The Authorization header value (blocking: runs the token refresh hook)."""
        cfg = self.configuration
        if cfg is None:
            return None
        value = cfg.get_api_key_with_prefix("authorization")
        if not value and (cfg.username or cfg.password):
            value = cfg.get_basic_auth_token()
        return value.encode("latin-1") if value else None


def api_server(configuration: Any) -> ApiServer:
    """An ApiServer for a ``kubernetes.client.Configuration`` (blocking: reads files)."""
    url = urlsplit(str(configuration.host))
    scheme = url.scheme.lower()
    if scheme not in ("http", "https") or not url.hostname:
        raise ApiServerError(f"API server URL {configuration.host!r} is not http(s)://host")
    port = url.port or (443 if scheme == "https" else 80)
    proxy, proxy_auth = _proxy(configuration)
    tls = _tls(configuration, url.hostname) if scheme == "https" else None
    return ApiServer(
        scheme=scheme,
        host=url.hostname,
        port=port,
        base_path=url.path.rstrip("/"),
        tls=tls,
        proxy=proxy,
        proxy_authorization=proxy_auth,
        configuration=configuration,
    )


def _proxy(cfg: Any) -> tuple[tuple[str, int] | None, bytes | None]:
    if not getattr(cfg, "proxy", None):
        return None, None
    url = urlsplit(str(cfg.proxy))
    if url.scheme.lower() != "http" or not url.hostname:
        raise ApiServerError("only http:// proxies are supported for streaming API calls")
    auth = None
    if url.username is not None:
        creds = f"{unquote(url.username)}:{unquote(url.password or '')}".encode()
        auth = b"Basic " + base64.b64encode(creds)
    return (url.hostname, url.port or 80), auth


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ApiServerError(f"cannot read {path}: {e.strerror}") from None


def _tls(cfg: Any, hostname: str) -> Any:
    client: ssl.PrivateCertificate | None = None
    if cfg.cert_file and cfg.key_file:
        client = ssl.PrivateCertificate.loadPEM(_read(cfg.key_file) + b"\n" + _read(cfg.cert_file))
    if not cfg.verify_ssl:
        if client is None:
            return ssl.CertificateOptions(verify=False)
        return ssl.CertificateOptions(
            privateKey=client.privateKey.original, certificate=client.original, verify=False
        )
    if cfg.ssl_ca_cert:
        pems = _PEM_CERT.findall(_read(cfg.ssl_ca_cert))
        if not pems:
            raise ApiServerError(f"no certificate in {cfg.ssl_ca_cert}")
        trust: Any = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(p) for p in pems])
    else:
        trust = ssl.platformTrust()
    if cfg.assert_hostname is False:  # verify the chain only, as the kubernetes client does
        extra: dict[str, Any] = {}
        if client is not None:
            extra = {"privateKey": client.privateKey.original, "certificate": client.original}
        return ssl.CertificateOptions(trustRoot=trust, **extra)
    server_name = (getattr(cfg, "tls_server_name", None) or hostname).strip("[]")
    return ssl.optionsForClientTLS(server_name, trustRoot=trust, clientCertificate=client)
