"""The Site and Request every HTTP exchange goes through.

Request ids, CORS, security headers, JSON 500s and the access log live here,
once, instead of in each handler.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import IResource

from guildnet.auth.access import user_header_value
from guildnet.auth.attribution import Refusal, strip_identity_headers
from guildnet.auth.identity import LOCAL_LOGIN, Identity, Source, identity_of, set_identity
from guildnet.http.errors import error_body
from guildnet.metrics import http as http_metrics
from guildnet.proxy.origins import WorkspaceOrigins, host_app_refusal

access_log = Logger(namespace="guildnet.access")
log = Logger(namespace="guildnet.http")

MAX_REQUEST_ID = 128
CORS_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_HEADERS = b"Content-Type, X-Request-Id, Last-Event-ID"


DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; frame-src 'self'; worker-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)


def host_csp(origins: WorkspaceOrigins) -> str:
    """The Host App's CSP: in subdomain mode its UI may frame the workspace origins."""
    if not origins.subdomain:
        return DEFAULT_CSP
    return DEFAULT_CSP.replace("frame-src 'self'", f"frame-src 'self' {origins.frame_source()}")


@attrs.frozen
class HttpPolicy:
    """Per-site header policy, derived from Settings."""

    frontend_origin: str
    csp: str = DEFAULT_CSP
    #: Subdomain mode: requests from workspace origins are refused (``host_app_refusal``).
    origins: WorkspaceOrigins = attrs.field(factory=WorkspaceOrigins)

    @classmethod
    def from_settings(cls, settings: Any) -> HttpPolicy:
        origins = WorkspaceOrigins.from_settings(settings)
        return cls(settings.frontend_origin, csp=host_csp(origins), origins=origins)


def accept_request_id(value: bytes | None) -> str | None:
    """The client's X-Request-Id if short and printable ASCII, else None."""
    if not value or len(value) > MAX_REQUEST_ID:
        return None
    if not all(0x21 <= b <= 0x7E for b in value):
        return None
    return value.decode("ascii")


_id_prefix = ""
_id_count = 0


def new_request_id() -> str:
    """16 hex digits, unique per process and, with a random prefix, across restarts.

    Request ids correlate log lines; they are not secrets, so they need no system
    call per request: a random per-process prefix and a counter.
    """
    global _id_prefix, _id_count
    _id_count = (_id_count + 1) & 0xFFFFFFFF
    if _id_count == 1 or not _id_prefix:
        _id_prefix = secrets.token_hex(4)
    return f"{_id_prefix}{_id_count:08x}"


def security_headers(policy: HttpPolicy) -> list[tuple[bytes, bytes]]:
    """Headers on every response the Host App itself produces."""
    return [
        (b"content-security-policy", policy.csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"strict-transport-security", b"max-age=31536000"),
        (b"x-frame-options", b"SAMEORIGIN"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]


def cors_headers(policy: HttpPolicy, origin: bytes | None) -> list[tuple[bytes, bytes]]:
    """CORS for exactly FRONTEND_ORIGIN, with credentials; nothing for others."""
    if origin is None or origin.decode("latin-1") != policy.frontend_origin:
        return []
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", b"X-Request-Id, X-GuildNet-Route"),
    ]


LOCAL_IDENTITY = Identity(Source.LOCAL, LOCAL_LOGIN, display_name="Local user")


def local_identity(request: Any) -> Identity | None:
    """The loopback listener's attribution: every caller is the machine's local user."""
    return LOCAL_IDENTITY


class Intercepted(Protocol):
    """A request taken over at its head (the proxy): it gets the body as it arrives."""

    def body_chunk(self, data: bytes) -> None: ...

    def body_end(self) -> None: ...


class RequestInterceptor(Protocol):
    """Looks at each request head; returns an Intercepted to take the request over."""

    def intercept(self, request: Any, length: int | None) -> Intercepted | None: ...


