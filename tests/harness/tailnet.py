"""A real tailnet on loopback: headscale and userspace-networking tailscaled nodes.

Everything listens on 127.0.0.1 inside the test network namespace (netns-run.sh): the
control server (headscale over plain HTTP, with its embedded DERP relay), and one
tailscaled per node, each with its own state directory, LocalAPI socket and SOCKS5
proxy. Nodes reach each other's 100.x addresses through the tailnet; a test reaches a
node's peer *as that node* through the node's SOCKS5 proxy (``Node.connect``).

Inbound tailnet TCP to a userspace node's ``100.x:PORT`` is forwarded by tailscaled to
``127.0.0.1:PORT`` (the same loopback here), and LocalAPI WhoIs of that forwarded
connection's ``127.0.0.1:<ephemeral>`` names the peer while the connection is open:
that is how the Host App's tailnet listener (``TAILNET_LISTEN=127.0.0.1:PORT``) learns
who each connection is from.

App capabilities come from a headscale policy file with ``grants``; ``set_grants``
rewrites it and makes headscale reload it (SIGHUP).

Binaries: ``tests/harness/build-testbin.sh tailnet`` (cached under
``~/.cache/guildnet/testbin``, like the cluster's).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.controlplane import testbin_cache
from tests.harness.processes import ClusterStartError, ProcessSet, free_ports, tail

HEADSCALE_VERSION = os.environ.get("HEADSCALE_VERSION", "v0.29.2")
TAILSCALE_VERSION = os.environ.get("TAILSCALE_VERSION", "v1.98.10")
DOMAIN = "example.test"
CAP = "guildnet.io/cap/hostapp"

#: Every tailscaled here: no real network, plain-HTTP DERP on headscale, no log uploads.
NODE_ENV = {
    "TS_ASSUME_NETWORK_UP_FOR_TEST": "1",
    "TS_DEBUG_USE_DERP_HTTP": "1",
    "TS_DISABLE_PORTMAPPER": "1",
    "TS_PANIC_IF_HIT_MAIN_CONTROL": "1",
    "TS_NO_LOGS_NO_SUPPORT": "1",
}


def binaries() -> dict[str, Path]:
    cache = testbin_cache()
    found = {
        "headscale": cache / f"headscale-{HEADSCALE_VERSION}" / "headscale",
        "tailscaled": cache / f"tailscale-{TAILSCALE_VERSION}" / "tailscaled",
        "tailscale": cache / f"tailscale-{TAILSCALE_VERSION}" / "tailscale",
    }
    missing = [str(p) for p in found.values() if not os.access(p, os.X_OK)]
    if missing:
        raise ClusterStartError(
            f"tailnet binaries missing ({', '.join(missing)}): run "
            "tests/harness/build-testbin.sh tailnet (or make testbin)"
        )
    return found


def login_of(user: str) -> str:
    return f"{user}@{DOMAIN}"


@dataclass
class Node:
    """One tailscaled: its user, sockets, and its tailnet addresses once up."""

    name: str
    user: str
    dir: Path
    socks_port: int
    tailnet: Tailnet
    ipv4: str = ""
    ipv6: str = ""

    @property
    def socket_path(self) -> Path:
        """The node's LocalAPI socket."""
        return self.dir / "tailscaled.sock"

    @property
    def login(self) -> str:
        return login_of(self.user)

    def cli(self, *args: str, timeout: float = 30.0) -> str:
        out = subprocess.run(
            [str(self.tailnet.bins["tailscale"]), f"--socket={self.socket_path}", *args],
            capture_output=True,
            timeout=timeout,
            env=self.tailnet.env,
        )
        if out.returncode != 0:
            raise ClusterStartError(
                f"tailscale {' '.join(args)} on {self.name} failed ({out.returncode}): "
                f"{out.stderr.decode(errors='replace')[-2000:]}"
            )
        return out.stdout.decode()

    def connect(self, host: str, port: int, timeout: float = 20.0) -> socket.socket:
        """A TCP connection to ``host:port`` made *by this node* (through its SOCKS5 proxy)."""
        return socks5_connect(("127.0.0.1", self.socks_port), host, port, timeout)

    def https(self, host: str, port: int, timeout: float = 20.0) -> TailnetHTTPS:
        return TailnetHTTPS(self, host, port, timeout)

    def http(self, host: str, port: int, timeout: float = 20.0) -> TailnetHTTP:
        return TailnetHTTP(self, host, port, timeout)


