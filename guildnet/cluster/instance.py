"""One cluster's Instance: its Kubernetes client, thread pools, local DB and workers.

Everything an Instance starts is stopped by ``stopService``: workers are
cancelled, timers stopped, the local DB closed, the client's connections
closed and its thread pools joined. Nothing survives ``Registry.close``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from guildnet.cluster.informer import Informer
from guildnet.cluster.kubeclient import ClusterSource, build_configuration
from guildnet.cluster.localdb import LocalDB
from guildnet.cluster.rest import KubeRest
from guildnet.cluster.threads import stop_pools
from guildnet.metrics import kube as kube_metrics

T = TypeVar("T")
log = Logger()

API_THREADS = 8
WATCH_THREADS = 16
STREAM_THREADS = 64
VERSION_TIMEOUT = 5.0


@attrs.frozen
class Reachability:
    reachable: bool
    server: str
    version: str | None
    error: str | None
    checked_at: float


class Instance(MultiService):
    """A cluster's resources, started and stopped as one service."""

    def __init__(
        self,
        cluster_id: str,
        source: ClusterSource,
        state_dir: Path,
        environ: Mapping[str, str],
        reactor: Any,
        display_name: str | None = None,
    ) -> None:
        super().__init__()
        self.cluster_id = cluster_id
        self.display_name = display_name or cluster_id
        self.setName(cluster_id)
        self.source = source
        self.state_dir = state_dir
        self._environ = environ
        self._reactor = reactor
        prefix = f"guildnet-{cluster_id}"
        self.api_pool = ThreadPool(minthreads=0, maxthreads=API_THREADS, name=f"{prefix}-api")
        self.watch_pool = ThreadPool(0, WATCH_THREADS, name=f"{prefix}-watch")
        # Per-client streams (log follows) get their own pool: however many
        # browsers follow logs, informers and API calls keep their threads.
        self.stream_pool = ThreadPool(0, STREAM_THREADS, name=f"{prefix}-stream")
        self.localdb = LocalDB(state_dir / "local.sqlite3", reactor, name=f"{prefix}-localdb")
        self.api_client: client.ApiClient | None = None
        self.rest: KubeRest | None = None
        self.informers: dict[str, Informer] = {}
        self._workers: dict[int, tuple[str, Deferred[Any]]] = {}
        self._loops: list[tuple[str, LoopingCall]] = []
        self._last_reach: Reachability | None = None
        self._started: Deferred[None] | None = None
        self._open_state: Failure | bool | None = None
        # True from start until the pools close; children may still make calls
        # while they stop (e.g. releasing a Lease).
        self._open = False
        self._ready_waiters: list[Deferred[None]] = []
        # The RethinkDB manager: made by ``rdb_factory`` on first use (``ensure_rdb``).
        self.rdb: Any = None
        self.rdb_factory: Callable[[Instance], Any] | None = None

    # life cycle -----------------------------------------------------------

    def startService(self) -> None:
        """Start pools and open the local DB; ``ready()`` fires when done."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        configuration = build_configuration(self.source, self._environ, self.state_dir / "tmp")
        configuration.connection_pool_maxsize = API_THREADS + WATCH_THREADS + STREAM_THREADS
        configuration.retries = 1
        self.api_client = client.ApiClient(configuration)
        self.rest = KubeRest(self.api_client, self.cluster_id)
        self.api_pool.start()
        self.watch_pool.start()
        self.stream_pool.start()
        self._open = True
        self._open_state = None
        self._started = self.localdb.open().addBoth(self._opened)
        super().startService()

    def ready(self) -> Deferred[None]:
        """Fires when the Instance can serve (its local DB is open)."""
        if self._open_state is True or not self.running:
            return succeed(None)
        if isinstance(self._open_state, Failure):
            return fail(self._open_state)
        d: Deferred[None] = Deferred()
        self._ready_waiters.append(d)
        return d

    def _opened(self, result: object) -> None:
        self._open_state = result if isinstance(result, Failure) else True
        if isinstance(result, Failure):
            log.failure(
                "cluster {cluster}: local DB failed to open", result, cluster=self.cluster_id
            )
        waiters, self._ready_waiters = self._ready_waiters, []
        for w in waiters:
            if isinstance(result, Failure):
                w.errback(result)
            else:
                w.callback(None)

    def stopService(self) -> Deferred[None]:
        """Stop children, workers and timers, then the DB, client and threads."""
        super_stop = super().stopService()
        for _, loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        pending = [d for _, d in self._workers.values()]
        for d in pending:
            d.cancel()
        waits: list[Deferred[Any]] = [super_stop or succeed(None)]
        waits += [d for d in pending]
        started = self._started or succeed(None)

        def close_rest(_: object) -> Deferred[None]:
            self._open = False
            if self.rdb is not None:
                if self.rdb.parent is self:
                    self.removeService(self.rdb)
                self.rdb = None
            d = self.localdb.close()
            d.addBoth(lambda _: self._close_client())
            d.addBoth(
                lambda _: stop_pools(
                    self._reactor, [self.api_pool, self.watch_pool, self.stream_pool]
                )
            )
            return d

        all_done = DeferredList([*waits, started], consumeErrors=True)
        all_done.addCallback(close_rest)
        return all_done  # type: ignore[return-value]

    def _close_client(self) -> None:
        self.informers.clear()
        self.rest = None
        if self.api_client is not None:
            self.api_client.close()
            self.api_client = None

    # RethinkDB ------------------------------------------------------------

    def ensure_rdb(self) -> Any:
        """The cluster's RDB manager (``guildnet.rdb.manager``), created on first use.

        It is a child service, so stopping the Instance stops it and all it owns.
        """
        if self.rdb is None:
            if not self.running or not self._open:
                raise RuntimeError(f"cluster {self.cluster_id} is not running")
            if self.rdb_factory is None:
                raise RuntimeError("no RethinkDB configuration for this Host App")
            manager = self.rdb_factory(self)
            manager.setServiceParent(self)
            self.rdb = manager
        return self.rdb

    # blocking work --------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run a blocking Kubernetes call on the API pool."""
        if not self._open:
            raise RuntimeError(f"cluster {self.cluster_id} is not running")
        return deferToThreadPool(self._reactor, self.api_pool, fn, *args, **kwargs)

    def call_watch(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run a long blocking call (a watch) on its own pool, so it never starves ``call``."""
        if not self._open:
            raise RuntimeError(f"cluster {self.cluster_id} is not running")
        return deferToThreadPool(self._reactor, self.watch_pool, fn, *args, **kwargs)

    def call_stream(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run one client's long-lived stream (a log follow) on the stream pool."""
        if not self._open:
            raise RuntimeError(f"cluster {self.cluster_id} is not running")
        return deferToThreadPool(self._reactor, self.stream_pool, fn, *args, **kwargs)

    # background work ------------------------------------------------------

    def start_worker(self, name: str, run: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """Start a background worker bound to this Instance.

        The worker is cancelled when the Instance stops; its Deferred must
        honour cancellation (stop its loops, close its connections).
        """
        if not self.running:
            raise RuntimeError(f"cluster {self.cluster_id} is not running")
        d = run()
        key = id(d)
        self._workers[key] = (name, d)

        def done(result: object) -> object:
            self._workers.pop(key, None)
            if isinstance(result, Failure):
                if not result.check(CancelledError):
                    log.failure(
                        "worker {name} of cluster {cluster} failed",
                        result,
                        name=name,
                        cluster=self.cluster_id,
                    )
                return None
            return result

        d.addBoth(done)
        return d

    def start_looping(
        self, name: str, interval: float, fn: Callable[[], Any], now: bool = True
    ) -> LoopingCall:
        """Call ``fn`` every ``interval`` seconds until the Instance stops."""
        loop = LoopingCall(fn)
        loop.clock = self._reactor
        self._loops.append((name, loop))
        d = loop.start(interval, now=now)
        d.addErrback(
            lambda f: log.failure(
                "loop {name} of cluster {cluster} failed", f, name=name, cluster=self.cluster_id
            )
        )
        return loop

    def informer(self, path: str, kind: str, **options: Any) -> Informer:
        """The shared informer for ``path`` (a collection URL), started on first use."""
        informer = self.informers.get(path)
        if informer is None:
            if self.rest is None or not self.running:
                raise RuntimeError(f"cluster {self.cluster_id} is not running")
            informer = Informer(self.rest, path, self._reactor, kind=kind, **options)
            self.informers[path] = informer
            self.start_worker(f"informer {kind}", lambda: informer.start(self.call_watch))
        return informer

    @property
    def worker_names(self) -> list[str]:
        return sorted(name for name, _ in self._workers.values())

    # health ---------------------------------------------------------------

    @property
    def server(self) -> str:
        if self.api_client is not None:
            return str(self.api_client.configuration.host)
        return self.source.api_proxy_url or ""

    @property
    def last_reachability(self) -> Reachability | None:
        return self._last_reach

    def check_reachable(self, timeout: float = VERSION_TIMEOUT) -> Deferred[Reachability]:
        """GET /version with a short timeout; never errbacks."""
        api = self.api_client
        server = self.server

        def get_version() -> str:
            assert api is not None
            started = time.monotonic()
            code = "error"
            try:
                info = client.VersionApi(api).get_code(_request_timeout=timeout)
                code = "200"
            except ApiException as e:
                code = str(e.status)
                raise
            finally:
                kube_metrics.observe(
                    self.cluster_id, "get", "version", code, time.monotonic() - started
                )
            return str(info.git_version)

        def ok(version: str) -> Reachability:
            return Reachability(True, server, version, None, time.time())

        def bad(f: Failure) -> Reachability:
            assert f.value is not None
            return Reachability(False, server, None, describe_error(f.value), time.time())

        def remember(r: Reachability) -> Reachability:
            self._last_reach = r
            return r

        if not self.running or api is None:
            return succeed(Reachability(False, server, None, "cluster not started", time.time()))
        d: Deferred[Reachability] = self.call(get_version).addCallbacks(ok, bad)
        return d.addCallback(remember)


def describe_error(e: BaseException) -> str:
    """A short, secret-free description of a client error."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(e, ApiException):
        return f"API server answered {e.status} {e.reason}"
    if isinstance(e, Urllib3Error):
        reason = getattr(e, "reason", None) or e
        return f"cannot reach the API server: {type(reason).__name__}: {_first_line(reason)}"
    return f"{type(e).__name__}: {_first_line(e)}"


def _first_line(e: object) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""
