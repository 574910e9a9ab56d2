"""A subscriber's bounded queue (no server: the sink is a recording one, the feed a stub)."""

from __future__ import annotations

from typing import Any

from guildnet.rdb import feeds as F


class RecordingSink:
    def __init__(self) -> None:
        self.writable = True
        self.events: list[tuple[str | None, Any]] = []
        self.closed = False

    def send_json(self, obj: Any, event: str | None = None, event_id: str | None = None) -> None:
        self.events.append((event, obj))

    def close(self) -> None:
        self.closed = True


class StubFeed:
    def __init__(self) -> None:
        self.snapshots = 0

    def send_snapshot(self, sub: F.Subscriber) -> None:
        self.snapshots += 1
        sub.emit("snapshot", {"rows": []})
        sub.emit("ready", {})
        sub.synced = True


def test_writes_through_while_the_client_keeps_up() -> None:
    sink = RecordingSink()
    sub = F.Subscriber(StubFeed(), sink, resume=False)  # type: ignore[arg-type]
    sub.emit("change", {"n": 1})
    assert sink.events == [("change", {"n": 1})] and not sub.queue


def test_a_paused_client_queues_in_order_then_drains() -> None:
    sink = RecordingSink()
    sub = F.Subscriber(StubFeed(), sink, resume=False)  # type: ignore[arg-type]
    sink.writable = False
    for i in range(10):
        sub.emit("change", {"n": i})
    assert sink.events == [] and len(sub.queue) == 10
    sink.writable = True
    sub.drained()
    assert [e[1]["n"] for e in sink.events] == list(range(10)) and not sub.queue


def test_overflow_drops_the_queue_and_resyncs_with_a_fresh_snapshot() -> None:
    sink = RecordingSink()
    feed = StubFeed()
    sub = F.Subscriber(feed, sink, resume=False)  # type: ignore[arg-type]
    sub.synced = True
    sink.writable = False
    for i in range(F.SUBSCRIBER_QUEUE + 50):
        sub.emit("change", {"n": i})
    assert sub.overflowed and not sub.queue and not sub.synced  # bounded: nothing kept
    sink.writable = True
    sub.drained()
    kinds = [e[0] for e in sink.events]
    assert kinds == ["resync", "snapshot", "ready"]
    assert sink.events[0][1]["reason"] == "slow_client" and feed.snapshots == 1
    assert not sub.overflowed and sub.synced