def socks5_connect(proxy: tuple[str, int], host: str, port: int, timeout: float) -> socket.socket:
    """RFC 1928 CONNECT, no authentication (what tailscaled's --socks5-server offers)."""
    sock = socket.create_connection(proxy, timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")
        if _recv_exact(sock, 2) != b"\x05\x00":
            raise OSError("SOCKS5 proxy refused the no-auth method")
        try:
            packed = socket.inet_pton(socket.AF_INET, host)
            addr = b"\x01" + packed
        except OSError:
            try:
                addr = b"\x04" + socket.inet_pton(socket.AF_INET6, host)
            except OSError:
                addr = b"\x03" + bytes([len(host)]) + host.encode()
        sock.sendall(b"\x05\x01\x00" + addr + struct.pack(">H", port))
        head = _recv_exact(sock, 4)
        if head[1] != 0:
            raise ConnectionRefusedError(
                f"SOCKS5 CONNECT to {host}:{port} failed (reply {head[1]})"
            )
        kind = head[3]
        size = 4 if kind == 1 else 16 if kind == 4 else _recv_exact(sock, 1)[0]
        _recv_exact(sock, size + 2)
        return sock
    except BaseException:
        sock.close()
        raise


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed during the SOCKS5 handshake")
        data += chunk
    return data


class TailnetHTTPS(http.client.HTTPSConnection):
    """``http.client`` over a connection a tailnet node made (certificate not verified:
    the Host App's own self-signed one is served when the tailnet has no HTTPS certs)."""

    def __init__(self, node: Node, host: str, port: int, timeout: float) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        super().__init__(host, port, timeout=timeout, context=ctx)
        self._node = node

    def connect(self) -> None:
        raw = self._node.connect(self.host, self.port, timeout=self.timeout or 20.0)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


class TailnetHTTP(http.client.HTTPConnection):
    """Plain ``http.client`` over a connection a tailnet node made (``tailscale serve --http``)."""

    def __init__(self, node: Node, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._node = node

    def connect(self) -> None:
        self.sock = self._node.connect(self.host, self.port, timeout=self.timeout or 20.0)


@dataclass
class Tailnet:
    """headscale plus nodes; ``start()`` forms it, ``stop()`` ends every process."""

    work: Path
    users: tuple[str, ...] = ("hostuser", "user-a", "user-b", "admin", "stranger")
    grants: dict[str, str] = field(default_factory=dict)  # user -> role
    nodes: dict[str, Node] = field(default_factory=dict)
    bins: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    host_user: str = "hostuser"

    def __post_init__(self) -> None:
        self.bins = binaries()
        self.procs = ProcessSet(self.work, self.work)
        self.policy_path = self.work / "policy.hujson"
        self.config_path = self.work / "headscale.yaml"
        self.user_ids: dict[str, int] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}

    # headscale --------------------------------------------------------------

    def start_control(self) -> None:
        http_port, stun_port = free_ports("127.0.0.1", 2)
        self.control_url = f"http://127.0.0.1:{http_port}"
        w = self.work
        self.config_path.write_text(
            json.dumps(
                {
                    "server_url": self.control_url,
                    "listen_addr": f"127.0.0.1:{http_port}",
                    "metrics_listen_addr": "",
                    "grpc_listen_addr": "127.0.0.1:0",
                    "unix_socket": str(w / "headscale.sock"),
                    "unix_socket_permission": "0770",
                    "noise": {"private_key_path": str(w / "noise_private.key")},
                    "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48"},
                    "database": {"type": "sqlite", "sqlite": {"path": str(w / "db.sqlite")}},
                    "derp": {
                        "server": {
                            "enabled": True,
                            "region_id": 999,
                            "region_code": "hs",
                            "region_name": "hs",
                            "verify_clients": True,
                            "stun_listen_addr": f"127.0.0.1:{stun_port}",
                            "private_key_path": str(w / "derp_server_private.key"),
                            "automatically_add_embedded_derp_region": True,
                        },
                        "urls": [],
                        "paths": [],
                        "auto_update_enabled": False,
                    },
                    # tailscale serve --http needs a base domain; MagicDNS stays off.
                    "dns": {
                        "magic_dns": False,
                        "override_local_dns": False,
                        "base_domain": "tailnet.test",
                    },
                    "policy": {"mode": "file", "path": str(self.policy_path)},
                    "log": {"level": "info"},
                    "logtail": {"enabled": False},
                }
            )
        )
        self.write_policy()
        self.procs.spawn(
            "headscale", [str(self.bins["headscale"]), "-c", str(self.config_path), "serve"]
        )
        deadline = time.monotonic() + 60
        self.procs.wait(deadline, "headscale", self._control_up)
        for user in self.users:
            self.hs("users", "create", user, "--email", login_of(user))
        listed = json.loads(self.hs("users", "list", "-o", "json"))
        self.user_ids = {u["name"]: int(u["id"]) for u in listed}

    def _control_up(self) -> bool:
        conn = http.client.HTTPConnection(
            "127.0.0.1", int(self.control_url.rsplit(":", 1)[1]), timeout=2
        )
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def hs(self, *args: str) -> str:
        out = subprocess.run(
            [str(self.bins["headscale"]), "-c", str(self.config_path), *args],
            capture_output=True,
            timeout=30,
            env=self.env,
        )
        if out.returncode != 0:
            raise ClusterStartError(
                f"headscale {' '.join(args)} failed ({out.returncode}): "
                f"{(out.stderr or out.stdout).decode(errors='replace')[-2000:]}"
            )
        return out.stdout.decode()

    def policy(self) -> dict[str, Any]:
        """Everyone may connect to everyone; the host's app capability per granted user."""
        grants: list[dict[str, Any]] = [{"src": ["*"], "dst": ["*"], "ip": ["*"]}]
        for user, role in sorted(self.grants.items()):
            grants.append(
                {
                    "src": [login_of(user)],
                    "dst": [login_of(self.host_user)],
                    "app": {CAP: [{"role": role}]},
                }
            )
        return {"grants": grants}

    def write_policy(self) -> None:
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.policy(), indent=2))
        os.replace(tmp, self.policy_path)

    def set_grants(self, grants: dict[str, str]) -> None:
        """Replace the app-capability grants and make headscale apply them (SIGHUP)."""
        self.grants = dict(grants)
        self.write_policy()
        proc = self.procs.get("headscale")
        assert proc is not None and proc.alive()
        proc.popen.send_signal(signal.SIGHUP)

    # nodes ------------------------------------------------------------------

    def add_node(self, name: str, user: str) -> Node:
        (socks,) = free_ports("127.0.0.1", 1)
        node = Node(name, user, self.work / name, socks, self)
        node.dir.mkdir(parents=True, exist_ok=True)
        self.nodes[name] = node
        self._spawn_node(node)
        key = json.loads(
            self.hs(
                "preauthkeys",
                "create",
                "--user",
                str(self.user_ids[user]),
                "--reusable",
                "--expiration",
                "1h",
                "-o",
                "json",
            )
        )["key"]
        node.cli(
            "up",
            f"--login-server={self.control_url}",
            f"--authkey={key}",
            f"--hostname={name}",
            "--accept-dns=false",
            timeout=60,
        )
        self._wait_running(node)
        node.ipv4 = node.cli("ip", "-4").strip()
        node.ipv6 = node.cli("ip", "-6").strip()
        return node

    def _spawn_node(self, node: Node) -> None:
        self.procs.spawn(
            f"tailscaled-{node.name}",
            [
                str(self.bins["tailscaled"]),
                "--tun=userspace-networking",
                f"--statedir={node.dir}",
                f"--socket={node.socket_path}",
                "--port=0",
                "--no-logs-no-support",
                f"--socks5-server=127.0.0.1:{node.socks_port}",
            ],
            env={**NODE_ENV, "TS_LOGS_DIR": str(node.dir)},
        )
        deadline = time.monotonic() + 30
        self.procs.wait(deadline, f"tailscaled {node.name} socket", node.socket_path.exists)

    def _wait_running(self, node: Node, timeout: float = 60.0) -> None:
        def running() -> bool:
            status = json.loads(node.cli("status", "--json", timeout=10))
            return bool(
                status.get("BackendState") == "Running"
                and status.get("Self", {}).get("TailscaleIPs")
            )

        self.procs.wait(time.monotonic() + timeout, f"tailscaled {node.name} Running", running)

    def restart_node(self, name: str) -> None:
        """Stop a node's tailscaled (SIGKILL if it hangs, which happens) and start it again."""
        node = self.nodes[name]
        self.procs.stop([f"tailscaled-{node.name}"], timeout=5.0)
        with contextlib.suppress(FileNotFoundError):
            node.socket_path.unlink()
        self._spawn_node(node)
        self._wait_running(node)

    def wait_peers(self, timeout: float = 60.0) -> None:
        """Every node sees every other node online (its netmap has it)."""
        names = set(self.nodes)

        def all_seen() -> bool:
            for node in self.nodes.values():
                status = json.loads(node.cli("status", "--json", timeout=10))
                peers = {
                    p.get("HostName")
                    for p in (status.get("Peer") or {}).values()
                    if p.get("Online")
                }
                if not (names - {node.name}) <= peers:
                    return False
            return True

        self.procs.wait(time.monotonic() + timeout, "every node to see every other", all_seen)

    # lifecycle --------------------------------------------------------------

    def stop(self) -> None:
        self.procs.stop([n for n in self.procs.names() if n.startswith("tailscaled-")], timeout=5.0)
        self.procs.stop(timeout=5.0)

    def logs(self, lines: int = 30) -> str:
        return self.procs.logs_tail(lines)


@contextlib.contextmanager
def running_tailnet(
    nodes: dict[str, str], grants: dict[str, str], work: Path | None = None
) -> Iterator[Tailnet]:
    """A tailnet with ``nodes`` (name -> user) and ``grants`` (user -> role), all Running."""
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="gn-tailnet-")
        work = Path(tmp.name)
    started = time.monotonic()
    net = Tailnet(work, grants=dict(grants))
    try:
        net.start_control()
        for name, user in nodes.items():
            net.add_node(name, user)
        net.wait_peers()
        net.startup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        yield net
    except BaseException:
        print(net.logs())
        raise
    finally:
        net.stop()
        if tmp is not None:
            tmp.cleanup()


__all__ = [
    "CAP",
    "Node",
    "Tailnet",
    "TailnetHTTP",
    "TailnetHTTPS",
    "binaries",
    "login_of",
    "running_tailnet",
    "tail",
]
