"""The tailnet listener over a real tailnet: headscale and tailscaled on loopback.

Nodes (tests/harness/tailnet.py): ``host`` (the Host App's node, user hostuser),
``node-a`` (user-a), ``node-b`` (user-b), ``node-admin`` (admin) and ``node-stranger``
(a user no grant names). The Host App runs as ``twistd guildnet`` with
``TAILNET_LISTEN=127.0.0.1:<port>``: the host node's userspace tailscaled forwards the
tailnet's connections to ``100.64.x.y:<port>`` there, and the listener asks the host
node's LocalAPI WhoIs who each one is from. Every client request below is made *by a
node*, through that node's SOCKS5 proxy, to the host node's tailnet address.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.hostapp import exchange, insecure_context
from tests.harness.tailnet import Node, Tailnet, login_of, running_tailnet
from tests.integration.hostproc import HostProc, cluster_env, free_port, wait_for

NODES = {
    "host": "hostuser",
    "node-a": "user-a",
    "node-b": "user-b",
    "node-admin": "admin",
    "node-stranger": "stranger",
}
GRANTS = {"user-a": "user", "user-b": "user", "admin": "admin"}
WHOIS_TTL = 2.0


class TailnetHostProc(HostProc):
    """The Host App child, with the loopback port its tailnet listener binds."""

    tailnet_port = 0


@pytest.fixture(scope="module")
def tailnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tailnet]:
    with running_tailnet(NODES, GRANTS, tmp_path_factory.mktemp("tailnet")) as net:
        print(f"\n[tailnet] {len(net.nodes)} nodes up in {net.startup_seconds:.1f}s")  # type: ignore[attr-defined]
        yield net


@pytest.fixture(scope="module")
def hostapp(
    tailnet: Tailnet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TailnetHostProc]:
    port = free_port()
    app = TailnetHostProc(
        tmp_path_factory.mktemp("hostapp"),
        {
            "TAILNET_LISTEN": f"127.0.0.1:{port}",
            "TAILSCALE_SOCKET": str(tailnet.nodes["host"].socket_path),
            "TAILNET_WHOIS_TTL": str(WHOIS_TTL),
        },
    )
    app.tailnet_port = port
    try:
        wait_for("the tailnet listener", lambda: _tailnet_check(app).get("ok"), timeout=30)
        yield app
    finally:
        app.stop()


def _tailnet_check(app: HostProc) -> dict[str, Any]:
    _, body, _ = app.request("GET", "/readyz")
    check: dict[str, Any] = body["checks"].get("tailnet", {})
    return check


def _tailnet_check_if(
    app: HostProc, pred: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    check = _tailnet_check(app)
    return check if pred(check) else None


def _as(
    node: Node, tailnet: Tailnet, app: TailnetHostProc, method: str, path: str, **kw: Any
) -> tuple[int, Any, dict[str, str]]:
    """One request made by ``node`` to the Host App's tailnet address."""
    conn = node.https(tailnet.nodes["host"].ipv4, app.tailnet_port)
    status, parsed, resp = exchange(conn, method, path, kw.get("body"), headers=kw.get("headers"))
    return status, parsed, {k.lower(): v for k, v in resp.getheaders()}


def _access_line(app: HostProc, request_id: str) -> str:
    def find() -> str | None:
        for line in app.log_path.read_text(errors="replace").splitlines():
            if f"request_id={request_id} " in line and "access " in line:
                return line
        return None

    return wait_for(f"the access log line of {request_id}", find, timeout=10)


def _user_in_log(app: HostProc, request_id: str) -> str:
    m = re.search(r" user=(\S+) ", _access_line(app, request_id))
    assert m is not None
    return m.group(1)


def test_each_node_is_attributed_by_whois_and_forged_headers_are_ignored(
    tailnet: Tailnet, hostapp: TailnetHostProc
) -> None:
    for name in ("node-a", "node-b", "node-admin", "node-stranger"):
        node = tailnet.nodes[name]
        rid = f"tn-{name}-{uuid.uuid4().hex[:8]}"
        status, body, _ = _as(
            node,
            tailnet,
            hostapp,
            "GET",
            "/healthz",
            headers={
                "x-request-id": rid,
                # A client claiming to be someone else: stripped, never believed.
                "tailscale-user-login": login_of("admin"),
                "x-guildnet-user": login_of("admin"),
            },
        )
        assert status == 200, body
        assert _user_in_log(hostapp, rid) == node.login, name