class GuildNetRequest(server.Request):
    """A Request that knows its id and start time and answers errors in JSON.

    When the Site has an ``interceptor`` (the proxy engine), it sees every request
    as soon as the head is parsed, before the body: a proxied upload is streamed
    upstream instead of being buffered into ``content`` first.
    """

    request_id: str = ""
    client_closed = False
    _intercepted: Intercepted | None = None
    #: The matched route's template (set by the router or the proxy), for /metrics.
    route_template: str = http_metrics.UNMATCHED
    #: Counted in flight; the access log ends the count exactly once.
    metered = False
    #: An SSE stream or upgraded connection: no latency sample for its whole life.
    streaming = False
    #: Set at the head when the listener would not attribute the request: answered
    #: with this error before any routing (and never handed to the proxy).
    refusal: Refusal | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The API speaks JSON: Twisted's form parsing would only buffer large
        # uploads and answer a malformed multipart body with a bare, id-less 400.
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(*args, **kwargs)
        self.started_at = time.monotonic()

    def _identify(self, site: Any) -> None:
        """Attach the listener's identity for this request (never from its headers)."""
        if identity_of(self) is None and self.refusal is None:
            identify = getattr(site, "identify", None)
            identity = identify(self) if identify is not None else None
            if isinstance(identity, Refusal):
                self.refusal = identity
            elif identity is not None:
                set_identity(self, identity)

    def gotLength(self, length: int | None) -> None:
        site = self.channel.site  # type: ignore[union-attr,attr-defined]
        # Who is asking: decided once, at the head, before the proxy or the router see
        # the request, from the connection (only the serve socket's attribution reads
        # the headers tailscaled set); then identity headers are dropped, so no handler
        # or upstream ever sees a client's.
        self._identify(site)
        strip_identity_headers(self.requestHeaders)
        if self.refusal is not None:
            super().gotLength(length)
            return
        interceptor = getattr(site, "interceptor", None)
        if interceptor is not None:
            self._intercepted = interceptor.intercept(self, length)
            if self._intercepted is not None:
                return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._intercepted is not None:
            self._intercepted.body_chunk(data)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._intercepted is not None:
            self._intercepted.body_end()
            return
        super().requestReceived(command, path, version)

    @property
    def policy(self) -> HttpPolicy:
        site = self.channel.site  # type: ignore[union-attr,attr-defined]
        assert isinstance(site, GuildNetSite)
        return site.policy

    def process(self) -> None:
        self._identify(self.channel.site)  # type: ignore[union-attr,attr-defined]
        self.metered = True
        http_metrics.started()
        self.request_id = accept_request_id(self.getHeader(b"x-request-id")) or new_request_id()
        self.setHeader(b"x-request-id", self.request_id.encode())
        policy = self.policy
        for name, value in security_headers(policy):
            self.setHeader(name, value)
        self.setHeader(b"vary", b"Origin")
        origin = self.getHeader(b"origin")
        if policy.origins.subdomain:
            refusal = host_app_refusal(
                policy.origins,
                origin=None if origin is None else origin.decode("latin-1"),
                fetch_site=_text(self.getHeader(b"sec-fetch-site")),
                fetch_mode=_text(self.getHeader(b"sec-fetch-mode")),
            )
            if refusal is not None:
                self.route_template = "workspace_origin_refused"
                self.write(error_body(self, 403, "workspace_origin_refused", refusal, "origin"))
                self.finish()
                return
        for name, value in cors_headers(policy, origin):
            self.setHeader(name, value)
        if self.refusal is not None:
            self._refuse(self.refusal)
            return
        if self.method == b"OPTIONS" and self.getHeader(b"access-control-request-method"):
            self._preflight(origin is not None and bool(cors_headers(policy, origin)))
            return
        super().process()

    def _refuse(self, refusal: Refusal) -> None:
        self.route_template = "refused"
        self.write(error_body(self, refusal.status, refusal.code, refusal.message))
        self.finish()

    def _preflight(self, allowed: bool) -> None:
        self.route_template = "cors_preflight"
        if not allowed:
            self.write(
                error_body(
                    self, 403, "cors_origin_denied", "origin is not the configured FRONTEND_ORIGIN"
                )
            )
        else:
            self.setResponseCode(204)
            self.setHeader(b"access-control-allow-methods", CORS_METHODS)
            self.setHeader(b"access-control-allow-headers", CORS_HEADERS)
            self.setHeader(b"access-control-max-age", b"600")
        self.finish()

    def connectionLost(self, reason: Failure) -> None:
        """Log requests whose client went away (SSE streams, aborted downloads) too."""
        site = getattr(self.channel, "site", None)
        unfinished = not self.finished and not self._disconnected
        super().connectionLost(reason)
        if unfinished and isinstance(site, GuildNetSite) and self.request_id:
            self.client_closed = True
            site.log(self)

    def processingFailed(self, reason: Failure) -> None:  # type: ignore[override]
        """A 500 in JSON; the traceback goes to the log, never to the client."""
        log.failure(
            "unhandled error in {method} {path} (request {request_id})",
            reason,
            method=self.method.decode("latin-1"),
            path=self.path.decode("latin-1"),
            request_id=self.request_id,
        )
        if self.finished or self._disconnected:
            return
        if self.startedWriting:
            self.loseConnection()  # type: ignore[no-untyped-call]
            return
        self.responseHeaders.removeHeader(b"content-length")
        body = error_body(
            self, 500, "internal_error", "internal error; the request id identifies it in the log"
        )
        self.setHeader(b"content-length", str(len(body)).encode())
        self.write(body)
        self.finish()


