"""SSE changefeeds end to end: a real ``twistd guildnet``, a real RethinkDB server of this
module's own (the tests kill and restart it), browsers played by SSE clients.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.harness.rethinkdb import RethinkServer
from tests.integration.hostproc import SSE, HostProc, closed_url, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def server() -> Iterator[RethinkServer]:
    s = RethinkServer().start()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def app(server: RethinkServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProc]:
    work = tmp_path_factory.mktemp("db-feeds")
    host = HostProc(
        work,
        {
            "HOSTAPP_API_PROXY_URL": closed_url(),
            "RETHINKDB_ADDR": server.addr,
            "RETHINKDB_PING_INTERVAL": "1",
        },
    )
    with host.running():
        yield host


@pytest.fixture(autouse=True)
def server_up(server: RethinkServer) -> None:
    """A test that killed the server may have failed before restarting it."""
    if server.proc is None or server.proc.poll() is not None:
        server.start()


def table_with(app: HostProc, rows: list[dict[str, Any]]) -> str:
    db = f"f_{uuid.uuid4().hex[:8]}"
    app.ok("POST", "/api/db", {"id": db}, 201)
    app.ok("POST", f"/api/db/{db}/tables", {"name": "t"}, 201)
    if rows:
        app.ok("POST", f"/api/db/{db}/tables/t/rows", rows, 201)
    return f"/api/db/{db}/tables/t"


def feed_path(base: str, filt: Any = None) -> str:
    path = base.replace("/api/", "/sse/", 1) + "/changes"
    if filt is not None:
        path += "?filter=" + quote(json.dumps(filt))
    return path


def open_feed(app: HostProc, base: str, filt: Any = None, **kw: Any) -> tuple[SSE, dict[str, Any]]:
    sse = SSE(app, feed_path(base, filt), **kw)
    assert sse.status == 200
    snap, _ = sse.until(lambda e: e["event"] == "snapshot", timeout=20)
    ready = sse.next(timeout=10)
    assert ready["event"] == "ready"
    return sse, snap["data"]


def changefeed_jobs(server: RethinkServer) -> int:
    jobs = server.run(lambda q: q.db("rethinkdb").table("jobs").filter({"type": "query"}))
    return sum(1 for j in jobs if ".changes(" in str((j.get("info") or {}).get("query", "")))


def test_snapshot_then_changes_with_old_and_new(app: HostProc) -> None:
    base = table_with(app, [{"id": i, "v": 0} for i in range(3)])
    sse, snap = open_feed(app, base)
    try:
        assert sorted(row["id"] for row in snap["rows"]) == [0, 1, 2]
        assert snap["primaryKey"] == "id" and snap["truncated"] is False
        app.ok("POST", f"{base}/rows", {"id": 10, "v": 1}, 201)
        ev = sse.next()
        assert ev["event"] == "change" and ev["id"]
        assert ev["data"] == {"type": "add", "old": None, "new": {"id": 10, "v": 1}}
        app.ok("PATCH", f"{base}/rows/10", {"v": 2})
        ev = sse.next()
        assert ev["data"]["type"] == "change"
        assert (ev["data"]["old"]["v"], ev["data"]["new"]["v"]) == (1, 2)
        app.ok("DELETE", f"{base}/rows/1")
        ev = sse.next()
        assert ev["data"] == {"type": "remove", "old": {"id": 1, "v": 0}, "new": None}
    finally:
        sse.close()


def test_one_server_feed_per_table_and_filter(app: HostProc, server: RethinkServer) -> None:
    base = table_with(app, [{"id": i, "n": i} for i in range(10)])
    before = changefeed_jobs(server)
    subs = [open_feed(app, base)[0] for _ in range(6)]
    big = {"field": "n", "op": "ge", "value": 5}
    filtered = [open_feed(app, base, big) for _ in range(2)]
    try:
        assert changefeed_jobs(server) - before == 2
        feeds = [f for f in app.get("/api/db/health")["feeds"] if f["db"] == base.split("/")[3]]
        assert sorted((f["filtered"], f["subscribers"]) for f in feeds) == [(False, 6), (True, 2)]
        assert sorted(r["id"] for r in filtered[0][1]["rows"]) == [5, 6, 7, 8, 9]
        app.ok("POST", f"{base}/rows", [{"id": 100, "n": 1}, {"id": 101, "n": 50}], 201)
        for sse in subs:
            got = {sse.next()["data"]["new"]["id"], sse.next()["data"]["new"]["id"]}
            assert got == {100, 101}
        for sse, _ in filtered:
            assert sse.next()["data"]["new"]["id"] == 101
        # Moving a row out of the filter is a remove for the filtered feed.
        app.ok("PATCH", f"{base}/rows/101", {"n": 0})
        ev = filtered[0][0].next()
        assert ev["data"]["type"] == "remove" and ev["data"]["old"]["id"] == 101
    finally:
        for sse in subs:
            sse.close()
        for sse, _ in filtered:
            sse.close()
    # The last subscriber gone, the server feed is closed too.
    wait_for("feeds closed", lambda: changefeed_jobs(server) == before, timeout=10)
    status, body, _ = app.request("GET", feed_path(base, {"field": "n", "op": "js"}))
    assert status == 400 and body["field"] == "filter.op"
    status, body, _ = app.request("GET", feed_path(base.removesuffix("/t") + "/nope"))
    assert status == 404 and body["field"] == "table"


def test_server_death_resyncs_within_a_second_and_recovers(
    app: HostProc, server: RethinkServer
) -> None:
    base = table_with(app, [{"id": "a"}])
    sse, _ = open_feed(app, base)
    try:
        server.kill()
        killed = time.monotonic()
        ev = sse.next(timeout=5)
        assert ev["event"] == "resync", ev
        assert time.monotonic() - killed < 1.0
        server.start()
        snap, seen = sse.until(lambda e: e["event"] == "snapshot", timeout=30)
        assert all(e["event"] == "resync" for e in seen)
        assert [row["id"] for row in snap["data"]["rows"]] == ["a"]
        assert sse.next()["event"] == "ready"
        wait_for("the API", lambda: app.request("GET", f"{base}/rows")[0] == 200, timeout=20)
        app.ok("POST", f"{base}/rows", {"id": "b"}, 201)
        ev, _ = sse.until(lambda e: e["event"] == "change", timeout=10)
        assert ev["data"]["new"] == {"id": "b"}
        # A clean shutdown (SIGTERM: the server just closes) and a restart, the same way.
        server.stop()
        assert sse.next(timeout=5)["event"] == "resync"
        server.start()
        sse.until(lambda e: e["event"] == "snapshot", timeout=30)
    finally:
        sse.close()


def test_table_drop_resyncs_then_ends_with_gone(app: HostProc) -> None:
    base = table_with(app, [{"id": 1}])
    sse, _ = open_feed(app, base)
    try:
        app.ok("DELETE", f"{base}?confirm=t")
        started = time.monotonic()
        ev = sse.next(timeout=5)
        assert ev["event"] == "resync" and time.monotonic() - started < 1.0
        gone, _ = sse.until(lambda e: e["event"] == "gone", timeout=15)
        assert gone["data"]["reason"] == "not_found"
        with pytest.raises(EOFError):
            sse.next(timeout=5)
    finally:
        sse.close()


def test_last_event_id_gets_a_resync_snapshot(app: HostProc) -> None:
    base = table_with(app, [{"id": 1}])
    sse = SSE(app, feed_path(base), headers={"last-event-id": "1.7"})
    try:
        first = sse.next()
        assert first["event"] == "resync" and first["data"]["reason"] == "reconnected"
        snap = sse.next()
        assert snap["event"] == "snapshot" and [r["id"] for r in snap["data"]["rows"]] == [1]
    finally:
        sse.close()


def test_slow_client_gets_a_resync_not_unbounded_memory(app: HostProc) -> None:
    base = table_with(app, [])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", app.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock = ctx.wrap_socket(raw)
    sock.sendall(
        f"GET {feed_path(base)} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    try:
        head = b""
        while b"event: ready" not in head:
            head += sock.recv(4096)
        # Never read while ~30 MB of changes go by: the kernel buffers fill, the transport
        # pauses the stream, and the subscriber's bounded queue overflows.
        blob = "x" * 10_000
        for start in range(0, 3000, 250):
            docs = [{"id": i, "blob": blob} for i in range(start, start + 250)]
            app.ok("POST", f"{base}/rows", docs, 201)
        sock.settimeout(30)
        data = b""
        deadline = time.monotonic() + 60
        while b"slow_client" not in data and time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data = data[-200_000:] + chunk
        assert b"event: resync" in data and b"slow_client" in data
        while b"event: snapshot" not in data.split(b"slow_client", 1)[-1]:
            data += sock.recv(1 << 20)
    finally:
        sock.close()
    health = app.get("/api/db/health")
    assert health["state"] == "ready"


def test_idle_feed_gets_heartbeats(app: HostProc) -> None:
    base = table_with(app, [{"id": 1}])
    sse, _ = open_feed(app, base)
    try:
        # Nothing changes for 16 s: a comment heartbeat (every 15 s) keeps proxies and
        # browsers from closing the idle stream; no total deadline ends it.
        writer = threading.Timer(16.0, lambda: app.ok("POST", f"{base}/rows", {"id": 2}, 201))
        writer.start()
        try:
            ev = sse.next(timeout=30)
        finally:
            writer.join()
        assert ev["data"]["new"] == {"id": 2}
        assert "heartbeat" in sse.comments
    finally:
        sse.close()
