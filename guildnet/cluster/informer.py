"""A small shared informer: list, then watch from the list's resourceVersion.

One per resource kind per Instance; the operator, the API, SSE streams and
the proxy's route cache all read its cache and subscribe to its events
instead of listing the API server per request.

The blocking list/watch loop runs on the Instance's watch pool. Events are
handed to the reactor thread with ``callFromThread``, so the cache and every
subscriber are touched by the reactor thread only. Watches are bounded
(``timeoutSeconds``), use bookmarks, re-list on 410 Gone, back off on
errors, and stop promptly: ``stop()`` shuts the open response down from the
reactor thread, which unblocks the reading thread at once.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from guildnet.cluster.rest import KubeApiError, KubeRest
from guildnet.metrics import kube as kube_metrics
from guildnet.metrics import operator as M

log = Logger()

Key = tuple[str, str]  # (namespace, name)
Handler = Callable[[str, dict[str, Any], dict[str, Any] | None], None]

WATCH_TIMEOUT = 240  # server-side bound of one watch call, seconds
RESYNC_PERIOD = 600.0  # full re-list, seconds (catches anything a watch missed)
BACKOFF_MAX = 30.0


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def rv_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Informer:
    """Cache of one resource collection, kept current by a watch."""

    def __init__(
        self,
        rest: KubeRest,
        path: str,
        reactor: Any,
        *,
        kind: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = WATCH_TIMEOUT,
        resync_period: float = RESYNC_PERIOD,
    ) -> None:
        self.rest = rest
        self.path = path
        self.kind = kind
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.resync_period = resync_period
        self._reactor = reactor
        self.cache: dict[Key, dict[str, Any]] = {}
        self._handlers: list[Handler] = []
        self._synced_waiters: list[Deferred[None]] = []
        self.synced = False
        self.resource_version = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._response: urllib3.BaseHTTPResponse | None = None
        self.lists = 0
        self.watches = 0
        cluster = getattr(rest, "cluster_id", "")
        self._cluster = cluster
        self._m_events = {
            t: M.INFORMER_EVENTS.labels(cluster, kind, t) for t in ("ADDED", "MODIFIED", "DELETED")
        }
        self._m_relists = M.INFORMER_RELISTS.labels(cluster, kind)

    # reactor-thread API ----------------------------------------------------

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        """``handler(type, obj, old)`` for ADDED/MODIFIED/DELETED, on the reactor."""
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler) if handler in self._handlers else None

    def wait_synced(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.synced:
            d.callback(None)
        else:
            self._synced_waiters.append(d)
        return d

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cache.get((namespace, name))

    def items(self) -> list[dict[str, Any]]:
        return list(self.cache.values())

    def stop(self) -> None:
        """Make the loop exit; safe from any thread, idempotent."""
        self._stop.set()
        with self._lock:
            resp = self._response
        if resp is not None:
            with contextlib.suppress(Exception):  # it may already be closed
                resp.shutdown()

    def start(self, run_in_thread: Callable[..., Deferred[None]]) -> Deferred[None]:
        """Start the loop via ``run_in_thread`` (an Instance's ``call_watch``).

        The returned Deferred fires when the loop has exited; cancelling it
        stops the loop.
        """
        d = run_in_thread(self._run)
        outer: Deferred[None] = Deferred(lambda _: self.stop())
        d.addBoth(lambda r: outer.callback(None) if not outer.called else None)
        return outer

    # delivery on the reactor thread ----------------------------------------

    def _replace(self, items: list[dict[str, Any]], rv: str) -> None:
        self._m_relists.inc()
        fresh = {key_of(o): o for o in items}
        old = self.cache
        self.cache = fresh
        self.resource_version = rv
        for k, obj in fresh.items():
            before = old.get(k)
            if before is None:
                self._emit("ADDED", obj, None)
            elif rv_of(before) != rv_of(obj):
                self._emit("MODIFIED", obj, before)
        for k, obj in old.items():
            if k not in fresh:
                self._emit("DELETED", obj, obj)
        if not self.synced:
            self.synced = True
            waiters, self._synced_waiters = self._synced_waiters, []
            for w in waiters:
                w.callback(None)

    def _apply(self, type_: str, obj: dict[str, Any]) -> None:
        counter = self._m_events.get(type_)
        if counter is not None:
            counter.inc()
        k = key_of(obj)
        old = self.cache.get(k)
        self.resource_version = rv_of(obj) or self.resource_version
        if type_ == "DELETED":
            self.cache.pop(k, None)
        else:
            self.cache[k] = obj
            if old is not None and type_ == "ADDED":
                type_ = "MODIFIED"
        self._emit(type_, obj, old)

    def _emit(self, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        for handler in list(self._handlers):
            try:
                handler(type_, obj, old)
            except Exception:
                log.failure("{kind} informer handler failed", kind=self.kind)

    # the blocking loop (watch pool thread) ---------------------------------

    def _selectors(self) -> dict[str, Any]:
        return {"labelSelector": self.label_selector, "fieldSelector": self.field_selector}

    def _run(self) -> None:
        backoff = 0.5
        rv = ""
        next_resync = 0.0
        while not self._stop.is_set():
            try:
                if not rv or time.monotonic() >= next_resync:
                    rv = self._list()
                    next_resync = time.monotonic() + self.resync_period
                rv = self._watch(rv)
                backoff = 0.5
                self._restarted("expired")
            except KubeApiError as e:
                if e.gone:
                    rv = ""  # expired resourceVersion: re-list
                    self._restarted("gone")
                    continue
                self._restarted("error")
                self._sleep_after_error(f"{e.status} {e.reason}: {e.message}", backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception as e:
                if self._stop.is_set():
                    break
                self._restarted("error")
                self._sleep_after_error(f"{type(e).__name__}: {e}", backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                rv = rv if isinstance(e, (TimeoutError, urllib3.exceptions.HTTPError)) else ""

    def _restarted(self, reason: str) -> None:
        if not self._stop.is_set():
            kube_metrics.watch_restarted(self._cluster, self.kind, reason)

    def _sleep_after_error(self, message: str, backoff: float) -> None:
        if self._stop.is_set():
            return
        log.warn(
            "{kind} watch error, retrying in {delay:.1f}s: {message}",
            kind=self.kind,
            delay=backoff,
            message=message[:300],
        )
        self._stop.wait(backoff * (0.5 + random.random()))

    def _list(self) -> str:
        items: list[dict[str, Any]] = []
        cont: str | None = None
        while True:
            page = self.rest.request(
                "GET", self.path, query={**self._selectors(), "limit": 500, "continue": cont}
            )
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue") or None
            if not cont:
                break
        rv = str((page.get("metadata") or {}).get("resourceVersion") or "")
        self.lists += 1
        if not self._stop.is_set():
            self._reactor.callFromThread(self._replace, items, rv)
        return rv

    def _watch(self, rv: str) -> str:
        """One bounded watch call; returns the resourceVersion to resume from."""
        resp = self.rest.open(
            "GET",
            self.path,
            query={
                **self._selectors(),
                "watch": True,
                "resourceVersion": rv,
                "allowWatchBookmarks": True,
                "timeoutSeconds": self.watch_timeout,
            },
            timeout=(10.0, self.watch_timeout + 30.0),
        )
        with self._lock:
            if self._stop.is_set():
                resp.release_conn()
                return rv
            self._response = resp
        self.watches += 1
        try:
            for event in _json_lines(resp):
                type_ = str(event.get("type"))
                obj = event.get("object") or {}
                if type_ == "ERROR":
                    code = int(obj.get("code") or 500)
                    raise KubeApiError(
                        code, str(obj.get("reason") or ""), str(obj.get("message") or ""), obj
                    )
                new_rv = rv_of(obj)
                if new_rv:
                    rv = new_rv
                if type_ == "BOOKMARK":
                    continue
                if self._stop.is_set():
                    break
                self._reactor.callFromThread(self._apply, type_, obj)
        finally:
            with self._lock:
                self._response = None
            resp.release_conn()
        return rv


def _json_lines(resp: urllib3.BaseHTTPResponse) -> Iterator[dict[str, Any]]:
    buf = b""
    for chunk in resp.stream(64 * 1024, decode_content=True):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if buf.strip():
        yield json.loads(buf)
