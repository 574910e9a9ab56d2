"""Managed port-forwards: a local 127.0.0.1 port whose connections reach a pod's port.

The last-resort route to a workspace (HOSTAPP_USE_PORT_FORWARD), one manager per cluster
Instance. ``forward(ns, pod, port)`` returns a local address; every TCP connection
accepted there becomes one WebSocket session to the API server's ``pods/portforward``
speaking ``v4.channel.k8s.io`` (channel 0 data, channel 1 errors, each opened by a
two-byte port header), bridged to the local connection with flow control both ways.

Why our own Twisted client rather than ``kubernetes.stream.portforward``: that one runs a
``select`` thread per session and buffers without bound (``port.data +=`` whatever
arrives), so a slow reader grows memory and every open IDE connection pins a thread of
the Instance's small pool. Here the API server connection is a Twisted transport:
each side is registered as the other's producer, so a slow client pauses reading from
the API server and vice versa, no threads are held, and everything is closed by
``stopService``. Twisted's WebSocket client cannot send the ``Authorization`` and
``Sec-WebSocket-Protocol`` headers (and needs wsproto), so ``wsframes`` does the framing.

Half-close: v4 has no way to tell the pod "no more data from this side" (only closing
the whole session), and a local EOF looks the same whether the client half-closed or
closed. So after a local EOF, data from the pod still flows to the client, and the
session is closed once the pod has been silent for ``half_close_linger`` seconds (or
when the pod closes). When the pod side closes, the local connection is closed after
its pending data is written.

Forwards are de-duplicated per ``(namespace, pod, port)``, closed after ``idle_timeout``
seconds without open connections, and closed by ``invalidate(ns, pod)`` (the engine calls
it when the pod is replaced). A new forward is probed first (one session, which must open
both channels and report no error within ``probe_settle`` seconds), so ``forward`` fails
with the API server's or kubelet's own message instead of handing out a port that resets.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from guildnet.proxy import wsframes
from guildnet.proxy.kubeapi import ApiServer, api_server

log = Logger()

Key = tuple[str, str, int]
SUBPROTOCOL: Final = b"v4.channel.k8s.io"
DATA_CHANNEL: Final = 0
ERROR_CHANNEL: Final = 1
MAX_HEAD: Final = 64 * 1024
MAX_ERROR: Final = 16 * 1024
AUTH_TTL: Final = 30.0


class PortForwardError(Exception):
    """A forward could not be opened; ``status`` is the API server's HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def portforward_path(api: ApiServer, namespace: str, pod: str, port: int) -> str:
    ns, name = quote(namespace, safe=""), quote(pod, safe="")
    return f"{api.base_path}/api/v1/namespaces/{ns}/pods/{name}/portforward?ports={port}"


# --- one WebSocket session ---------------------------------------------------------------


