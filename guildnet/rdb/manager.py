"""The per-Instance RDB manager: discovery, connection, monitor, and bounded-wait access.

Created lazily by ``Instance.ensure_rdb()`` the first time a DB route or changefeed needs
it, parented to the Instance, so ``Registry.close`` (which stops the Instance) stops it and
everything it owns: its connection, the changefeed hub's feeds, its timers.

States (``health``): ``connecting`` -> ``ready``; a transient failure -> ``backoff`` with the
next attempt's time (exponential, jittered, capped); a fatal one -> ``failed`` with the
reason, and no more attempts until ``reconnect()`` is asked for. A monitor pings the server
every ``ping_interval`` seconds: a hung server keeps TCP open, so only a ping notices it.
Connection loss is noticed at once (the fixed driver fails everything on it) and reconnects.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
from rethinkdb.errors import ReqlAvailabilityError, ReqlDriverError, ReqlOpFailedError
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    ensureDeferred,
    succeed,
)
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import Logger

from guildnet.cluster.rest import KubeApiError, object_path
from guildnet.metrics import rdb as rdb_metrics
from guildnet.monitor import lag_free_timeout
from guildnet.rdb import driver
from guildnet.rdb.discovery import DiscoveryConfig, DiscoveryError, Target, discover
from guildnet.rdb.driver import ConnectOptions, r
from guildnet.rdb.state import (
    BACKOFF,
    CLOSED,
    CONNECTING,
    FAILED,
    READY,
    Classified,
    Health,
    backoff_delay,
    classify,
)

log = Logger()

META_ATTEMPTS: Final = 6
META_DELAY: Final = 0.25


@attrs.frozen
class RDBConfig:
    """How every cluster's manager finds and talks to RethinkDB (from Settings)."""

    discovery: DiscoveryConfig = attrs.field(factory=DiscoveryConfig)
    user: str = "admin"
    password: str = attrs.field(default="", repr=False)
    secret_name: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    connect_timeout: float = 3.0
    ping_interval: float = 5.0
    ping_timeout: float = 2.0
    request_wait: float = 5.0
    query_timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> RDBConfig:
        return cls(
            discovery=DiscoveryConfig(
                service_name=settings.rethinkdb_service_name,
                namespace=settings.rethinkdb_namespace,
                override=settings.rethinkdb_addr,
                in_cluster=settings.in_cluster,
            ),
            user=settings.rethinkdb_user,
            password=settings.rethinkdb_password,
            secret_name=settings.rethinkdb_secret,
            tls=settings.rethinkdb_tls or settings.rethinkdb_ca_file is not None,
            ca_file=settings.rethinkdb_ca_file,
            connect_timeout=settings.rethinkdb_connect_timeout,
            ping_interval=settings.rethinkdb_ping_interval,
        )