def test_a_connection_tailscaled_does_not_know_gets_403(hostapp: TailnetHostProc) -> None:
    """A local process dialling the tailnet listener directly (not through tailscaled):
    WhoIs answers 404, so every request is refused before routing, proxy paths included."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for path in (
        "/healthz",
        "/api/clusters",
        "/proxy/server/x/",
        "/api/cluster/default/workspaces",
    ):
        conn = http.client.HTTPSConnection(
            "127.0.0.1", hostapp.tailnet_port, context=ctx, timeout=10
        )  # type: ignore[attr-defined]
        try:
            conn.request("GET", path, headers={"tailscale-user-login": login_of("admin")})
            resp = conn.getresponse()
            body = json.loads(resp.read())
        finally:
            conn.close()
        assert resp.status == 403, (path, body)
        assert body["error"] == "not_a_tailnet_peer", body
    # The loopback listener is unaffected: its callers are the local user.
    assert hostapp.request("GET", "/healthz")[0] == 200


def test_identity_change_ends_a_kept_alive_connection_and_new_ones_see_it(
    tailnet: Tailnet, hostapp: TailnetHostProc
) -> None:
    """WhoIs is asked again once its answer is older than TAILNET_WHOIS_TTL; a connection
    whose peer's capabilities changed is closed, and the next is attributed afresh."""
    node = tailnet.nodes["node-b"]
    conn = node.https(tailnet.nodes["host"].ipv4, hostapp.tailnet_port)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        tailnet.set_grants({k: v for k, v in GRANTS.items() if k != "user-b"})
        time.sleep(WHOIS_TTL + 1.5)  # headscale pushes the new netmap within ~1 s
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
        except (ConnectionError, http.client.HTTPException, ssl.SSLError) as e:
            ended = e
        else:
            raise AssertionError(f"the connection served on: {resp.status}")
        print(f"\n[tailnet] kept-alive connection after the grant change: {ended!r}")
        assert "ended: its identity changed" in hostapp.log_path.read_text()
        # A new connection is attributed afresh: no grant, no role.
        status, me, _ = _as(node, tailnet, hostapp, "GET", "/api/whoami")
        assert status == 200 and me["role"] == "none", me
        assert _as(node, tailnet, hostapp, "GET", "/api/servers")[0] == 403
    finally:
        conn.close()
        tailnet.set_grants(GRANTS)

    def role() -> str | None:
        status, me, _ = _as(node, tailnet, hostapp, "GET", "/api/whoami")
        return me["role"] if status == 200 and me["role"] == "user" else None

    started = time.monotonic()
    wait_for("the grant restored", role, timeout=WHOIS_TTL + 10)
    print(f"[tailnet] grant restored, seen after {time.monotonic() - started:.1f}s")


def test_tailscaled_restart_does_not_break_the_listener(
    tailnet: Tailnet, hostapp: TailnetHostProc
) -> None:
    node = tailnet.nodes["node-a"]
    tailnet.stop_node("host")
    try:
        # While tailscaled is away nobody can be attributed: 503, and /readyz says why.
        status, body = _direct(hostapp.tailnet_port, "GET", "/api/whoami")
        assert status == 503 and body["error"] == "tailnet_identity_unavailable", body
        check = wait_for(
            "/readyz to report tailscaled gone",
            lambda: _tailnet_check_if(hostapp, lambda c: c.get("tailscaled") is None),
            timeout=15,
        )
        print(f"\n[tailnet] tailscaled stopped: {check}")
        assert not check["ok"] and check["errors"] and check["listening"], check
    finally:
        tailnet.start_node("host")
    started = time.monotonic()

    def served() -> bool:
        try:
            status, _, _ = _as(
                node, tailnet, hostapp, "GET", "/healthz", headers={"x-request-id": rid}
            )
        except OSError:
            return False
        return status == 200

    rid = f"tn-restart-{uuid.uuid4().hex[:8]}"
    wait_for("a request through the restarted host node", served, timeout=60)
    print(f"\n[tailnet] served again {time.monotonic() - started:.1f}s after the restart")
    assert _user_in_log(hostapp, rid) == node.login
    check = wait_for(
        "/readyz to see tailscaled Running again",
        lambda: _tailnet_check_if(hostapp, lambda c: c.get("tailscaled") == "Running"),
        timeout=15,
    )
    assert check["ok"] and "errors" not in check, check


