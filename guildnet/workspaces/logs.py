"""Workspace logs: one-shot fetches and live follows of ``pods/log`` across a workspace's pods.

Pure parts (query parsing, timestamps, the resume cursor, de-duplication) come first and
are unit-tested. The blocking reads run in the Instance's pools: one-shot fetches on the
API pool, follows on the watch pool, one thread per followed pod for as long as the
client listens. A follow has no total deadline: it re-opens after an upstream EOF or an
idle read timeout, resuming with ``sinceTime`` and dropping lines already sent. Stopping
(client gone, workspace deleted, Instance stopping) shuts the upstream response down from
the reactor thread, which unblocks the reading thread at once.

Resume: each line's SSE id is a cursor ``<pod>/<timestamp>/<n>[,<pod>/<timestamp>/<n>...]``
holding, per followed pod, the RFC 3339 timestamp of the last line sent and how many lines
with exactly that timestamp were sent (kubelets stamp lines in nanoseconds, kwok gives
many lines one stamp). A reconnect with ``Last-Event-ID`` asks each pod for its log since
that second and skips what the cursor says was already delivered.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from guildnet.cluster.instance import Instance
from guildnet.cluster.rest import KubeApiError, KubeRest, object_path
from guildnet.workspaces import views

log = Logger()

DEFAULT_TAIL: Final = 200
MAX_TAIL: Final = 10000
MAX_LOG_BYTES: Final = 8 * 1024 * 1024  # per pod, one-shot fetch
MAX_LINE: Final = 64 * 1024  # a longer line is cut (and the rest sent as more lines)
FOLLOW_READ_TIMEOUT: Final = 600.0  # idle upstream for this long: re-open (not a deadline)
FOLLOW_BACKOFF_MAX: Final = 30.0
MAX_CURSOR_PODS: Final = 16
MAX_CURSOR_LEN: Final = 2048

_CONTAINER_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TS_RE: Final = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
_POD_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


# --- query parameters ---------------------------------------------------------------------


class BadQuery(ValueError):
    """A query parameter is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@attrs.frozen
class LogQuery:
    tail: int = DEFAULT_TAIL
    container: str | None = None
    previous: bool = False
    as_json: bool = False


def query_arg(args: Mapping[bytes, Sequence[bytes]], name: str) -> str | None:
    values = args.get(name.encode())
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise BadQuery(name, "must be UTF-8") from None


