"""The idle-culling decision and its readers (``workspaces.idle``), and activity records."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from guildnet.proxy.activity import Activity, ActivityBook, is_keepalive
from guildnet.proxy.wsframes import OP_BINARY, OP_PING, OP_PONG, OP_TEXT, encode_frame
from guildnet.workspaces import idle
from guildnet.workspaces.idle import Witnesses, decide

T0 = 1_780_000_000.0  # a wall-clock time in 2026
times = st.floats(T0 - 86400 * 30, T0 + 86400 * 30, allow_nan=False)
maybe_times = st.none() | times
timeouts = st.integers(0, idle.MAX_IDLE_TIMEOUT).map(float)


@st.composite
def witnesses(draw: st.DrawFn) -> Witnesses:
    return Witnesses(
        watching_since=draw(times),
        proxy=draw(maybe_times),
        recorded=draw(maybe_times),
        app=draw(maybe_times),
        started=draw(maybe_times),
    )


def known(w: Witnesses, now: float) -> list[float]:
    """The witnesses decide() believes: its own start always, others unless far ahead."""
    values = [w.proxy, w.recorded, w.app, w.started]
    return [w.watching_since] + [v for v in values if v is not None and v <= now + idle.MAX_SKEW]


@given(witnesses(), timeouts, times)
@settings(max_examples=400)
def test_never_culls_before_the_timeout_after_any_witness(
    w: Witnesses, timeout: float, now: float
) -> None:
    d = decide(w, timeout, now)
    if d.cull:
        assert timeout > 0
        # Every believable witness (not from the far future) is at least `timeout` old.
        for value in known(w, now):
            assert now - min(value, now) >= timeout
    if timeout == 0:
        assert not d.cull and d.due_at is None


@given(witnesses(), timeouts, times)
@settings(max_examples=400)
def test_last_activity_is_the_latest_witness_and_due_follows(
    w: Witnesses, timeout: float, now: float
) -> None:
    d = decide(w, timeout, now)
    assert d.last_activity == min(max(known(w, now)), now)
    if timeout > 0:
        assert d.due_at == d.last_activity + timeout
        assert d.cull == (now >= d.due_at)


@given(witnesses(), st.integers(1, idle.MAX_IDLE_TIMEOUT).map(float), times, times)
@settings(max_examples=300)
def test_new_activity_never_brings_a_cull_forward(
    w: Witnesses, timeout: float, now: float, later: float
) -> None:
    """Adding a witness (more activity) can only push the due time later."""
    assume(later <= now + idle.MAX_SKEW)  # a believable one (far-future values are ignored)
    before = decide(w, timeout, now)
    proxy = later if w.proxy is None else max(w.proxy, later)
    more = decide(Witnesses(w.watching_since, proxy, w.recorded, w.app, w.started), timeout, now)
    assert more.due_at is not None and before.due_at is not None
    assert more.due_at >= before.due_at
    assert not (more.cull and not before.cull)


@given(times, st.integers(1, 86400).map(float), st.floats(0, 86400 * 3))
def test_a_restart_only_delays(last: float, timeout: float, restart_after: float) -> None:
    """A Host App restart knows only the recorded annotation; it culls no earlier."""
    restart = last + restart_after
    before_restart = decide(Witnesses(watching_since=last - 10, proxy=last), timeout, restart)
    after = decide(Witnesses(watching_since=restart, recorded=last), timeout, restart)
    assert after.due_at is not None and before_restart.due_at is not None
    assert after.due_at >= before_restart.due_at
    assert not after.cull


def test_examples() -> None:
    w = Witnesses(watching_since=T0, proxy=T0 + 100, app=T0 + 50)
    d = decide(w, 1800, T0 + 1000)
    assert (d.cull, d.source, d.last_activity, d.due_at) == (False, "proxy", T0 + 100, T0 + 1900)
    assert decide(w, 1800, T0 + 1900).cull
    assert not decide(w, 0, T0 + 10**6).cull
    # A far-future witness (a forged annotation, a broken clock) is ignored...
    forged = Witnesses(watching_since=T0, recorded=T0 + 10**6)
    assert decide(forged, 60, T0 + 61).cull
    # ...a slightly fast clock means "active now".
    fast = decide(Witnesses(watching_since=T0, recorded=T0 + 100), 60, T0 + 50)
    assert (fast.last_activity, fast.cull) == (T0 + 50, False)


# --- reading a Workspace ------------------------------------------------------------------


def ws(**kw: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "w", "annotations": {}},
        "spec": {"image": "codercom/code-server:4"},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        },
    }
    for key, value in kw.items():
        obj[key].update(value)
    return obj


def test_reading_a_workspace() -> None:
    w = ws()
    assert idle.cullable(w)
    assert idle.started_of(w) == idle.parse_time("2026-01-01T00:00:00Z")
    assert idle.timeout_of(w, 900) == 900
    assert idle.timeout_of(ws(spec={"idleTimeoutSeconds": 0}), 900) == 0
    assert idle.timeout_of(ws(spec={"idleTimeoutSeconds": 60}), 0) == 60
    assert idle.timeout_of(ws(spec={"idleTimeoutSeconds": True}), 5) == 5
    ephemeral = {"storage": {"ephemeral": True}}
    assert idle.timeout_of(ws(spec=ephemeral), 900) == 0  # a stop would lose its files
    assert idle.timeout_of(ws(spec={**ephemeral, "idleTimeoutSeconds": 60}), 900) == 60
    assert not idle.cullable(ws(spec={"stopped": True}))
    assert not idle.cullable(ws(status={"phase": "Starting"}))
    assert not idle.cullable(ws(metadata={"deletionTimestamp": "2026-01-01T00:00:00Z"}))
    patch = idle.record_patch(T0 + 0.9)
    recorded = ws(metadata=patch["metadata"])
    assert idle.recorded_of(recorded) == T0
    assert (
        idle.recorded_of(ws(metadata={"annotations": {idle.ANNOTATION_LAST_ACTIVITY: "x"}})) is None
    )


def test_should_record_at_most_once_a_minute_and_only_news() -> None:
    assert not idle.should_record(None, None, None, 0)
    assert idle.should_record(T0, None, None, 0)
    assert not idle.should_record(T0, T0, None, 0)  # nothing new
    assert not idle.should_record(T0 + 0.5, T0, None, 0)  # the annotation has whole seconds
    assert idle.should_record(T0 + 5, T0, None, 0)
    assert not idle.should_record(T0 + 5, T0, 100.0, 159.0)  # wrote 59 s ago
    assert idle.should_record(T0 + 5, T0, 100.0, 160.0)
    assert idle.record_every(1800) == 60 and idle.record_every(8) == 2 and idle.record_every(1) == 1
    assert idle.should_record(T0 + 5, T0, 100.0, 102.0, every=idle.record_every(8))


def test_heartbeats() -> None:
    body = json.dumps({"status": "alive", "lastHeartbeat": 1780000000123}).encode()
    assert idle.parse_heartbeat("code-server", body) == pytest.approx(1780000000.123)
    never = json.dumps({"status": "expired", "lastHeartbeat": 0}).encode()
    assert idle.parse_heartbeat("code-server", never) is None
    status = {"last_activity": "2026-05-28T20:26:40.123456Z", "started": "x", "kernels": 0}
    assert idle.parse_heartbeat("jupyter", json.dumps(status).encode()) == idle.parse_time(
        "2026-05-28T20:26:40.123456Z"
    )
    for bad in (b"", b"[]", b"{", b'{"lastHeartbeat": "1"}', b"\xff"):
        assert idle.parse_heartbeat("code-server", bad) is None
        assert idle.parse_heartbeat("jupyter", bad) is None
    assert idle.parse_heartbeat("generic", body) is None


def test_jupyter_token_from_spec_or_secret() -> None:
    w = ws(spec={"env": [{"name": "JUPYTER_TOKEN", "value": "abc"}]})
    assert idle.jupyter_token(w, "fromsecret") == "abc"
    assert idle.jupyter_token(ws(), "fromsecret") == "fromsecret"
    assert idle.jupyter_token(ws(), None) is None
    assert idle.jupyter_token(ws(), "bad token") is None


def test_view_and_message() -> None:
    d = decide(Witnesses(watching_since=T0), 1800, T0 + 60)
    assert idle.idle_view(ws(), d) == {
        "timeoutSeconds": 1800,
        "lastActivity": idle.format_time(T0),
        "idleSince": idle.format_time(T0),
        "stopsAt": idle.format_time(T0 + 1800),
    }
    assert idle.idle_view(ws(), None) is None
    off = idle.idle_view(ws(), decide(Witnesses(watching_since=T0), 0, T0))
    assert off is not None and off["stopsAt"] is None and off["timeoutSeconds"] == 0
    assert idle.stop_message(d).startswith("no activity for 30 min (last activity 20")


# --- activity records ---------------------------------------------------------------------


@given(st.binary(max_size=125), st.sampled_from([OP_PING, OP_PONG]), st.booleans())
def test_lone_ping_and_pong_frames_are_keepalives(payload: bytes, op: int, masked: bool) -> None:
    frame = encode_frame(payload, op) if masked else bytes([0x80 | op, len(payload)]) + payload
    assert is_keepalive(frame)
    assert not is_keepalive(frame + b"\x81\x00")  # followed by data: not only a keepalive


@given(st.binary(max_size=200), st.sampled_from([OP_TEXT, OP_BINARY]))
def test_data_frames_are_activity(payload: bytes, op: int) -> None:
    frame = encode_frame(payload, op)
    assert not is_keepalive(frame)


@given(st.binary(max_size=140))
def test_keepalive_check_never_raises(data: bytes) -> None:
    assert is_keepalive(data) in (True, False)


def test_book() -> None:
    book = ActivityBook()
    a = book.entry("c", "ns", "w")
    assert book.entry("c", "ns", "w") is a and len(book) == 1
    assert book.last_wall("c", "ns", "w") is None  # resolved, never used yet
    a.at = T0
    assert book.last_wall("c", "ns", "w") == T0
    assert [e.name for e in book.of_cluster("c")] == ["w"]
    book.forget("c", "ns", "w")
    assert book.get("c", "ns", "w") is None
    assert Activity("c", "n", "w").at == 0.0