def test_auto_mode_binds_the_nodes_addresses_when_they_appear(
    tailnet: Tailnet, tmp_path: Path
) -> None:
    """TAILNET_LISTEN=auto reads the node's addresses from LocalAPI status and keeps
    re-reading: a userspace node's 100.x address is not local, so the bind fails (and
    /readyz says so) until the address is assigned here, then it binds within a poll."""
    host = tailnet.nodes["host"]
    app = HostProc(
        tmp_path,
        {
            "TAILNET_LISTEN": "auto",
            "TAILSCALE_SOCKET": str(host.socket_path),
            "TAILNET_WHOIS_TTL": "2",
        },
    )
    added = False
    try:
        check = wait_for(
            "a failed bind reported",
            lambda: (c := _tailnet_check(app)).get("errors") and c,
            timeout=20,
        )
        assert not check["ok"] and host.ipv4 in check["addresses"], check
        assert any(f"{host.ipv4}:443" in e for e in check["errors"]), check
        subprocess.run(["ip", "addr", "add", f"{host.ipv4}/32", "dev", "lo"], check=True)
        added = True
        check = wait_for(
            "the listener on the node's address",
            lambda: (c := _tailnet_check(app)).get("ok") and c,
            timeout=20,
        )
        assert f"{host.ipv4}:443" in check["listening"], check
        # Dialled from this machine to its own node address: WhoIs names the node itself.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host.ipv4, 443, context=ctx, timeout=10)
        rid = f"tn-auto-{uuid.uuid4().hex[:8]}"
        try:
            conn.request("GET", "/healthz", headers={"x-request-id": rid})
            resp = conn.getresponse()
            resp.read()
        finally:
            conn.close()
        print(f"\n[tailnet] auto mode: {check}")
        assert resp.status == 200
        assert _user_in_log(app, rid) == host.login
    finally:
        if added:
            subprocess.run(["ip", "addr", "del", f"{host.ipv4}/32", "dev", "lo"], check=False)
        app.stop()


# --- the access matrix over real tailnet connections (kwok tier) ----------------------