class RDBUnavailable(Exception):
    """No usable connection: the API answers 503 with ``reason``."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class RDBManager(Service):
    name = "rethinkdb"

    def __init__(
        self,
        cluster_id: str,
        cfg: RDBConfig,
        environ: Mapping[str, str],
        default_cluster: bool,
        call: Callable[..., Deferred[Any]] | None,
        rest: Callable[[], Any],
        reactor: Any = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.cfg = cfg
        self._environ = environ
        self._default_cluster = default_cluster
        self._call = call
        self._rest = rest
        self._reactor = reactor or _reactor()
        self.health = Health(since=time.time())
        self._conn: Any = None
        self._attempts = 0
        self._cycle: Deferred[None] | None = None
        self._retry: Any = None  # IDelayedCall of the next attempt
        self._ping: Any = None
        self._pinging = False
        self._waiters: list[Deferred[Any]] = []
        self._listeners: list[Callable[[Health], object]] = []
        self._closing: list[Deferred[None]] = []
        self.stopping = False
        self.hub: Any = None  # the changefeed hub, attached by guildnet.rdb.feeds
        self._meta_ready = False  # GuildNet's meta table exists (guildnet.rdb.ops)
        self.meta_retries = 0  # how often a meta operation had to be retried (tests, logs)

    # life cycle -------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.stopping = False
        self._start_cycle()
        from twisted.internet.task import LoopingCall

        self._ping = LoopingCall(self._monitor)
        self._ping.clock = self._reactor
        self._ping.start(self.cfg.ping_interval, now=False).addErrback(
            lambda f: log.failure("rethinkdb monitor of {cluster}", f, cluster=self.cluster_id)
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.stopping = True
        if self._ping is not None and self._ping.running:
            self._ping.stop()
        self._ping = None
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._fail_waiters(RDBUnavailable("closed", "the cluster is shutting down"))
        waits: list[Deferred[Any]] = []
        if self.hub is not None:
            waits.append(self.hub.close())
        conn, self._conn = self._conn, None
        if conn is not None:
            waits.append(driver.close(conn))
        waits += self._closing
        if self._cycle is not None:
            waits.append(self._cycle)
        self._set(CLOSED, reason=None, message=None)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)  # type: ignore[return-value]

    # state ------------------------------------------------------------------------------------

    def on_change(self, listener: Callable[[Health], object]) -> Callable[[], None]:
        """Call ``listener(health)`` on every state change; returns the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _set(self, state: str, **changes: Any) -> None:
        old = self.health
        since = old.since if old.state == state else time.time()
        if state != BACKOFF:
            changes.setdefault("next_attempt_at", None)
        self.health = attrs.evolve(old, state=state, since=since, **changes)
        if old.state != state:
            log.info(
                "rethinkdb of cluster {cluster}: {state} {reason}",
                cluster=self.cluster_id,
                state=state,
                reason=self.health.reason or "",
            )
        for listener in list(self._listeners):
            try:
                listener(self.health)
            except Exception:
                log.failure("rethinkdb state listener")

    # connecting -------------------------------------------------------------------------------

    def _start_cycle(self) -> None:
        self._retry = None
        if self.stopping or self._cycle is not None or self._conn is not None:
            return
        self._set(CONNECTING)
        self._cycle = ensureDeferred(self._connect_once())
        self._cycle.addErrback(lambda f: log.failure("rethinkdb connect cycle", f))

        def done(_: object) -> None:
            self._cycle = None

        self._cycle.addBoth(done)

    async def _connect_once(self) -> None:
        try:
            targets = await discover(
                self.cfg.discovery,
                self._environ,
                self._default_cluster,
                self._call,
                self._rest(),
            )
            user, password = await self._credentials()
            conn, target = await self._first_that_connects(targets, user, password)
        except Exception as e:
            self._connect_failed(classify(e))
            return
        if self.stopping:
            self._closing.append(driver.close(conn))
            return
        info: dict[str, Any] | None = None
        try:
            server = await conn.server()
            info = {"id": server.get("id"), "name": server.get("name")}
        except Exception:
            info = None
        self._conn = conn
        self._attempts = 0
        self._meta_ready = False  # a new connection may be a new server: check meta again
        proto = conn._instance._connection
        proto.when_lost().addCallback(lambda _: self._lost(conn))
        self._set(
            READY,
            reason=None,
            message=None,
            address=target.address,
            source=target.source,
            attempts=0,
            last_ok_at=time.time(),
            server=info,
        )
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.called:
                w.callback(conn)

    async def _first_that_connects(
        self, targets: list[Target], user: str, password: str
    ) -> tuple[Any, Target]:
        last: Exception | None = None
        for target in targets:
            opts = ConnectOptions(
                host=target.host,
                port=target.port,
                user=user,
                password=password,
                timeout=self.cfg.connect_timeout,
                tls=self.cfg.tls,
                ca_file=self.cfg.ca_file,
            )
            try:
                return await driver.connect(opts), target
            except Exception as e:
                last = e
                if classify(e).fatal:
                    break
                self.health = attrs.evolve(
                    self.health, address=target.address, source=target.source
                )
        assert last is not None
        raise last

    async def _credentials(self) -> tuple[str, str]:
        """User and password: from the Secret named by RETHINKDB_SECRET, else the env."""
        user, password = self.cfg.user, self.cfg.password
        name = self.cfg.secret_name
        if not name:
            return user, password
        rest = self._rest()
        if self._call is None or rest is None:
            raise DiscoveryError("cluster_error", "the cluster is not running")
        path = object_path("v1", "secrets", name, self.cfg.discovery.namespace)
        try:
            secret = await self._call(rest.get, path)
        except KubeApiError as e:
            reason = "secret_not_found" if e.not_found else "cluster_error"
            raise DiscoveryError(
                reason, f"Secret {self.cfg.discovery.namespace}/{name}: {e.status} {e.reason}"
            ) from None
        data = secret.get("data") or {}

        def field(*keys: str) -> str | None:
            for k in keys:
                if data.get(k):
                    return base64.b64decode(data[k]).decode("utf-8", "replace")
            return None

        user = field("username", "user") or user
        password = field("password") or password
        return user, password

    def _connect_failed(self, c: Classified) -> None:
        if self.stopping:
            return
        self._attempts += 1
        if c.fatal:
            self._set(FAILED, reason=c.reason, message=c.message, attempts=self._attempts)
            self._fail_waiters(RDBUnavailable(c.reason, c.message))
            return
        delay = backoff_delay(self._attempts)
        self._set(
            BACKOFF,
            reason=c.reason,
            message=c.message,
            attempts=self._attempts,
            next_attempt_at=time.time() + delay,
        )
        self._retry = self._reactor.callLater(delay, self._start_cycle)

    def _lost(self, conn: Any) -> None:
        if conn is not self._conn or self.stopping:
            return
        rdb_metrics.RECONNECTS.labels(self.cluster_id).inc()
        self._conn = None
        self._closing.append(driver.close(conn))
        self._closing = [d for d in self._closing if not d.called]
        self._set(BACKOFF, reason="connection_lost", message="the connection to RethinkDB was lost")
        self._start_cycle()

    def reconnect(self) -> None:
        """Start over now (after a fatal failure was fixed, or to skip a long backoff)."""
        if self.stopping:
            return
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._attempts = 0
        self._start_cycle()

    # the monitor ------------------------------------------------------------------------------

    def _monitor(self) -> None:
        conn = self._conn
        if conn is None or self._pinging or self.stopping:
            return
        self._pinging = True
        started = time.monotonic()
        # The deadline excludes the reactor's own lag: a Host App too busy to read the
        # answer in time (a large fan-out) must not call a healthy server dead.
        d = lag_free_timeout(r.expr(1).run(conn), self.cfg.ping_timeout, self._reactor)

        def ok(_: object) -> None:
            self._observe("ping", time.monotonic() - started)
            self.health = attrs.evolve(self.health, last_ok_at=time.time())

        def bad(f: Any) -> None:
            if conn is not self._conn:
                return
            reason = (
                "timeout" if f.check(DeferredTimeout, CancelledError) else classify(f.value).reason
            )
            log.warn(
                "rethinkdb of cluster {cluster}: ping failed ({reason}); reconnecting",
                cluster=self.cluster_id,
                reason=reason,
            )
            rdb_metrics.RECONNECTS.labels(self.cluster_id).inc()
            self._conn = None
            self._closing.append(driver.close(conn))
            self._set(BACKOFF, reason=reason, message=f"ping failed: {reason}")
            self._start_cycle()

        def finished(_: object) -> None:
            self._pinging = False

        d.addCallbacks(ok, bad).addBoth(finished)

    # using it ---------------------------------------------------------------------------------

    def _fail_waiters(self, e: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.called:
                w.errback(e)

    def unavailable(self) -> RDBUnavailable:
        h = self.health
        retry = None
        if h.next_attempt_at is not None:
            retry = max(1.0, h.next_attempt_at - time.time())
        reason = h.reason or ("connecting" if h.state == CONNECTING else h.state)
        message = h.message or f"RethinkDB is {h.state}"
        return RDBUnavailable(reason, message, retry)

    def connection(self, wait: float | None = None) -> Deferred[Any]:
        """The connection, waiting up to ``wait`` (default ``request_wait``) s for one."""
        if self._conn is not None and self._conn.is_open():
            return succeed(self._conn)
        if self.stopping:
            raise RDBUnavailable("closed", "the cluster is shutting down")
        if self.health.state == FAILED:
            raise self.unavailable()
        d: Deferred[Any] = Deferred()
        self._waiters.append(d)
        if self._cycle is None and (self._retry is None or not self._retry.active()):
            self._start_cycle()
        seconds = self.cfg.request_wait if wait is None else wait
        timer = self._reactor.callLater(seconds, self._waited_too_long, d)

        def settle(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(settle)

    def _waited_too_long(self, d: Deferred[Any]) -> None:
        if d in self._waiters:
            self._waiters.remove(d)
        if not d.called:
            d.errback(self.unavailable())

    def _observe(self, op: str, seconds: float) -> None:
        rdb_metrics.QUERY_DURATION.labels(self.cluster_id, op).observe(seconds)

    async def run(self, term: Any, timeout: float | None = None, **optargs: Any) -> Any:
        """Run one ReQL term; connection trouble becomes RDBUnavailable, query errors pass."""
        conn = await self.connection()
        started = time.monotonic()
        d = term.run(conn, **optargs)
        d.addTimeout(timeout or self.cfg.query_timeout, self._reactor)
        try:
            result = await d
            self._observe(term_op(term), time.monotonic() - started)
            return result
        except (DeferredTimeout, CancelledError):
            raise RDBUnavailable("timeout", "the query took too long") from None
        except ReqlAvailabilityError as e:
            c = classify(e)
            if c.reason != "unavailable":
                raise  # "already exists" and the like: the caller maps it
            raise RDBUnavailable("unavailable", c.message, 1.0) from None
        except ReqlDriverError as e:
            raise RDBUnavailable(classify(e).reason, classify(e).message, 1.0) from None

    async def run_meta(self, build: Callable[[], Any], attempts: int = META_ATTEMPTS) -> Any:
        """Run a meta operation (create database/table, ...) with short bounded retries, so
        a server that just started (no primary replica for ~2 s) does not fail it."""
        delay = META_DELAY
        for attempt in range(attempts):
            try:
                return await self.run(build())
            except (RDBUnavailable, ReqlOpFailedError) as e:
                transient = (
                    e.reason not in ("closed", "auth_failed")
                    if isinstance(e, RDBUnavailable)
                    else classify(e).reason == "unavailable"
                )
                if attempt + 1 >= attempts or not transient:
                    raise
                self.meta_retries += 1
                from twisted.internet.task import deferLater

                await deferLater(self._reactor, delay, lambda: None)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")


def term_op(term: Any) -> str:
    """The ``op`` label of a query: its outermost ReQL term (``insert``, ``changes``,
    ``table_list``; ``expr`` for a plain value), a small fixed set."""
    st = getattr(term, "statement", None) or getattr(term, "st", None)
    if isinstance(st, str) and st:
        return st
    return "expr"


def manager_factory(
    cfg: RDBConfig, environ: Mapping[str, str], reactor: Any = None
) -> Callable[[Any], RDBManager]:
    """What ``Instance.rdb_factory`` is set to: one manager per Instance."""
    from guildnet.cluster.ids import DEFAULT_CLUSTER_ID

    def make(instance: Any) -> RDBManager:
        return RDBManager(
            instance.cluster_id,
            cfg,
            environ,
            instance.cluster_id == DEFAULT_CLUSTER_ID,
            instance.call,
            lambda: instance.rest,
            reactor,
        )

    return make