class _Tunnel(Protocol):
    """One port-forward session to the API server (optionally via an HTTP proxy)."""

    transport: Any

    def __init__(self, api: ApiServer, path: str, auth: bytes | None, reactor: Any) -> None:
        self.api = api
        self.path = path
        self.auth = auth
        self.reactor = reactor
        self.peer: _Local | None = None
        self.ready: Deferred[_Tunnel] = Deferred(self._cancel)
        self.done: Deferred[None] = Deferred()
        self.error: str | None = None
        self._state = "connecting"
        self._buf = bytearray()
        self._key = wsframes.new_key()
        self._status: tuple[int, str, int] | None = None
        self._channel: int | None = None
        self._opened_channels: set[int] = set()
        self._init: bytearray | None = None
        self._error_buf = bytearray()
        self._close_sent = False
        self._settle_waiters: list[tuple[Deferred[None], float]] = []
        self._settle_call: Any = None
        self._reader = wsframes.FrameReader(
            self._on_start, self._on_data, self._on_end, self._on_control
        )

    # connection and handshake

    def connectionMade(self) -> None:
        _tune(self.transport, keepalive=True)
        if self.api.proxy is not None:
            target = f"{_bracket(self.api.host)}:{self.api.port}".encode()
            lines = [b"CONNECT " + target + b" HTTP/1.1", b"Host: " + target]
            if self.api.proxy_authorization:
                lines.append(b"Proxy-Authorization: " + self.api.proxy_authorization)
            self.transport.write(b"\r\n".join([*lines, b"", b""]))
            self._state = "proxy"
        else:
            self._upgrade()

    def _upgrade(self) -> None:
        if self.api.tls is not None:
            self.transport.startTLS(self.api.tls)
        lines = [
            b"GET " + self.path.encode("ascii") + b" HTTP/1.1",
            b"Host: " + self.api.authority.encode("idna"),
            b"User-Agent: guildnet-portforward",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + self._key,
            b"Sec-WebSocket-Version: 13",
            b"Sec-WebSocket-Protocol: " + SUBPROTOCOL,
        ]
        if self.auth:
            lines.append(b"Authorization: " + self.auth)
        self.transport.write(b"\r\n".join([*lines, b"", b""]))
        self._state = "handshake"

    def dataReceived(self, data: bytes) -> None:
        try:
            if self._state == "open":
                self._reader.feed(data)
                return
            self._buf += data
            if self._state == "proxy":
                self._proxy_answer()
            if self._state == "handshake":
                self._handshake_answer()
            if self._state == "refused":
                self._refused_body()
        except (wsframes.FrameError, PortForwardError) as e:
            self._fail(str(e))

    def _head(self) -> tuple[int, str, dict[bytes, bytes]] | None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise PortForwardError("the API server sent an oversized response head")
            return None
        head = bytes(self._buf[:end]).split(b"\r\n")
        del self._buf[: end + 4]
        parts = head[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise PortForwardError(f"not an HTTP response: {head[0][:100]!r}")
        headers: dict[bytes, bytes] = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        return int(parts[1]), reason, headers

    def _proxy_answer(self) -> None:
        head = self._head()
        if head is None:
            return
        if head[0] != 200:
            raise PortForwardError(f"the HTTP proxy refused CONNECT: {head[0]} {head[1]}")
        leftover = bytes(self._buf)
        self._buf.clear()
        if leftover:
            raise PortForwardError("the HTTP proxy sent data before the TLS handshake")
        self._upgrade()

    def _handshake_answer(self) -> None:
        head = self._head()
        if head is None:
            return
        status, reason, headers = head
        if status != 101:
            length = headers.get(b"content-length", b"0")
            self._status = (status, reason, int(length) if length.isdigit() else MAX_ERROR)
            self._state = "refused"
            return
        if headers.get(b"sec-websocket-accept") != wsframes.accept_for(self._key):
            raise PortForwardError("the API server's WebSocket accept key is wrong")
        protocol = headers.get(b"sec-websocket-protocol")
        if protocol not in (None, SUBPROTOCOL):
            raise PortForwardError(f"the API server chose protocol {protocol!r}")
        self._state = "open"
        leftover = bytes(self._buf)
        self._buf.clear()
        self.ready.callback(self)
        if leftover:
            self._reader.feed(leftover)

    def _refused_body(self, final: bool = False) -> None:
        assert self._status is not None
        status, reason, length = self._status
        if not final and len(self._buf) < min(length, MAX_ERROR):
            return
        message = f"{status} {reason}".strip()
        try:
            body = json.loads(bytes(self._buf[:MAX_ERROR]))
            if isinstance(body, dict) and body.get("message"):
                message = f"{status}: {body['message']}"
        except ValueError:
            pass
        self._state = "failed"
        self._fail(f"the API server refused the port-forward ({message})", status)

    def _cancel(self, _: Deferred[Any]) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def _fail(self, message: str, status: int | None = None) -> None:
        if self.error is None:
            self.error = message
        if not self.ready.called:
            self.ready.errback(PortForwardError(message, status))
        self._fire_settled(PortForwardError(message, status))
        if self.transport is not None:
            self.transport.abortConnection()

    # v4 channels

    def _on_start(self, opcode: int) -> None:
        if opcode != wsframes.OP_BINARY:
            raise wsframes.FrameError("text message on a port-forward")
        self._channel = None

    def _on_data(self, piece: bytes) -> None:
        if self._channel is None:
            self._channel, piece = piece[0], piece[1:]
            if self._channel not in (DATA_CHANNEL, ERROR_CHANNEL):
                raise wsframes.FrameError(f"unexpected channel {self._channel}")
            if self._channel not in self._opened_channels:
                self._init = bytearray()
        if not piece:
            return
        if self._init is not None:
            self._init += piece[:4]
        elif self._channel == DATA_CHANNEL:
            if self.peer is not None:
                self.peer.from_pod(piece)
        elif len(self._error_buf) < MAX_ERROR:
            self._error_buf += piece

    def _on_end(self) -> None:
        if self._channel is None:  # an empty message
            return
        if self._init is not None:
            if len(self._init) != 2:
                raise wsframes.FrameError("bad port header on a port-forward channel")
            self._init = None
            self._opened_channels.add(self._channel)
            if len(self._opened_channels) == 2:
                self._start_settle()
        elif self._channel == ERROR_CHANNEL and self._error_buf:
            text = bytes(self._error_buf).decode("utf-8", "replace").strip()
            log.info("port-forward {path}: {error}", path=self.path, error=text)
            self._fail(text)

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == wsframes.OP_PING:
            self.transport.write(wsframes.encode_frame(payload, wsframes.OP_PONG))
        elif opcode == wsframes.OP_CLOSE:
            self.close()

    # settling (for probes)

    def settled(self, delay: float) -> Deferred[None]:
        """Fires when both channels are open and ``delay`` passed with no error."""
        d: Deferred[None] = Deferred()
        self._settle_waiters.append((d, delay))
        if len(self._opened_channels) == 2:
            self._start_settle()
        return d

    def _start_settle(self) -> None:
        if self._settle_waiters and self._settle_call is None:
            delay = max(delay for _, delay in self._settle_waiters)
            self._settle_call = self.reactor.callLater(delay, self._fire_settled, None)

    def _fire_settled(self, error: Exception | None) -> None:
        if self._settle_call is not None and self._settle_call.active():
            self._settle_call.cancel()
        self._settle_call = None
        waiters, self._settle_waiters = self._settle_waiters, []
        for d, _ in waiters:
            if error is None:
                d.callback(None)
            else:
                d.errback(error)

    # sending and closing

    def send(self, data: bytes) -> None:
        self.transport.write(wsframes.encode_frame(b"\x00" + data))

    def close(self) -> None:
        """Close the session politely (a close frame), then the connection."""
        if self.transport is None:
            return
        if self._state == "open" and not self._close_sent:
            self._close_sent = True
            self.transport.write(wsframes.encode_frame(b"\x03\xe8", wsframes.OP_CLOSE))
        self.transport.loseConnection()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._state == "refused":
            self._refused_body(final=True)
        message = self.error or "the port-forward session closed"
        if not self.ready.called:
            self.ready.errback(PortForwardError(f"{message} ({reason.getErrorMessage()})"))
        self._fire_settled(PortForwardError(message))
        self._state = "closed"
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.tunnel_lost(self.error)
        self.done.callback(None)


# --- one local connection ----------------------------------------------------------------


@implementer(IHalfCloseableProtocol)
class _Local(Protocol):
    """A connection accepted on the forward's local port, bridged to one _Tunnel."""

    transport: Any

    def __init__(self, manager: PortForwardManager, fwd: _Forward) -> None:
        self.manager = manager
        self.fwd = fwd
        self.tunnel: _Tunnel | None = None
        self.closed: Deferred[None] = Deferred()
        self._opening: Deferred[_Tunnel] | None = None
        self._linger: Any = None
        self._lost = False

    def connectionMade(self) -> None:
        _tune(self.transport, keepalive=False)
        self.fwd.connections.add(self)
        self.fwd.last_active = self.manager.reactor.seconds()
        self.transport.pauseProducing()
        self._opening = self.manager._open_tunnel(self.fwd.key)
        self._opening.addCallbacks(self._paired, self._failed)

    def _paired(self, tunnel: _Tunnel) -> None:
        self._opening = None
        if self._lost:
            tunnel.close()
            return
        self.tunnel = tunnel
        tunnel.peer = self
        tunnel.transport.registerProducer(self.transport, True)
        self.transport.registerProducer(tunnel.transport, True)
        self.transport.resumeProducing()

    def _failed(self, reason: Failure) -> None:
        self._opening = None
        if reason.check(CancelledError):
            return
        log.info(
            "port-forward {key}: cannot open a session: {why}",
            key=self.fwd.key,
            why=reason.getErrorMessage(),
        )
        if isinstance(reason.value, PortForwardError) and reason.value.status == 404:
            self.manager._close(self.fwd)  # the pod is gone
        if not self._lost:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.send(data)

    def from_pod(self, data: bytes) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.reset(self.manager.half_close_linger)
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        """The local client will send no more; v4 cannot say so: linger, then close."""
        self._linger = self.manager.reactor.callLater(
            self.manager.half_close_linger, self.abort, graceful=True
        )

    def writeConnectionLost(self) -> None:
        self.abort()

    def tunnel_lost(self, error: str | None) -> None:
        self.tunnel = None
        if self._lost:
            return
        self.transport.unregisterProducer()
        if error:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def abort(self, graceful: bool = False) -> None:
        """Close this connection and its session (graceful: flush what was received)."""
        if self._opening is not None:
            self._opening.cancel()
        if self.tunnel is not None:
            if graceful:
                self.tunnel.close()
            else:
                self.tunnel.abort()
        if not self._lost and self.transport is not None:
            if graceful:
                self.transport.loseConnection()
            else:
                self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self.fwd.connections.discard(self)
        self.fwd.last_active = self.manager.reactor.seconds()
        if self._opening is not None:
            self._opening.cancel()
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.peer = None
            if tunnel.transport is not None:
                tunnel.transport.unregisterProducer()
            tunnel.close()
        self.closed.callback(None)


class _LocalFactory(Factory):
    noisy = False

    def __init__(self, manager: PortForwardManager, fwd: _Forward) -> None:
        self.manager = manager
        self.fwd = fwd

    def buildProtocol(self, addr: Any) -> Protocol | None:
        if self.fwd.closing:
            return None
        return _Local(self.manager, self.fwd)


class _Forward:
    """One listening local port for one (namespace, pod, port)."""

    def __init__(self, key: Key, now: float) -> None:
        self.key = key
        self.listener: Any = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self.connections: set[_Local] = set()
        self.last_active = now
        self.closing = False


# --- the manager -------------------------------------------------------------------------


class PortForwardManager(Service):
    """All port-forwards of one cluster Instance (see the module docstring).

    ``instance`` provides ``call`` (blocking work on its API pool) and ``api_client``
    (whose Configuration says how to reach the API server).
    """

    name = "port-forward"

    def __init__(
        self,
        instance: Any,
        reactor: Any,
        idle_timeout: float,
        *,
        connect_timeout: float = 10.0,
        probe_settle: float = 0.2,
        half_close_linger: float = 2.0,
        check_interval: float | None = None,
    ) -> None:
        self.instance = instance
        self.reactor = reactor
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.probe_settle = probe_settle
        self.half_close_linger = half_close_linger
        self.check_interval = check_interval or max(0.5, min(idle_timeout / 4, 30.0))
        self._forwards: dict[Key, _Forward] = {}
        self._pending: dict[Key, tuple[Deferred[None], list[Deferred[tuple[str, int]]]]] = {}
        self._tunnels: set[_Tunnel] = set()
        self._closing: set[Deferred[Any]] = set()
        self._api: ApiServer | None = None
        self._auth: tuple[float, bytes | None] | None = None
        self._loop: LoopingCall | None = None

    # life cycle

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._reap)
        self._loop.clock = self.reactor
        self._loop.start(self.check_interval, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for probe, _ in list(self._pending.values()):
            probe.cancel()
        waits = [self._close(fwd) for fwd in list(self._forwards.values())]
        for tunnel in list(self._tunnels):
            tunnel.abort()
            waits.append(tunnel.done)
        waits += list(self._closing)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    # the API

    @property
    def open_forwards(self) -> int:
        """Forwards listening now (for /metrics and the cluster health)."""
        return len(self._forwards)

    @property
    def open_streams(self) -> int:
        """Connections the forwards carry now."""
        return len(self._tunnels)

    def forward(self, namespace: str, pod: str, port: int) -> Deferred[tuple[str, int]]:
        """A local ``(host, port)`` tunnelled to ``pod:port``; shared per (ns, pod, port)."""
        if not self.running:
            return fail(PortForwardError("port-forwarding is stopped"))
        key: Key = (namespace, pod, int(port))
        fwd = self._forwards.get(key)
        if fwd is not None:
            fwd.last_active = self.reactor.seconds()
            return succeed(fwd.address)
        waiter: Deferred[tuple[str, int]] = Deferred()
        pending = self._pending.get(key)
        if pending is not None:
            pending[1].append(waiter)
            return waiter
        probe = self._probe(key)
        self._pending[key] = (probe, [waiter])
        probe.addBoth(self._probed, key)
        return waiter

    def invalidate(self, namespace: str, pod: str) -> Deferred[None]:
        """Close every forward (and pending probe) to ``namespace/pod``: it was replaced."""
        for key, (probe, _) in list(self._pending.items()):
            if key[:2] == (namespace, pod):
                probe.cancel()
        closing = [f for k, f in self._forwards.items() if k[:2] == (namespace, pod)]
        return DeferredList([self._close(f) for f in closing]).addCallback(lambda _: None)

    def forwards(self) -> dict[Key, tuple[str, int]]:
        """The open forwards and their local addresses (for status pages and tests)."""
        return {k: f.address for k, f in self._forwards.items()}

    def connection_count(self) -> int:
        return sum(len(f.connections) for f in self._forwards.values())

    # internals

    def _probed(self, result: object, key: Key) -> None:
        _, waiters = self._pending.pop(key, (None, []))
        outcome: Any = result
        if not isinstance(result, Failure):
            if not self.running:
                outcome = Failure(PortForwardError("port-forwarding is stopped"))
            else:
                fwd = self._forwards.get(key) or self._listen(key)
                outcome = fwd.address
        elif result.check(CancelledError):
            outcome = Failure(PortForwardError(f"port-forward to {key[1]}:{key[2]} cancelled"))
        for w in waiters:
            if isinstance(outcome, Failure):
                w.errback(outcome)
            else:
                w.callback(outcome)

    def _listen(self, key: Key) -> _Forward:
        fwd = _Forward(key, self.reactor.seconds())
        fwd.listener = self.reactor.listenTCP(0, _LocalFactory(self, fwd), interface="127.0.0.1")
        fwd.address = ("127.0.0.1", fwd.listener.getHost().port)
        self._forwards[key] = fwd
        log.info(
            "port-forward {ns}/{pod}:{port} listening on {addr}",
            ns=key[0],
            pod=key[1],
            port=key[2],
            addr=f"127.0.0.1:{fwd.address[1]}",
        )
        return fwd

    def _close(self, fwd: _Forward) -> Deferred[None]:
        if self._forwards.get(fwd.key) is fwd:
            del self._forwards[fwd.key]
        if fwd.closing:
            return succeed(None)
        fwd.closing = True
        waits: list[Deferred[Any]] = [maybeDeferred(fwd.listener.stopListening)]
        for conn in list(fwd.connections):
            conn.abort()
            waits.append(conn.closed)
        d = DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)
        self._closing.add(d)
        d.addBoth(_passing(lambda: self._closing.discard(d)))
        return d

    def _reap(self) -> None:
        now = self.reactor.seconds()
        for fwd in list(self._forwards.values()):
            if not fwd.connections and now - fwd.last_active >= self.idle_timeout:
                log.info("port-forward {key} idle: closing", key=fwd.key)
                self._close(fwd)

    def _probe(self, key: Key) -> Deferred[None]:
        opening = self._open_tunnel(key)
        state: dict[str, Any] = {}

        def opened(tunnel: _Tunnel) -> Deferred[None]:
            state["tunnel"] = tunnel
            settled = tunnel.settled(self.probe_settle)
            settled.addTimeout(self.connect_timeout, self.reactor)
            return settled.addBoth(_passing(tunnel.close))

        def cancel(_: Deferred[None]) -> None:
            opening.cancel()
            if "tunnel" in state:
                state["tunnel"].abort()

        d: Deferred[None] = Deferred(cancel)
        opening.addCallback(opened).chainDeferred(d)
        return d

    def _open_tunnel(self, key: Key) -> Deferred[_Tunnel]:
        """Connect, upgrade and return an open session (not yet bound to a connection)."""
        namespace, pod, port = key
        state: dict[str, Any] = {}

        def connect(api_auth: tuple[ApiServer, bytes | None]) -> Deferred[_Tunnel]:
            api, auth = api_auth
            tunnel = _Tunnel(api, portforward_path(api, namespace, pod, port), auth, self.reactor)
            state["tunnel"] = tunnel
            self._tunnels.add(tunnel)
            tunnel.done.addBoth(lambda _: self._tunnels.discard(tunnel))
            host, tcp_port = api.proxy or (api.host, api.port)
            connecting = connectProtocol(self._endpoint(host, tcp_port), tunnel)
            state["connecting"] = connecting
            connecting.addErrback(self._connect_failed, api)
            return connecting.addCallback(lambda _: tunnel.ready)

        def cancel(_: Deferred[_Tunnel]) -> None:
            for name in ("setup", "connecting"):
                if name in state:
                    state[name].cancel()
            if "tunnel" in state:
                state["tunnel"].abort()

        d: Deferred[_Tunnel] = Deferred(cancel)
        setup = self._api_and_auth()
        state["setup"] = setup
        setup.addCallback(connect).chainDeferred(d)
        d.addTimeout(self.connect_timeout + 1.0, self.reactor)
        return d

    def _endpoint(self, host: str, port: int) -> Any:
        """IP literals are dialled directly: a name lookup would start resolver threads."""
        timeout = self.connect_timeout
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return HostnameEndpoint(self.reactor, host.encode("idna"), port, timeout=timeout)
        if ip.version == 6:
            return TCP6ClientEndpoint(self.reactor, str(ip), port, timeout=timeout)
        return TCP4ClientEndpoint(self.reactor, str(ip), port, timeout=timeout)

    @staticmethod
    def _connect_failed(reason: Failure, api: ApiServer) -> Failure:
        if reason.check(CancelledError):
            return reason
        where = f"{api.scheme}://{api.authority}"
        return Failure(PortForwardError(f"cannot connect to {where}: {reason.getErrorMessage()}"))

    def _api_and_auth(self) -> Deferred[tuple[ApiServer, bytes | None]]:
        if self._api is None:
            client = self.instance.api_client
            if client is None:
                return fail(PortForwardError("the cluster is not connected"))
            return self._in_thread(api_server, client.configuration).addCallback(self._got_api)
        api = self._api
        cfg = api.configuration
        if cfg is None or getattr(cfg, "refresh_api_key_hook", None) is None:
            return succeed((api, api.authorization()))
        now = self.reactor.seconds()
        if self._auth is not None and now - self._auth[0] < AUTH_TTL:
            return succeed((api, self._auth[1]))
        return self._in_thread(api.authorization).addCallback(self._got_auth, api, now)

    def _got_api(self, api: ApiServer) -> Deferred[tuple[ApiServer, bytes | None]]:
        self._api = api
        return self._api_and_auth()

    def _got_auth(
        self, auth: bytes | None, api: ApiServer, now: float
    ) -> tuple[ApiServer, bytes | None]:
        self._auth = (now, auth)
        return api, auth

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        try:
            return self.instance.call(fn, *args)  # type: ignore[no-any-return]
        except RuntimeError as e:
            return fail(PortForwardError(str(e)))


def _passing(fn: Callable[[], object]) -> Callable[[Any], Any]:
    """A callback that runs ``fn`` and passes the result (or failure) on unchanged."""

    def run(result: Any) -> Any:
        fn()
        return result

    return run


def _tune(transport: Any, keepalive: bool) -> None:
    for method, value in (("setTcpNoDelay", True), ("setTcpKeepAlive", keepalive)):
        fn = getattr(transport, method, None)
        if fn is not None:
            with contextlib.suppress(OSError):
                fn(value)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
