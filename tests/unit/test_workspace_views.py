"""Pure parts of the workspace API: JSON shapes, request parsing, log cursors, SSE framing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from guildnet.http.sse import SSEStream, comment, frame
from guildnet.operator import constants as C
from guildnet.operator.spec import SpecError
from guildnet.workspaces import logs as L
from guildnet.workspaces import views as V


def ws(
    name: str = "code-a1",
    *,
    image: str = "codercom/code-server:4",
    status: dict[str, Any] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    managed: bool = True,
    **spec: Any,
) -> dict[str, Any]:
    labels = {C.LABEL_MANAGED_BY: C.MANAGED_BY} if managed else {}
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND,
        "metadata": {
            "name": name,
            "namespace": "team",
            "creationTimestamp": created,
            "labels": labels,
            "resourceVersion": "1",
        },
        "spec": {"image": image, **spec},
        "status": status or {},
    }


def pod(
    name: str, workspace: str | None, *, running: bool = True, created: str = "2026-01-01T00:00:01Z"
) -> dict[str, Any]:
    state: dict[str, Any] = (
        {"running": {"startedAt": created}}
        if running
        else {"waiting": {"reason": "ContainerCreating"}}
    )
    labels = {C.LABEL_WORKSPACE: workspace} if workspace else {}
    return {
        "metadata": {"name": name, "labels": labels, "creationTimestamp": created},
        "spec": {"nodeName": "node-0"},
        "status": {
            "phase": "Running" if running else "Pending",
            "podIP": "198.18.0.5",
            "conditions": [{"type": "Ready", "status": "True" if running else "False"}],
            "containerStatuses": [
                {"name": "workspace", "ready": running, "restartCount": 2, "state": state}
            ],
        },
    }


def event(pod_name: str, reason: str, last: str, count: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{pod_name}.{reason}", "creationTimestamp": last},
        "involvedObject": {"kind": "Pod", "name": pod_name},
        "reason": reason,
        "message": f"{reason} happened",
        "type": "Warning" if reason == "Failed" else "Normal",
        "count": count,
        "firstTimestamp": last,
        "lastTimestamp": last,
        "source": {"component": "kubelet"},
    }


# --- requests -----------------------------------------------------------------------------


def test_parse_job_splits_name_from_spec_and_names_bad_fields() -> None:
    name, spec = V.parse_job({"image": "nginx:1", "name": "web-1", "env": [{"name": "A"}]})
    assert name == "web-1" and spec.image == "nginx:1" and spec.env[0].name == "A"
    assert V.parse_job({"image": "nginx"})[0] is None
    cases = [
        ({}, "image"),
        ({"image": "x", "ports": [{"containerPort": 70000}]}, "ports[0].containerPort"),
        ({"image": "x", "name": "Bad_Name"}, "name"),
        ({"image": "x", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        assert isinstance(body, dict)
        with pytest.raises(SpecError) as info:
            V.parse_job(body)
        assert info.value.field == field


def test_workspace_manifest_is_labelled_managed() -> None:
    _, spec = V.parse_job({"image": "nginx:1", "args": ["-g"]})
    m = V.workspace_manifest("web-1", "team", spec)
    assert m["metadata"] == {
        "name": "web-1",
        "namespace": "team",
        "labels": {C.LABEL_MANAGED_BY: C.MANAGED_BY},
    }
    assert m["spec"] == {"image": "nginx:1", "args": ["-g"]} and V.is_managed(m)
    assert V.new_name(spec, suffix="bcd23") == "nginx-bcd23"


def test_workspace_manifest_records_its_owner() -> None:
    _, spec = V.parse_job({"image": "nginx:1"})
    m = V.workspace_manifest("web-1", "team", spec, owner="alice@example.com")
    assert m["metadata"]["annotations"] == {"guildnet.io/owner": "alice@example.com"}
    label = m["metadata"]["labels"]["guildnet.io/owner"]
    assert label.startswith("alice_at_example.com-") and len(label) <= 63
    assert m["metadata"]["labels"][C.LABEL_MANAGED_BY] == C.MANAGED_BY
    assert V.server_summary(m, "default")["owner"] == "alice@example.com"


# --- servers ------------------------------------------------------------------------------


def test_server_url_per_cluster() -> None:
    assert V.server_url("default", "a") == "/proxy/server/a/"
    assert V.server_url("lab", "a") == "/api/cluster/lab/proxy/server/a/"


def test_summary_and_list_order() -> None:
    running = ws("b", status={"phase": "Running", "readyReplicas": 1, "message": "ok"})
    older = ws("a", created="2025-12-31T00:00:00Z")
    items = V.server_list([running, older], "default")
    assert [i["id"] for i in items] == ["a", "b"]
    assert items[0]["phase"] == "Pending" and items[0]["ready"] is False
    assert items[1] == {
        "id": "b",
        "name": "b",
        "image": "codercom/code-server:4",
        "phase": "Running",
        "ready": True,
        "readyReplicas": 1,
        "url": "/proxy/server/b/",
        "created": "2026-01-01T00:00:00Z",
        "message": "ok",
        "managed": True,
        "stopped": False,
        "owner": None,
        "idle": None,
    }
    idle = {"timeoutSeconds": 60, "stopsAt": "x"}
    assert V.server_list([running], "default", idle=lambda w: idle)[0]["idle"] == idle
    deleting = ws("c", status={"phase": "Running"})
    deleting["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    assert V.server_summary(deleting, "default")["phase"] == "Terminating"


def test_detail_has_ports_pods_events_and_no_password() -> None:
    w = ws("code-a1", status={"phase": "Starting", "conditions": [{"type": "Accepted"}]})
    pods = [pod("code-a1-5d8f-abcde", "code-a1")]
    events = [
        event("code-a1-5d8f-abcde", "Pulling", "2026-01-01T00:00:02Z"),
        event("code-a1-5d8f-abcde", "Scheduled", "2026-01-01T00:00:01Z"),
    ]
    d = V.server_detail(w, "lab", "team", pods, events, has_password=True)
    assert d["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert d["proxyUrl"] == "/api/cluster/lab/proxy/server/code-a1/"
    assert d["serviceDNS"] == "code-a1.team.svc.cluster.local"
    assert d["conditions"] == [{"type": "Accepted"}] and d["hasPassword"] is True
    assert [e["reason"] for e in d["events"]] == ["Scheduled", "Pulling"]
    (p,) = d["pods"]
    assert p["name"] == "code-a1-5d8f-abcde" and p["ready"] is True
    assert p["containers"][0] == {
        "name": "workspace",
        "ready": True,
        "restarts": 2,
        "state": "running",
        "reason": "",
        "message": "",
    }
    assert "password" not in repr(d).replace("hasPassword", "")


def test_ports_fall_back_for_specs_the_parser_rejects() -> None:
    w = ws("x", image="nginx", ports=[{"containerPort": 99999}])
    assert V.workspace_ports(w) == [{"containerPort": 99999}]
    assert [p["containerPort"] for p in V.workspace_ports(ws("y", image="nginx"))] == [8080, 8443]


def test_workspace_of_pod_uses_labels_then_names() -> None:
    p = pod("other-name-1", "ws-one")
    assert V.workspace_of_pod("other-name-1", {"other-name-1": p}, []) == "ws-one"
    assert V.workspace_of_pod("ws-one-5d8f-abcde", {}, ["ws-one"]) == "ws-one"
    assert V.workspace_of_pod("ws-one-5d8f-abcde", {}, ["ws"]) is None
    assert V.workspace_of_pod("unlabelled", {"unlabelled": pod("unlabelled", None)}, []) is None
    evs = [event("ws-one-5d8f-abcde", "Killing", "t1"), event("zzz-1-2", "Pulled", "t2")]
    assert len(V.events_of(evs, "ws-one", {}, ["ws-one"])) == 1


def test_loggable_only_after_the_container_ran() -> None:
    assert V.loggable(pod("a", "w"))
    assert not V.loggable(pod("a", "w", running=False))
    assert not V.loggable(pod("a", "w"), container="sidecar")


def test_recent_events_are_bounded_and_ordered() -> None:
    evs = [
        event("p-1-2", f"R{i:03d}", f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z") for i in range(80)
    ]
    out = V.recent_events(evs, limit=50)
    assert len(out) == 50 and out[0]["reason"] == "R030" and out[-1]["reason"] == "R079"


def test_server_change() -> None:
    a = V.server_state(ws("a"), "default")
    b = V.server_state(ws("a", status={"phase": "Running"}), "default")
    assert V.server_change("ADDED", a, None) == "created"
    assert V.server_change("MODIFIED", b, a) == "updated"
    assert V.server_change("MODIFIED", a, dict(a)) is None
    assert V.server_change("DELETED", None, a) == "deleted"


# --- log queries --------------------------------------------------------------------------


def args(**kw: str) -> dict[bytes, list[bytes]]:
    return {k.encode(): [v.encode()] for k, v in kw.items()}


def test_log_query_defaults_and_bounds() -> None:
    assert L.parse_log_query({}) == L.LogQuery(tail=200, container=None, previous=False)
    q = L.parse_log_query(args(tail="10000", container="workspace", previous="true", format="json"))
    assert q == L.LogQuery(10000, "workspace", True, True)
    for bad, field in [
        (args(tail="0"), "tail"),
        (args(tail="10001"), "tail"),
        (args(tail="-1"), "tail"),
        (args(tail="abc"), "tail"),
        (args(container="Bad Name"), "container"),
        (args(previous="maybe"), "previous"),
        (args(format="xml"), "format"),
    ]:
        with pytest.raises(L.BadQuery) as info:
            L.parse_log_query(bad)
        assert info.value.field == field


def test_render_text_and_json() -> None:
    one = [L.PodLog("p1", "a\nb\n")]
    assert L.render_text(one) == "a\nb\n"
    two = [L.PodLog("p1", "a\n"), L.PodLog("p2", "", "container is waiting to start")]
    assert (
        L.render_text(two) == "==> pod/p1 <==\na\n==> pod/p2: container is waiting to start <==\n"
    )
    assert L.render_json("w", two)["pods"][0] == {"pod": "p1", "lines": ["a"], "error": None}


# --- timestamps, cursor, de-duplication ---------------------------------------------------


def test_timestamps_compare_as_numbers() -> None:
    a = L.parse_timestamp("2026-01-01T00:00:00.1Z")
    b = L.parse_timestamp("2026-01-01T00:00:00.123Z")
    c = L.parse_timestamp("2026-01-01T01:00:00.000000000+01:00")
    assert a is not None and b is not None and a < b
    assert c == L.parse_timestamp("2026-01-01T00:00:00Z")
    assert L.parse_timestamp("yesterday") is None
    assert L.since_time(b) == "2026-01-01T00:00:00Z"
    line = L.split_line(b"2026-01-01T00:00:01.500000000Z hello world\n")
    assert line.text == "hello world" and line.time == "2026-01-01T00:00:01.500000000Z"
    assert L.split_line(b"no stamp here").ts is None


def test_cursor_round_trip_and_garbage() -> None:
    cur = {
        "p-1": L.Position(
            "2026-01-01T00:00:01.5Z", L.parse_timestamp("2026-01-01T00:00:01.5Z") or 0, 3
        )
    }
    assert L.decode_cursor(L.encode_cursor(cur)) == cur
    assert L.decode_cursor("garbage") == {}
    assert L.decode_cursor("p/notatime/1,q/2026-01-01T00:00:00Z/0") == {}
    assert L.decode_cursor("x" * 5000) == {}


stamps = st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=40)


@given(stamps, st.integers(min_value=0, max_value=40))
def test_gate_resume_never_replays_or_loses(seconds: list[int], cut: int) -> None:
    """Deliver a prefix, resume from the position on a re-sent (sinceTime) stream: exact."""
    log = sorted(seconds)
    lines = [L.LogLine(f"2026-01-01T00:00:0{s}Z", s * 10**9, f"l{i}") for i, s in enumerate(log)]
    cut = min(cut, len(lines))
    first = L.LineGate()
    sent = [ln for ln in lines[:cut] if first.admit(ln)]
    resumed = L.LineGate(first.position)
    resumed.restart()
    since = first.position.ts if first.position else None
    replay = [ln for ln in lines if since is None or (ln.ts is not None and ln.ts >= since)]
    sent += [ln for ln in replay if resumed.admit(ln)]
    assert [ln.text for ln in sent] == [ln.text for ln in lines]


def test_splitter_cuts_endless_lines() -> None:
    s = L.LineSplitter(max_line=4)
    assert s.feed(b"ab\ncdefghijk") == [b"ab", b"cdef", b"ghij"]
    assert s.feed(b"l\n") == [b"kl"]
    assert s.feed(b"tail") == [] and s.flush() == [b"tail"]


# --- SSE ----------------------------------------------------------------------------------


class PushRequest(DummyRequest):
    """DummyRequest treats every producer as a pull producer; SSEStream is a push one."""

    producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


def sse_request() -> Any:
    return PushRequest([b"sse"])


def test_frame() -> None:
    assert frame("a\nb", event="x", event_id="1\n2") == b"id: 1 2\nevent: x\ndata: a\ndata: b\n\n"
    assert comment("hi") == b": hi\n\n"


def test_sse_stream_heartbeats_and_cleans_up_once() -> None:
    clock = Clock()
    request = sse_request()
    stream = SSEStream(request, clock, heartbeat=15.0)
    closed: list[int] = []
    stream.on_close(lambda: closed.append(1))
    stream.start()
    assert request.responseHeaders.getRawHeaders(b"content-type") == [
        b"text/event-stream; charset=utf-8"
    ]
    assert request.responseHeaders.getRawHeaders(b"x-accel-buffering") == [b"no"]
    stream.send_json({"a": 1}, event="snapshot")
    clock.advance(15)
    clock.advance(15)
    body = b"".join(request.written)
    assert body.count(b": heartbeat\n\n") == 2 and b'event: snapshot\ndata: {"a":1}\n\n' in body
    stream.pauseProducing()
    assert not stream.flow.is_set()
    clock.advance(15)
    assert b"".join(request.written).count(b": heartbeat") == 2  # no beats while paused
    assert request.producer is stream
    request.processingFailed(Failure(ConnectionError("gone")))  # fires notifyFinish errback
    assert closed == [1] and stream.closed and stream.done.called and stream.flow.is_set()
    assert request.producer is None
    assert not clock.getDelayedCalls()
    stream.close()
    assert closed == [1]


def test_sse_worker_cancel_closes_the_stream() -> None:
    clock = Clock()
    request = sse_request()
    stream = SSEStream(request, clock)
    stream.start()
    worker = stream.worker()
    worker.cancel()
    assert stream.closed and stream.done.called and not clock.getDelayedCalls()
    assert isinstance(stream.flow, type(threading.Event()))