class GuildNetSite(server.Site):
    """One structured access-log line per request; no tracebacks to clients."""

    displayTracebacks = False

    def __init__(
        self,
        resource: IResource,
        policy: HttpPolicy,
        interceptor: RequestInterceptor | None = None,
        identify: Callable[[Any], Identity | Refusal | None] | None = local_identity,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, requestFactory=GuildNetRequest, **kwargs)
        self.policy = policy
        self.interceptor = interceptor
        #: Who each request is from (per listener: loopback = the local user); None
        #: leaves requests unidentified, which authorization refuses; a Refusal is
        #: answered before any routing (the tailnet listener's unknown peers).
        self.identify = identify
        self.noisy = False

    def log(self, request: Any) -> None:
        now = time.monotonic()
        started_at = getattr(request, "started_at", now)
        duration_ms = round((now - started_at) * 1000, 1)
        if getattr(request, "metered", False):
            request.metered = False
            _meter(request, now - started_at)
        request_id = getattr(request, "request_id", "")
        method = request.method.decode("latin-1", "replace")
        path = request.path.decode("latin-1", "replace")[:512]
        status = request.code
        sent = request.sentLength
        client = _client(request)
        # Who (the listener's identity, percent-encoded like X-GuildNet-User): an audit
        # trail of every action, "-" for unidentified callers.
        identity = identity_of(request)
        user = user_header_value(identity.login).decode("ascii") if identity else "-"
        outcome = getattr(request, "outcome", None) or (
            "client_closed" if getattr(request, "client_closed", False) else "complete"
        )
        # An upgraded connection (WebSocket) is logged when it closes: ``bytes`` went to
        # the client, ``bytes_in`` came from it, ``duration_ms`` is its whole life.
        received = getattr(request, "receivedLength", None)
        line = (
            f"access request_id={request_id} method={method} path={path} status={status} "
            f"duration_ms={duration_ms} bytes={sent} "
            + ("" if received is None else f"bytes_in={received} ")
            + f"client={client} user={user} outcome={outcome}"
        )
        # The text is built here, once, and handed over as a format without fields:
        # twisted.logger's formatter is pure Python and costs a good part of a proxied
        # request per field. The fields stay in the event for structured observers.
        # Logger.info, minus re-validating its constant level on every request.
        access_log.observer(
            {
                "log_logger": access_log,
                "log_level": LogLevel.info,
                "log_namespace": access_log.namespace,
                "log_source": access_log.source,
                "log_format": line.replace("{", "{{").replace("}", "}}"),
                "log_time": time.time(),
                "guildnet_text": line,  # the finished text, for guildnet.logformat
                "request_id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "bytes": sent,
                "bytes_in": received,
                "client": client,
                "user": user,
                "outcome": outcome,
            }
        )


def _meter(request: GuildNetRequest, seconds: float) -> None:
    """The request's /metrics samples (HTTP, and the proxy's when it was proxied)."""
    code = request.code
    streaming = request.streaming or code == 101
    http_metrics.finished(
        request.route_template, request.method, code, None if streaming else seconds
    )
    exchange: Any = request._intercepted
    if exchange is not None:
        exchange.record_metrics(code)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _client(request: Any) -> str:
    addr = request.getClientAddress()
    host = getattr(addr, "host", None)
    return str(host) if host else "-"
