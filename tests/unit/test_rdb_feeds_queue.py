"""A feed's fan-out and a subscriber's bounded queue, without a server: the sinks record
the bytes they are given, the feed is driven with the items a changefeed cursor yields
(the real server's end to end is tests/integration/test_rdb_feeds.py).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from twisted.internet.task import Clock

from guildnet.http.sse import Frames
from guildnet.metrics.core import REGISTRY
from guildnet.rdb import feeds as F


def parse(data: bytes) -> list[dict[str, Any]]:
    """SSE bytes back into events (id, event, data)."""
    events = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        ev: dict[str, Any] = {"id": None, "event": None, "data": None}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            ev[key] = json.loads(value) if key == "data" else value
        events.append(ev)
    return events


class RecordingSink:
    def __init__(self) -> None:
        self.writable = True
        self.writes: list[Frames] = []
        self.closed = False

    def send_frames(self, frames: Frames) -> None:
        self.writes.append(frames)

    def close(self) -> None:
        self.closed = True

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for w in self.writes for e in parse(w.data)]

    def kinds(self) -> list[str | None]:
        return [e["event"] for e in self.events]


def feed(cluster: str = "unit") -> tuple[F.Feed, Clock]:
    clock = Clock()
    writes: list[int] = []
    hub = SimpleNamespace(
        reactor=clock,
        manager=SimpleNamespace(cluster_id=cluster),
        drop=lambda f: None,
        fanout_writes=writes.append,
        writes=writes,  # what the ring reported (guildnet_rdb_fanout_writes_total)
    )
    return F.Feed(hub, "d", "t", None, "k"), clock  # type: ignore[arg-type]


def ready_feed(rows: int = 0) -> tuple[F.Feed, Clock]:
    f, clock = feed()
    f.epoch = 1
    f._item({"state": "initializing"})
    for i in range(rows):
        f._item({"type": "initial", "new_val": {"id": i}})
    f._item({"state": "ready"})
    return f, clock


def change(i: int) -> dict[str, Any]:
    return {"type": "add", "old_val": None, "new_val": {"id": i}}


def resets(action: str, cluster: str = "unit") -> float:
    labels = {"cluster": cluster, "action": action}
    return REGISTRY.get_sample_value("guildnet_rdb_subscriber_resets_total", labels) or 0.0


def test_each_change_is_encoded_once_and_a_turn_leaves_in_one_write() -> None:
    f, clock = ready_feed(rows=2)
    sinks = [RecordingSink() for _ in range(3)]
    for s in sinks:
        f.add(s, resume=False)
    for i in range(10, 13):
        f._item(change(i))
    assert all(len(s.writes) == 1 for s in sinks)  # only the snapshot so far
    clock.advance(0)  # the end of the turn
    batches = [s.writes[1] for s in sinks]
    assert batches[0] is batches[1] is batches[2]  # the same bytes for everyone
    assert batches[0].count == 3
    events = parse(batches[0].data)
    assert [e["event"] for e in events] == ["change"] * 3
    assert [e["id"] for e in events] == ["1.1", "1.2", "1.3"]
    assert [e["data"]["new"]["id"] for e in events] == [10, 11, 12]


def test_subscribers_joining_together_share_one_snapshot_encoding() -> None:
    f, _ = ready_feed(rows=5)
    a, b = RecordingSink(), RecordingSink()
    f.add(a, resume=False)
    f.add(b, resume=False)
    assert a.writes[0] is b.writes[0]
    assert a.kinds() == ["snapshot", "ready"]
    assert sorted(r["id"] for r in a.events[0]["data"]["rows"]) == [0, 1, 2, 3, 4]


def test_a_subscriber_joining_mid_turn_gets_no_change_already_in_its_snapshot() -> None:
    f, clock = ready_feed()
    early = RecordingSink()
    f.add(early, resume=False)
    f._item(change(1))  # gathered, not yet written
    late = RecordingSink()
    f.add(late, resume=False)  # its snapshot has row 1
    f._item(change(2))
    clock.advance(0)
    assert [r["id"] for r in late.events[0]["data"]["rows"]] == [1]
    assert [e["data"]["new"]["id"] for e in late.events if e["event"] == "change"] == [2]
    assert [e["data"]["new"]["id"] for e in early.events if e["event"] == "change"] == [1, 2]
    # The snapshot's id is the last change it contains.
    assert late.events[0]["id"] == "1.1"


def test_writes_through_while_the_client_keeps_up() -> None:
    sink = RecordingSink()
    f, _ = feed()
    sub = F.Subscriber(f, sink, resume=False)
    sub.emit("change", {"n": 1})
    assert [(e["event"], e["data"]) for e in sink.events] == [("change", {"n": 1})]
    assert not sub.queue


def test_a_paused_client_queues_in_order_then_drains_in_one_write() -> None:
    sink = RecordingSink()
    f, _ = feed()
    sub = F.Subscriber(f, sink, resume=False)
    sink.writable = False
    for i in range(10):
        sub.emit("change", {"n": i})
    assert sink.writes == [] and sub.queued == 10
    sink.writable = True
    sub.drained()
    assert len(sink.writes) == 1
    assert [e["data"]["n"] for e in sink.events] == list(range(10)) and not sub.queue


def test_overflow_drops_the_queue_and_resyncs_with_a_fresh_snapshot() -> None:
    f, clock = ready_feed(rows=1)
    sink = RecordingSink()
    sub = f.add(sink, resume=False)
    before = resets("slow_client")
    sink.writable = False
    for i in range(F.SUBSCRIBER_QUEUE + 50):
        f._item(change(100 + i))
        clock.advance(0)
    assert sub.overflowed and not sub.queue and not sub.synced  # bounded: nothing kept
    sink.writable = True
    sub.drained()
    kinds = sink.kinds()
    assert kinds == ["snapshot", "ready", "resync", "snapshot", "ready"]
    assert sink.events[2]["data"]["reason"] == "slow_client"
    assert len(sink.events[3]["data"]["rows"]) == F.SUBSCRIBER_QUEUE + 51
    assert not sub.overflowed and sub.synced
    assert resets("slow_client") == before + 1


def test_a_lost_feed_sends_pending_changes_first_then_one_shared_resync() -> None:
    f, _ = ready_feed()
    sinks = [RecordingSink() for _ in range(4)]
    for s in sinks:
        f.add(s, resume=False)
    before = resets("feed_lost")
    f._item(change(7))
    f._lost(RuntimeError("connection lost"))
    assert sinks[0].kinds() == ["snapshot", "ready", "change", "resync"]
    assert sinks[0].writes[-1] is sinks[3].writes[-1]
    assert resets("feed_lost") == before + 4
    assert not any(s.closed for s in sinks)
