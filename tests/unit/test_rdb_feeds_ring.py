"""The fan-out ring (``Feed._rotate``) without a server: a chunk of subscribers per reactor
turn, a cursor per subscriber into the feed's log, trips that go on while they write, a
log that is trimmed, nothing scheduled once idle. The real server's end to end is
tests/integration/test_rdb_feeds.py; the latency it buys is measured by bench/changefeeds.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.rdb import feeds as F
from tests.unit.test_rdb_feeds_queue import RecordingSink, change, ready_feed


def changes_of(sink: RecordingSink) -> list[int]:
    return [e["data"]["new"]["id"] for e in sink.events if e["event"] == "change"]


def test_one_chunk_per_turn_and_a_change_that_comes_mid_trip_reaches_everyone() -> None:
    f, clock = ready_feed()
    sinks = [RecordingSink() for _ in range(F.RING_CHUNK * 2 + 10)]
    for s in sinks:
        f.add(s, resume=False)
    f._item(change(1))
    f._rotate()  # the first turn's chunk
    got = [changes_of(s) for s in sinks]
    assert got[: F.RING_CHUNK] == [[1]] * F.RING_CHUNK
    assert got[F.RING_CHUNK :] == [[]] * (len(sinks) - F.RING_CHUNK)
    f._item(change(2))  # read by the reactor between two chunks
    clock.advance(0)
    # Those not visited yet get both changes in one write; the others get 2 next trip.
    for i, s in enumerate(sinks):
        assert changes_of(s) == [1, 2], i
        writes = [w.count for w in s.writes[1:]]
        assert writes == ([1, 1] if i < F.RING_CHUNK else [2]), i
    assert clock.getDelayedCalls() == []  # an idle trip ended the ring
    # Counted for guildnet_rdb_fanout_writes_total: one write per subscriber per trip
    # that had something for it.
    assert sum(f.hub.writes) == len(sinks) + F.RING_CHUNK  # type: ignore[attr-defined]


def test_subscribers_visited_together_share_the_bytes() -> None:
    f, clock = ready_feed()
    sinks = [RecordingSink() for _ in range(5)]
    for s in sinks:
        f.add(s, resume=False)
    for i in range(3):
        f._item(change(i))
    clock.advance(0)
    assert len({id(s.writes[1]) for s in sinks}) == 1
    assert sinks[0].writes[1].count == 3


def test_a_paused_subscriber_keeps_its_place_and_catches_up_in_one_write_on_drain() -> None:
    f, clock = ready_feed()
    fast, paused = RecordingSink(), RecordingSink()
    f.add(fast, resume=False)
    sub = f.add(paused, resume=False)
    paused.writable = False
    for i in range(10):
        f._item(change(i))
        clock.advance(0)
    assert changes_of(fast) == list(range(10))
    assert changes_of(paused) == [] and not sub.overflowed
    paused.writable = True
    sub.drained()
    assert changes_of(paused) == list(range(10))
    assert len(paused.writes) == 2  # the snapshot, then one write


def test_a_big_burst_in_one_turn_does_not_resync_subscribers_that_keep_up() -> None:
    f, clock = ready_feed()
    sinks = [RecordingSink() for _ in range(3)]
    subs = [f.add(s, resume=False) for s in sinks]
    n = F.SUBSCRIBER_QUEUE * 2
    for i in range(n):
        f._item(change(i))  # one cursor batch of a large insert
    clock.advance(0)
    assert all(changes_of(s) == list(range(n)) for s in sinks)
    assert not any(s.overflowed for s in subs)


def test_the_log_is_trimmed_once_everyone_has_had_it() -> None:
    f, clock = ready_feed()
    sinks = [RecordingSink() for _ in range(4)]
    for s in sinks:
        f.add(s, resume=False)
    for i in range(F.LOG_KEEP * 3):
        f._item(change(i))
        clock.advance(0)
    assert len(f._log) < F.LOG_KEEP + 1
    assert all(changes_of(s) == list(range(F.LOG_KEEP * 3)) for s in sinks)


def test_closing_cancels_the_scheduled_chunk() -> None:
    f, clock = ready_feed()
    f.add(RecordingSink(), resume=False)
    f._item(change(1))
    assert len(clock.getDelayedCalls()) == 1
    f.close()
    assert clock.getDelayedCalls() == []


def test_subscribers_leaving_mid_trip_lose_nobody_else_an_event() -> None:
    f, clock = ready_feed()
    sinks = [RecordingSink() for _ in range(F.RING_CHUNK * 3)]
    subs = [f.add(s, resume=False) for s in sinks]
    f._item(change(1))
    f._rotate()
    for sub in subs[: F.RING_CHUNK // 2]:  # visited ones leave, shifting the ring
        f.remove(sub)
    f._item(change(2))
    clock.advance(0)
    for s in sinks[F.RING_CHUNK // 2 :]:
        assert changes_of(s) == [1, 2]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("change"), st.integers(1, 30)),
            st.tuples(st.just("turn"), st.integers(0, 3)),
            st.tuples(st.just("pause"), st.integers(0, 7)),
            st.tuples(st.just("resume"), st.integers(0, 7)),
        ),
        max_size=60,
    ),
    st.integers(1, 8),
)
def test_every_subscriber_gets_every_change_once_in_order(ops: list, nsubs: int) -> None:
    """Whatever the interleaving of changes, reactor turns and paused clients: once all
    resume and the ring runs dry, each subscriber that was never resynced has every change,
    once, in order, and the ring has nothing scheduled."""
    f, clock = ready_feed()
    sinks = [RecordingSink() for _ in range(nsubs)]
    subs = [f.add(s, resume=False) for s in sinks]
    n = 0
    for op, arg in ops:
        if op == "change":
            for _ in range(arg):
                f._item(change(n))
                n += 1
        elif op == "turn":
            for _ in range(arg):
                if f._ring_call is not None and f._ring_call.active():
                    f._ring_call.cancel()
                    f._rotate()
        elif op == "pause":
            sinks[arg % nsubs].writable = False
        else:
            sink = sinks[arg % nsubs]
            sink.writable = True
            subs[arg % nsubs].drained()
    for sink, sub in zip(sinks, subs, strict=True):
        sink.writable = True
        sub.drained()
    clock.advance(0)
    for sink, sub in zip(sinks, subs, strict=True):
        if sub.resyncs == 0:
            assert changes_of(sink) == list(range(n))
        else:  # a paused client that fell too far behind: a resync, a fresh snapshot
            events = sink.events
            last = max(i for i, e in enumerate(events) if e["event"] == "snapshot")
            assert events[last - 1]["event"] == "resync"
            rows = [r["id"] for r in events[last]["data"]["rows"]]
            after = [e["data"]["new"]["id"] for e in events[last:] if e["event"] == "change"]
            assert rows + after == list(range(n))
    assert clock.getDelayedCalls() == []
