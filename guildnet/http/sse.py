"""Server-Sent Events responses: headers, framing, heartbeats, back-pressure and cleanup.

Every stream the Host App serves (workspace changes, logs, later DB changefeeds) uses
``SSEStream`` so they behave alike: no total deadline, a comment heartbeat every 15 s so
proxies and browsers keep idle streams open, a push producer so a slow client pauses its
source instead of growing a buffer, and one ``close`` path that runs every cleanup exactly
once whether the client left, the source ended or the Instance is stopping.

Use from a Klein handler::

    stream = SSEStream(request, reactor)
    stream.on_close(unsubscribe)
    stream.start()
    stream.send_json({...}, event="snapshot")
    return stream.done          # or: await stream.done

``done`` fires with None when the stream ends, so Klein finishes the request; Klein
cancels it when the client disconnects, which closes the stream.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from zope.interface import implementer

from guildnet.http import errors
from guildnet.metrics import http as http_metrics
from guildnet.proxy.netutil import send_at_once, set_nodelay, write_through

log = Logger()

HEARTBEAT_SECONDS: Final = 15.0
RETRY_MS: Final = 3000


def frame(
    data: str, event: str | None = None, event_id: str | None = None, retry: int | None = None
) -> bytes:
    """One SSE event. Multi-line data becomes several ``data:`` lines (the spec's way)."""
    out: list[str] = []
    if event_id is not None:
        out.append(f"id: {_one_line(event_id)}")
    if event is not None:
        out.append(f"event: {_one_line(event)}")
    if retry is not None:
        out.append(f"retry: {int(retry)}")
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        out.append(f"data: {line}")
    return ("\n".join(out) + "\n\n").encode("utf-8")


def comment(text: str) -> bytes:
    return f": {_one_line(text)}\n\n".encode()


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ").replace("\0", "")


def json_data(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class Frames:
    """Encoded SSE events, written unchanged to any number of streams.

    A fan-out (one changefeed, many subscribers) encodes each event once and hands the
    same bytes to every stream; ``chunk`` (the HTTP/1.1 chunk carrying them) is also made
    once, on first use, so a stream on a chunked HTTP/1.1 response only copies it out.
    """

    __slots__ = ("_chunk", "count", "data")

    def __init__(self, data: bytes, count: int = 1) -> None:
        self.data = data
        self.count = count
        self._chunk: bytes | None = None

    @classmethod
    def event(cls, obj: Any, event: str | None = None, event_id: str | None = None) -> Frames:
        return cls(frame(json_data(obj), event, event_id))

    @classmethod
    def join(cls, parts: list[Frames]) -> Frames:
        if len(parts) == 1:
            return parts[0]
        return cls(b"".join(p.data for p in parts), sum(p.count for p in parts))

    @property
    def chunk(self) -> bytes:
        c = self._chunk
        if c is None:
            c = self._chunk = b"%x\r\n%b\r\n" % (len(self.data), self.data)
        return c


@implementer(IPushProducer)
class SSEStream:
    """One ``text/event-stream`` response; all methods run on the reactor thread.

    ``flow`` is set while the client keeps up; sources reading in threads wait on it
    (the transport pauses us when its buffer is full).
    """

    def __init__(
        self,
        request: IRequest,
        reactor: Any,
        heartbeat: float = HEARTBEAT_SECONDS,
        retry_ms: int | None = RETRY_MS,
        *,
        cluster: str = "",
        kind: str = "other",
    ) -> None:
        self.request: Any = request  # a twisted.web.server.Request
        #: guildnet_sse_streams_open{cluster, kind} while the stream is open.
        self._gauge = http_metrics.sse_gauge(cluster, kind)
        self._reactor = reactor
        self._heartbeat_interval = heartbeat
        self._retry = retry_ms
        self._heartbeat: LoopingCall | None = None
        self._cleanups: list[Callable[[], object]] = []
        self._drain_hooks: list[Callable[[], object]] = []
        self.flow = threading.Event()
        self.flow.set()
        self.open = False
        self.closed = False
        self.client_gone = False
        self.events_sent = 0
        #: Writes a ready-made HTTP/1.1 chunk straight to the TLS layer (see ``start``).
        self._direct: Callable[[bytes], object] | None = None
        self.done: Deferred[None] = Deferred(lambda _: self._cancelled())

    # life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Send the headers (and a first comment, so clients see the stream open)."""
        if self.open or self.closed:
            return
        request = self.request
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache, no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        request.responseHeaders.removeHeader(b"content-length")
        self.open = True
        request.streaming = True
        self._gauge.inc()
        request.notifyFinish().addBoth(self._finished)
        request.registerProducer(self, True)
        first = comment("stream open")
        if self._retry is not None:
            first = f"retry: {self._retry}\n\n".encode() + first
        request.write(first)
        self._direct = _direct_writer(request)
        loop = LoopingCall(self._beat)
        loop.clock = self._reactor
        loop.start(self._heartbeat_interval, now=False)
        self._heartbeat = loop

    def on_close(self, cleanup: Callable[[], object]) -> None:
        """Run ``cleanup`` once when the stream closes (at once if it already has)."""
        if self.closed:
            self._run(cleanup)
        else:
            self._cleanups.append(cleanup)

    def close(self) -> None:
        """End the stream from the server side (source ended, Instance stopping)."""
        self._close()

    def worker(self) -> Deferred[None]:
        """A Deferred for ``Instance.start_worker``: cancelling it closes the stream."""
        d: Deferred[None] = Deferred(lambda _: self.close())
        self.on_close(lambda: d.callback(None) if not d.called else None)
        return d

    def _cancelled(self) -> None:
        # Klein cancels ``done`` when the client goes away.
        self.client_gone = True
        self._close()

    def _finished(self, result: object) -> None:
        self.client_gone = True
        self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.open:
            self._gauge.dec()
        self.open = False
        self.flow.set()  # never leave a source thread waiting
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None
        self._drain_hooks.clear()
        cleanups, self._cleanups = self._cleanups, []
        for cleanup in cleanups:
            self._run(cleanup)
        request: Any = self.request
        if getattr(request, "producer", None) is self:
            with contextlib.suppress(Exception):  # the channel may already be gone
                request.unregisterProducer()
        if not self.done.called:
            self.done.callback(None)  # Klein finishes the request unless the client left

    @staticmethod
    def _run(cleanup: Callable[[], object]) -> None:
        try:
            cleanup()
        except Exception:
            log.failure("SSE stream cleanup failed")

    # writing ------------------------------------------------------------------------------

    def send(self, data: str, event: str | None = None, event_id: str | None = None) -> None:
        if not self.open:
            return
        self._write(frame(data, event, event_id))
        self.events_sent += 1

    def send_json(self, obj: Any, event: str | None = None, event_id: str | None = None) -> None:
        if self.open and errors.CHECK_RESPONSES:
            # Tests only: hold the event to its documented schema (guildnet.http.openapi.check).
            from guildnet.http.openapi.check import check_event

            check_event(self.request, event, obj)
        self.send(json_data(obj), event, event_id)

    def send_frames(self, frames: Frames) -> None:
        """Events encoded once for many streams (``Frames``): no per-stream encoding."""
        if not self.open:
            return
        direct = self._direct
        if direct is not None:
            direct(frames.chunk)
            self.request.sentLength += len(frames.data)
        else:
            self.request.write(frames.data)
        self.events_sent += frames.count

    def comment(self, text: str) -> None:
        if self.open:
            self._write(comment(text))

    def _beat(self) -> None:
        if self.open and self.flow.is_set():
            self._write(comment("heartbeat"))

    def _write(self, data: bytes) -> None:
        direct = self._direct
        if direct is not None:
            direct(b"%x\r\n%b\r\n" % (len(data), data))
            self.request.sentLength += len(data)
        else:
            self.request.write(data)

    # IPushProducer ------------------------------------------------------------------------

    def pauseProducing(self) -> None:
        self.flow.clear()

    def resumeProducing(self) -> None:
        self.flow.set()
        for hook in list(self._drain_hooks):
            self._run(hook)

    def on_drain(self, hook: Callable[[], object]) -> None:
        """Call ``hook`` each time the client has caught up (the transport resumed us)."""
        self._drain_hooks.append(hook)

    @property
    def writable(self) -> bool:
        """True while the client keeps up: write now; else queue (and bound the queue)."""
        return self.open and self.flow.is_set()

    def stopProducing(self) -> None:
        # The transport may stop us before the request hears of the lost connection; close
        # on the next turn, so Klein already knows the request is over and won't finish it.
        self.client_gone = True
        self.flow.set()
        self._reactor.callLater(0, self._close)


def _direct_writer(request: Any) -> Callable[[bytes], object] | None:
    """How to write body chunks of this response without ``Request.write``, if it can be.

    Only for a chunked HTTP/1.1 response (headers sent, no content encoding) over a TLS
    transport that can encrypt a write at once (``LeanTLSTransport.write_now``): a
    changefeed writes the same event to hundreds of streams in one reactor turn, and per
    stream ``Request.write`` re-frames the chunk while Twisted's TLS layer holds each write
    for a timer of its own. The ciphertext is sent at once (``send_at_once``, behind
    anything written before) with Nagle off; a full socket buffer still queues in
    Twisted and pauses the stream (back-pressure is unchanged).
    """
    channel = getattr(request, "channel", None)
    transport: Any = getattr(channel, "transport", None)
    write_now = getattr(transport, "write_now", None)
    if (
        write_now is None
        or not getattr(request, "chunked", False)
        or not getattr(request, "startedWriting", False)
        or getattr(request, "_encoder", None) is not None
        or getattr(request, "method", b"GET") == b"HEAD"
    ):
        return None
    set_nodelay(transport)
    write_through(transport)
    # The encrypted event leaves at once, not at the end of the turn: with hundreds of
    # streams written in one turn, the first would otherwise wait for the last.
    transport._send_at_once = send_at_once(transport)
    result: Callable[[bytes], object] = write_now
    return result