class _Upstream:
    """The workspace's app: answers every request with the X-GuildNet-User it was sent.

    kwok runs no containers, so the workspace names this server (on a namespace-local
    198.18.x address) as its AGENT_HOST, one of the proxy's routes to a workspace.
    """

    def __init__(self, host: str) -> None:
        import http.server
        import threading

        seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                who = self.headers.get("x-guildnet-user", "")
                seen.append(who)
                body = json.dumps({"app": "workspace", "user": who}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.seen = seen
        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _direct(app_port: int, method: str, path: str) -> tuple[int, Any]:
    """A request to the tailnet listener's port from the host itself (no tailnet peer)."""
    ctx = insecure_context()
    conn = http.client.HTTPSConnection("127.0.0.1", app_port, context=ctx, timeout=20)
    status, parsed, _ = exchange(conn, method, path)
    return status, parsed


def test_access_matrix_over_the_tailnet(
    tailnet: Tailnet, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    """User A creates a workspace and opens it; user B, the stranger (no grant) and a
    connection tailscaled does not know are refused; the admin sees all and stops all.
    Every request is a real tailnet connection from that person's node."""
    port = free_port()
    app = HostProc(
        tmp_path,
        {
            **cluster_env(kubeconfig, namespace),
            "TAILNET_LISTEN": f"127.0.0.1:{port}",
            "TAILSCALE_SOCKET": str(tailnet.nodes["host"].socket_path),
            "TAILNET_WHOIS_TTL": str(WHOIS_TTL),
        },
    )
    upstream = _Upstream("198.18.0.77")
    host_ip = tailnet.nodes["host"].ipv4
    try:

        def call(who: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
            if who == "direct":
                return _direct(port, method, path)
            conn = tailnet.nodes[who].https(host_ip, port)
            status, parsed, _ = exchange(conn, method, path, body)
            return status, parsed

        wait_for("the tailnet listener", lambda: call("node-a", "GET", "/healthz")[0] == 200)

        # Who each one is, as the Host App sees them.
        roles = {}
        for who in ("node-a", "node-b", "node-admin", "node-stranger"):
            status, me = call(who, "GET", "/api/whoami")
            assert status == 200, me
            assert me["login"] == tailnet.nodes[who].login and me["source"] == "tailnet", me
            assert me["node"].split(".")[0] == who, me
            roles[who] = me["role"]
        assert roles == {
            "node-a": "user",
            "node-b": "user",
            "node-admin": "admin",
            "node-stranger": "none",
        }

        # User A creates a workspace whose app is the upstream above.
        status, created = call(
            "node-a",
            "POST",
            "/api/jobs",
            {
                "image": "codercom/code-server:4.139.1",
                "name": "a-ws",
                "env": [{"name": "AGENT_HOST", "value": f"198.18.0.77:{upstream.port}"}],
            },
        )
        assert status == 202, created

        def running() -> bool:
            status, detail = call("node-a", "GET", "/api/servers/a-ws")
            last[:] = [detail]
            return status == 200 and detail.get("phase") == "Running"

        last: list[Any] = []
        try:
            wait_for("a-ws Running", running, timeout=90)
        except AssertionError:
            raise AssertionError(f"a-ws never Running: {last}\n{app.log_tail()}") from None
        wait_for(
            "a-ws's password", lambda: call("node-a", "GET", "/api/servers/a-ws/password")[0] == 200
        )

        actions = [
            ("list", "GET", "/api/servers"),
            ("detail", "GET", "/api/servers/a-ws"),
            ("password", "GET", "/api/servers/a-ws/password"),
            ("logs", "GET", "/api/servers/a-ws/logs"),
            ("open", "GET", "/proxy/server/a-ws/"),
        ]
        callers = ["node-a", "node-b", "node-admin", "node-stranger", "direct"]
        matrix: dict[str, dict[str, str]] = {}
        for who in callers:
            row = matrix[who] = {}
            for label, method, path in actions:
                status, body = call(who, method, path)
                cell = str(status)
                if label == "list" and status == 200:
                    cell += (
                        " sees a-ws" if any(s["id"] == "a-ws" for s in body) else " (a-ws hidden)"
                    )
                elif label == "open" and status == 200:
                    cell += f" as {body['user']}"
                elif status >= 400 and isinstance(body, dict):
                    cell += f" {body.get('reason') or body.get('error')}"
                row[label] = cell
        # stop-all last: everyone but the admin is refused, then the admin stops all.
        for who in ("node-a", "node-b", "node-stranger", "direct", "node-admin"):
            status, body = call(who, "POST", "/api/admin/stop-all", {})
            cell = str(status)
            if status == 200:
                cell += f" stopped {len(body.get('deleted', []))}"
            elif isinstance(body, dict):
                cell += f" {body.get('reason') or body.get('error')}"
            matrix[who]["stop-all"] = cell

        labels = [a[0] for a in actions] + ["stop-all"]
        width = {
            label: max(len(label), *(len(matrix[w][label]) for w in callers)) for label in labels
        }
        lines = ["caller          " + "  ".join(label.ljust(width[label]) for label in labels)]
        for who in callers:
            name = {"direct": "not-a-peer"}.get(who, who)
            lines.append(
                f"{name:<16}" + "  ".join(matrix[who][lab].ljust(width[lab]) for lab in labels)
            )
        print("\n[access matrix over the tailnet]\n" + "\n".join(lines))

        a, b, adm, stranger, direct = (matrix[w] for w in callers)
        assert a == {
            "list": "200 sees a-ws",
            "detail": "200",
            "password": "200",
            "logs": "200",
            "open": f"200 as {login_of('user-a')}",
            "stop-all": "403 role",
        }, a
        assert b["list"] == "200 (a-ws hidden)", b
        for label in ("detail", "password", "logs", "open"):
            assert b[label] == "403 owner", b
            assert stranger[label] == "403 role", stranger
            assert direct[label] == "403 not_a_tailnet_peer", direct
        assert b["stop-all"] == "403 role" and stranger["stop-all"] == "403 role", matrix
        assert direct["stop-all"] == "403 not_a_tailnet_peer", direct
        assert stranger["list"] == "403 role" and direct["list"] == "403 not_a_tailnet_peer"
        assert adm["list"] == "200 sees a-ws" and adm["open"] == f"200 as {login_of('admin')}", adm
        assert all(adm[k] == "200" for k in ("detail", "password", "logs")), adm
        assert adm["stop-all"].startswith("200 stopped"), adm
        assert upstream.seen and set(upstream.seen) == {login_of("user-a"), login_of("admin")}
    finally:
        upstream.close()
        app.stop()


def test_behind_tailscale_serve(tailnet: Tailnet, tmp_path: Path) -> None:
    """TAILNET_SERVE_SOCKET: the host node's ``tailscale serve --http`` forwards to the Host
    App's unix socket; the caller comes from the headers tailscaled sets, never from the
    client's copies, which tailscaled replaces."""
    host = tailnet.nodes["host"]
    sock = tmp_path / "run" / "serve.sock"
    app = HostProc(tmp_path, {"TAILNET_SERVE_SOCKET": str(sock)})
    serve_port = free_port()
    try:
        wait_for("the serve socket", sock.is_socket, timeout=20)
        assert sock.stat().st_mode & 0o777 == 0o600
        host.cli(
            "serve",
            "--bg",
            f"--http={serve_port}",
            "--accept-app-caps=guildnet.io/cap/hostapp",
            f"unix:{sock}",
        )
        forged = {
            "tailscale-user-login": login_of("admin"),
            "tailscale-user-name": "Admin",
            "tailscale-app-capabilities": json.dumps(
                {"guildnet.io/cap/hostapp": [{"role": "admin"}]}
            ),
        }
        # serve matches requests by the node's DNS name (Host), as browsers send it.
        dns_name = json.loads(host.cli("status", "--json"))["Self"]["DNSName"].rstrip(".")
        forged["host"] = f"{dns_name}:{serve_port}"
        seen = {}
        for name in ("node-a", "node-admin", "node-stranger"):

            def whoami(node: Node = tailnet.nodes[name]) -> Any:
                conn = node.http(host.ipv4, serve_port)
                try:
                    conn.request("GET", "/api/whoami", headers=forged)
                    resp = conn.getresponse()
                    raw = resp.read()
                finally:
                    conn.close()
                return json.loads(raw) if resp.status == 200 else None

            me = wait_for(f"whoami through serve as {name}", whoami, timeout=30)
            seen[name] = (me["login"], me["role"])
        print(f"\n[tailnet] through tailscale serve: {seen}")
        assert seen == {
            "node-a": (login_of("user-a"), "user"),
            "node-admin": (login_of("admin"), "admin"),
            "node-stranger": (login_of("stranger"), "none"),
        }
        # Straight to the socket (what only root or the Host App's user can do) without
        # serve's headers: no identity.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as direct:
            direct.settimeout(20)
            direct.connect(str(sock))
            direct.sendall(b"GET /api/servers HTTP/1.0\r\nHost: serve\r\n\r\n")
            reply = b""
            while chunk := direct.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"403", reply[:300]
        assert json.loads(body)["error"] == "no_tailnet_identity", body
    finally:
        subprocess.run(
            [str(tailnet.bins["tailscale"]), f"--socket={host.socket_path}", "serve", "reset"],
            check=False,
            timeout=30,
        )
        app.stop()