def parse_tail(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_TAIL
    if not (value.isascii() and value.isdigit()):
        raise BadQuery("tail", f"must be an integer between 1 and {MAX_TAIL}")
    tail = int(value)
    if not 1 <= tail <= MAX_TAIL:
        raise BadQuery("tail", f"must be between 1 and {MAX_TAIL}")
    return tail


def parse_container(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _CONTAINER_RE.match(value):
        raise BadQuery("container", "must be a container name (a lower-case DNS label)")
    return value


def parse_bool_arg(name: str, value: str | None) -> bool:
    if value is None or value == "":
        return False
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise BadQuery(name, "must be true or false")


def parse_log_query(args: Mapping[bytes, Sequence[bytes]]) -> LogQuery:
    """``?tail=N&container=&previous=&format=text|json`` of ``GET .../logs``."""
    fmt = query_arg(args, "format") or "text"
    if fmt not in ("text", "json"):
        raise BadQuery("format", "must be text or json")
    return LogQuery(
        tail=parse_tail(query_arg(args, "tail")),
        container=parse_container(query_arg(args, "container")),
        previous=parse_bool_arg("previous", query_arg(args, "previous")),
        as_json=fmt == "json",
    )


# --- timestamps and lines -----------------------------------------------------------------


def parse_timestamp(text: str) -> int | None:
    """RFC 3339 (nano) -> nanoseconds since the epoch; None if it is not one.

    Integers, because Go trims trailing zeros of the fraction, so the strings do not sort.
    """
    m = _TS_RE.match(text)
    if m is None:
        return None
    base, frac, zone = m.groups()
    try:
        when = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    nanos = int((frac or "").ljust(9, "0"))
    return int(when.timestamp()) * 1_000_000_000 + nanos


def since_time(ts: int) -> str:
    """The ``sinceTime`` (whole seconds, rounded down) that includes timestamp ``ts``."""
    return datetime.fromtimestamp(ts // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen
class LogLine:
    time: str | None  # the upstream timestamp text, None when the line had none
    ts: int | None
    text: str


def split_line(raw: bytes) -> LogLine:
    """One ``timestamps=true`` line: ``<RFC3339Nano> <text>``."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    stamp, sep, rest = text.partition(" ")
    ts = parse_timestamp(stamp) if sep or stamp else None
    if ts is None:
        return LogLine(None, None, text)
    return LogLine(stamp, ts, rest)


# --- the resume cursor --------------------------------------------------------------------


@attrs.frozen
class Position:
    """The last line sent for a pod: its timestamp and how many lines had exactly it."""

    time: str
    ts: int
    n: int


Cursor = dict[str, Position]


def encode_cursor(cursor: Mapping[str, Position]) -> str:
    parts = [f"{pod}/{p.time}/{p.n}" for pod, p in sorted(cursor.items())]
    return ",".join(parts[:MAX_CURSOR_PODS])


def decode_cursor(text: str | None) -> Cursor:
    """A Last-Event-ID back into positions; anything malformed is ignored (fresh start)."""
    out: Cursor = {}
    if not text or len(text) > MAX_CURSOR_LEN:
        return out
    for part in text.split(",")[:MAX_CURSOR_PODS]:
        pieces = part.strip().split("/")
        if len(pieces) != 3:
            continue
        pod, stamp, count = pieces
        ts = parse_timestamp(stamp)
        if not _POD_RE.match(pod) or ts is None or not count.isdigit():
            continue
        n = int(count)
        if n < 1:
            continue
        out[pod] = Position(stamp, ts, n)
    return out


class LineGate:
    """Drops lines already delivered, across re-opened streams of one pod.

    ``admit`` is called for every line of a stream in order; ``restart`` before each new
    stream. A stream opened with ``sinceTime`` starts at or before the last position, so
    lines older than it, and the first ``n`` lines with exactly its timestamp, were sent.
    """

    def __init__(self, position: Position | None = None) -> None:
        self.position = position
        self._same = 0

    def restart(self) -> None:
        self._same = 0

    def admit(self, line: LogLine) -> bool:
        if line.ts is None or line.time is None:
            return True  # no timestamp: cannot place it, never drop it
        pos = self.position
        if pos is None or line.ts > pos.ts:
            self.position = Position(line.time, line.ts, 1)
            self._same = 1
            return True
        if line.ts < pos.ts:
            return False
        self._same += 1
        if self._same <= pos.n:
            return False
        self.position = Position(pos.time, pos.ts, self._same)
        return True


class LineSplitter:
    """Bytes in, complete lines out; an endless line is cut at ``MAX_LINE``."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = b""
        self._max = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        lines = self._buf.split(b"\n")
        self._buf = lines.pop()
        while len(self._buf) > self._max:
            lines.append(self._buf[: self._max])
            self._buf = self._buf[self._max :]
        return lines

    def flush(self) -> list[bytes]:
        rest, self._buf = self._buf, b""
        return [rest] if rest else []


# --- one-shot fetch (API pool) ------------------------------------------------------------


@attrs.frozen
class PodLog:
    pod: str
    text: str
    error: str | None = None


def fetch_pod_log(
    rest: KubeRest, namespace: str, pod: str, query: LogQuery, limit_bytes: int = MAX_LOG_BYTES
) -> bytes:
    """``pods/log`` of one pod (blocking)."""
    path = object_path("v1", "pods", pod, namespace, "log")
    params: dict[str, Any] = {
        "tailLines": query.tail,
        "container": query.container,
        "previous": query.previous or None,
        "limitBytes": limit_bytes,
    }
    resp = rest.open("GET", path, query=params, timeout=30.0)
    try:
        return bytes(resp.read())
    finally:
        resp.release_conn()


def fetch_logs(
    instance: Instance, namespace: str, pods: Sequence[Mapping[str, Any]], query: LogQuery
) -> Deferred[list[PodLog]]:
    """The logs of ``pods`` (in parallel on the API pool); per-pod errors, not failures."""
    rest = instance.rest
    assert rest is not None
    names = [views.name_of(p) for p in views.sort_pods(pods)]

    async def one(pod: str) -> PodLog:
        try:
            data = await instance.call(fetch_pod_log, rest, namespace, pod, query)
        except Exception as e:
            return PodLog(pod, "", _describe(e))
        return PodLog(pod, data.decode("utf-8", "replace"))

    dl = DeferredList([Deferred.fromCoroutine(one(n)) for n in names], consumeErrors=True)
    return dl.addCallback(lambda results: [r for ok, r in results if ok])


def _describe(e: BaseException | None) -> str:
    if isinstance(e, KubeApiError):
        return e.message or f"{e.status} {e.reason}"
    return f"{type(e).__name__}: {str(e)[:200]}"


def render_text(logs: Sequence[PodLog]) -> str:
    """Plain text: one pod's log as is; several are separated by ``==> pod/<name> <==``."""
    if len(logs) == 1 and logs[0].error is None:
        return logs[0].text
    out: list[str] = []
    for entry in logs:
        if entry.error is not None:
            out.append(f"==> pod/{entry.pod}: {entry.error} <==\n")
            continue
        out.append(f"==> pod/{entry.pod} <==\n")
        out.append(entry.text if entry.text.endswith("\n") or not entry.text else entry.text + "\n")
    return "".join(out)


def render_json(server: str, logs: Sequence[PodLog]) -> dict[str, Any]:
    return {
        "server": server,
        "pods": [{"pod": e.pod, "lines": e.text.splitlines(), "error": e.error} for e in logs],
    }


# --- following (stream pool) ---------------------------------------------------------------


class FollowSlots:
    """Caps concurrent log follows at the Instance's stream-pool size.

    Each follow holds a stream-pool thread while it reads; past the cap a new
    stream is refused (503) instead of queueing invisibly. When a slot frees,
    waiting followers are poked to try again.
    """

    def __init__(self, instance: Instance) -> None:
        self._instance = instance
        self.used = 0
        self._waiters: list[Callable[[], None]] = []

    @property
    def limit(self) -> int:
        return int(self._instance.stream_pool.max)

    def available(self) -> int:
        return max(0, self.limit - self.used)

    def acquire(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used = max(0, self.used - 1)
        waiters, self._waiters = self._waiters, []
        for poke in waiters:
            poke()

    def wait(self, poke: Callable[[], None]) -> None:
        if poke not in self._waiters:
            self._waiters.append(poke)

    def forget(self, poke: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(poke)


_slots: weakref.WeakKeyDictionary[Instance, FollowSlots] = weakref.WeakKeyDictionary()


def follow_slots(instance: Instance) -> FollowSlots:
    slots = _slots.get(instance)
    if slots is None:
        slots = _slots[instance] = FollowSlots(instance)
    return slots


class LogSink(Protocol):
    """Where a follower delivers (on the reactor thread)."""

    def log_line(self, pod: str, line: LogLine, cursor: str) -> None: ...

    def log_notice(self, kind: str, data: dict[str, Any]) -> None: ...

    def log_end(self, reason: str) -> None: ...


class PodFollow:
    """Follows one pod's log on a watch-pool thread until stopped or the pod is gone."""

    def __init__(
        self,
        rest: KubeRest,
        namespace: str,
        pod: str,
        container: str | None,
        gate: LineGate,
        tail: int | None,
        reactor: Any,
        deliver: Callable[[str, list[tuple[LogLine, Position | None]]], None],
        notice: Callable[[str, str], None],
        flow: threading.Event,
    ) -> None:
        self.rest = rest
        self.path = object_path("v1", "pods", pod, namespace, "log")
        self.pod = pod
        self.container = container
        self.gate = gate
        self.tail = tail
        self._reactor = reactor
        self._deliver = deliver
        self._notice = notice
        self._flow = flow
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._resp: Any = None
        self.opens = 0

    def stop(self) -> None:
        """Make ``run`` return; safe from any thread, idempotent."""
        self._stop.set()
        with self._lock:
            resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):  # it may already be closed
                resp.shutdown()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _query(self) -> dict[str, Any]:
        q: dict[str, Any] = {"follow": True, "timestamps": True, "container": self.container}
        if self.gate.position is not None:
            q["sinceTime"] = since_time(self.gate.position.ts)
        elif self.tail is not None:
            q["tailLines"] = self.tail
        return q

    def run(self) -> None:
        """The blocking loop: open, read, deliver; re-open after EOF with back-off."""
        backoff = 1.0
        last_error = ""
        while not self._stop.is_set():
            got_lines = False
            try:
                got_lines = self._one_stream()
                last_error = ""
            except KubeApiError as e:
                if self._stop.is_set():
                    return
                if e.not_found:
                    self._call(self._notice, self.pod, "the pod is gone")
                    return
                message = e.message or f"{e.status} {e.reason}"
                if message != last_error:
                    self._call(self._notice, self.pod, message)
                    last_error = message
            except Exception as e:
                if self._stop.is_set():
                    return
                message = f"{type(e).__name__}: {str(e)[:200]}"
                if message != last_error:
                    log.debug("log follow of {pod}: {error}", pod=self.pod, error=message)
                    last_error = message
            backoff = 1.0 if got_lines else min(backoff * 2, FOLLOW_BACKOFF_MAX)
            self._stop.wait(backoff)

    def _one_stream(self) -> bool:
        resp = self.rest.open(
            "GET", self.path, query=self._query(), timeout=(10.0, FOLLOW_READ_TIMEOUT)
        )
        with self._lock:
            if self._stop.is_set():
                resp.release_conn()
                return False
            self._resp = resp
        self.opens += 1
        self.gate.restart()
        splitter = LineSplitter()
        got = False
        try:
            while not self._stop.is_set():
                chunk = resp.read1(64 * 1024)
                if not chunk:
                    break
                got |= self._emit(splitter.feed(chunk))
            if not self._stop.is_set():
                got |= self._emit(splitter.flush())
        finally:
            with self._lock:
                self._resp = None
            with contextlib.suppress(Exception):
                resp.release_conn()
        return got

    def _emit(self, raw_lines: list[bytes]) -> bool:
        batch: list[tuple[LogLine, Position | None]] = []
        for raw in raw_lines:
            line = split_line(raw)
            if self.gate.admit(line):
                batch.append((line, self.gate.position))
        if batch and not self._stop.is_set():
            self._call(self._deliver, self.pod, batch)
            # Back-pressure: a slow client pauses the SSE transport, which stops reading here.
            while not self._flow.is_set() and not self._stop.is_set():
                self._flow.wait(0.5)
        return bool(batch)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if not self._stop.is_set():
            self._reactor.callFromThread(fn, *args)


class LogFollower:
    """Follows every loggable pod of one workspace, re-planning when its pods change.

    Lives on the reactor thread. ``start`` returns a Deferred that fires when the follower
    stops (client gone, workspace deleted or cancellation by the Instance); every pod
    thread is stopped and its slot released by then.
    """

    def __init__(
        self,
        instance: Instance,
        informers: Mapping[str, Any],
        namespace: str,
        workspace: str,
        container: str | None,
        tail: int,
        cursor: Cursor,
        sink: LogSink,
        reactor: Any,
        flow: threading.Event,
    ) -> None:
        self.instance = instance
        self.informers = informers
        self.namespace = namespace
        self.workspace = workspace
        self.container = container
        self.tail = tail
        self.sink = sink
        self._reactor = reactor
        self._flow = flow
        self._positions: Cursor = dict(cursor)
        self._follows: dict[str, PodFollow] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._slots = follow_slots(instance)
        self._done: Deferred[None] = Deferred(lambda _: self.stop())
        self._stopped = False
        self._announced: tuple[str, ...] | None = None
        self._told_waiting = False

    @property
    def pods(self) -> list[str]:
        return sorted(self._follows)

    def start(self) -> Deferred[None]:
        self._unsubscribe.append(self.informers["Pod"].subscribe(self._on_pod))
        self._unsubscribe.append(self.informers["Workspace"].subscribe(self._on_workspace))
        self._plan()
        return self._done

    def stop(self, reason: str | None = None) -> None:
        if self._stopped:
            return
        self._stopped = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self._slots.forget(self._plan)
        for follow in self._follows.values():
            follow.stop()
        self._follows.clear()
        if reason is not None:
            self.sink.log_end(reason)
        if not self._done.called:
            self._done.callback(None)

    # planning -----------------------------------------------------------------------------

    def _on_pod(self, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(views.C.LABEL_WORKSPACE) == self.workspace:
            self._plan()

    def _on_workspace(self, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if type_ == "DELETED" and views.name_of(obj) == self.workspace:
            self.stop("deleted")

    def _current_pods(self) -> dict[str, dict[str, Any]]:
        out = {}
        for pod in self.informers["Pod"].items():
            labels = (pod.get("metadata") or {}).get("labels") or {}
            if labels.get(views.C.LABEL_WORKSPACE) == self.workspace:
                out[views.name_of(pod)] = pod
        return out

    def _plan(self) -> None:
        """Start follows for pods that can be logged, stop those of pods that are gone."""
        if self._stopped:
            return
        pods = self._current_pods()
        for name in list(self._follows):
            if name not in pods:
                self._follows.pop(name).stop()
                self._positions.pop(name, None)
        waiting = False
        for name, pod in sorted(pods.items(), key=lambda kv: views.created_of(kv[1]) or ""):
            if name in self._follows or not views.loggable(pod, self.container):
                continue
            if not self._slots.acquire():
                waiting = True
                continue
            self._start_pod(name)
        if waiting:
            self._slots.wait(self._plan)
            if not self._told_waiting:
                self._told_waiting = True
                self.sink.log_notice(
                    "notice", {"message": "too many log streams on this cluster; waiting"}
                )
        else:
            self._told_waiting = False
        self._announce()

    def _announce(self) -> None:
        current = tuple(self.pods)
        if current != self._announced:
            self._announced = current
            self.sink.log_notice("pods", {"server": self.workspace, "pods": list(current)})

    def _start_pod(self, name: str) -> None:
        rest = self.instance.rest
        if rest is None:
            self._slots.release()
            return
        position = self._positions.get(name)
        follow = PodFollow(
            rest,
            self.namespace,
            name,
            self.container,
            LineGate(position),
            None if position is not None else self.tail,
            self._reactor,
            self._deliver,
            self._notice,
            self._flow,
        )
        self._follows[name] = follow
        try:
            d = self.instance.call_stream(follow.run)
        except RuntimeError:  # the Instance is stopping
            self._follows.pop(name, None)
            self._slots.release()
            return

        def ended(result: object) -> None:
            self._slots.release()
            if self._follows.get(name) is follow:
                # The pod's log ended for good (pod gone): forget it, re-plan later.
                del self._follows[name]
                self._announce()
            return None

        d.addBoth(ended)

    # delivery (reactor thread) ------------------------------------------------------------

    def _deliver(self, pod: str, batch: list[tuple[LogLine, Position | None]]) -> None:
        if self._stopped or pod not in self._follows:
            return
        for line, position in batch:
            if position is not None:
                self._positions[pod] = position
            live = {p: pos for p, pos in self._positions.items() if p in self._follows}
            self.sink.log_line(pod, line, encode_cursor(live))

    def _notice(self, pod: str, message: str) -> None:
        if not self._stopped:
            self.sink.log_notice("notice", {"pod": pod, "message": message})
