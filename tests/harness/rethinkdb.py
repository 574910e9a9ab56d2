"""A real RethinkDB 2.4.4 server for tests, run as a child process.

The binary is ``../shared/tools/rethinkdb/rethinkdb`` beside the repository (CI gets a copy of
``shared/`` beside its clone), or ``GUILDNET_RETHINKDB_BINARY``, or ``rethinkdb`` on ``PATH``.
Its Debian runtime libraries are installed by ``.ci/run``.

Inside the test network namespace (``tests/harness/netns-run.sh``) each server binds its own
198.18.0.x address (added to ``lo``: RethinkDB refuses to bind an address no interface has)
plus loopback, which RethinkDB always adds, so ports are allocated per server too. Modes: plain,
TLS on the driver port (a throw-away CA, certificate for the IP, ``localhost`` and ``::1``) and
an initial admin password. ``kill``/``stop``/``restart``/``pause`` are what the failure tests use.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness.pki import PKI
from tests.harness.processes import set_pdeathsig

REPO = Path(__file__).resolve().parents[2]
_ports = itertools.count(28100, 3)
_addresses = itertools.count(60)


class RethinkBinaryMissing(RuntimeError):
    pass


def find_rethinkdb() -> Path:
    """The server binary; a clear error when it is nowhere (tests must not skip)."""
    env = os.environ.get("GUILDNET_RETHINKDB_BINARY")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "tools" / "rethinkdb" / "rethinkdb")
    found = shutil.which("rethinkdb")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise RethinkBinaryMissing(
        "no RethinkDB server binary: set GUILDNET_RETHINKDB_BINARY or put shared/ beside the "
        f"repository (looked at {', '.join(str(c) for c in candidates)})"
    )


def in_netns() -> bool:
    return os.environ.get("GUILDNET_NETNS") == "1"


def _ensure_local_address(ip: str) -> None:
    """Put ``ip`` on ``lo`` (netns only: the namespace is ours and dies with the run)."""
    out = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True)
    if f" {ip}/" in out.stdout:
        return
    subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], check=True)


class RethinkServer:
    """One ``rethinkdb`` process with its own data directory, address and ports."""

    def __init__(
        self,
        base: Path | None = None,
        *,
        tls: bool = False,
        password: str | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.binary = find_rethinkdb()
        self._own_base = base is None
        self.base = Path(tempfile.mkdtemp(prefix="guildnet-rdb-")) if base is None else base
        self.base.mkdir(parents=True, exist_ok=True)
        if host is None:
            host = f"198.18.0.{next(_addresses)}" if in_netns() else "127.0.0.1"
        self.host = host
        self.port = port if port is not None else next(_ports)
        self.cluster_port = next(_ports) + 1 if port is not None else self.port + 1
        self.password = password
        self.tls = tls
        self.ca_file: Path | None = None
        self._cert: Any = None
        if tls:
            pki = PKI(self.base / "pki")
            self._cert = pki.issue(
                "rethinkdb",
                "rethinkdb",
                ips=tuple({host, "127.0.0.1", "::1"}),
                dns=("localhost",),
                server=True,
            )
            self.ca_file = pki.ca_cert
            # A second, unrelated CA: what a client with the wrong trust root holds.
            self.other_ca_file = PKI(self.base / "other-pki").ca_cert
        self.proc: subprocess.Popen[bytes] | None = None
        self._first_start = True
        self.starts = 0

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    @property
    def addr(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "--bind",
            self.host,
            "--driver-port",
            str(self.port),
            "--cluster-port",
            str(self.cluster_port),
            "--no-http-admin",
            "--directory",
            str(self.data_dir),
            "--log-file",
            str(self.log_file),
            "--cache-size",
            "128",
            "--server-name",
            "guildnet_test",
        ]
        if self.tls:
            cmd += [
                "--driver-tls-key",
                str(self._cert.key),
                "--driver-tls-cert",
                str(self._cert.cert),
            ]
        if self.password is not None and self._first_start:
            cmd += ["--initial-password", self.password]
        return cmd

    # life cycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> RethinkServer:
        """Start (or restart on the same data) and wait until it answers a driver."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if in_netns() and not self.host.startswith("127.") and ":" not in self.host:
            _ensure_local_address(self.host)
        out = open(self.base / "stdout.log", "ab")  # noqa: SIM115 - owned by the process
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=set_pdeathsig,  # a crashed test run leaves no server behind
            )
        finally:
            out.close()
        self._first_start = False
        self.starts += 1
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"rethinkdb exited {self.proc.returncode}: {self.tail()}")
            try:
                conn = self.sync_connect(timeout=2)
            except Exception as e:
                last = e
                time.sleep(0.1)
                continue
            conn.close()
            return
        raise RuntimeError(f"rethinkdb not ready after {timeout}s ({last}): {self.tail()}")

    def sync_connect(self, timeout: float = 5, **kwargs: Any) -> Any:
        """A blocking driver connection (the driver's own default loop), for test set-up."""
        from rethinkdb import RethinkDB

        r = RethinkDB()
        opts: dict[str, Any] = {"host": self.host, "port": self.port, "timeout": timeout}
        if self.password is not None:
            opts["password"] = self.password
        if self.ca_file is not None:
            opts["ssl"] = {"ca_certs": str(self.ca_file)}
        opts.update(kwargs)
        return r.connect(**opts)

    def run(self, build: Any) -> Any:
        """Run ``build(r)`` on a fresh blocking connection (test set-up and checks)."""
        from rethinkdb import RethinkDB

        r = RethinkDB()
        conn = self.sync_connect()
        try:
            return build(r).run(conn)
        finally:
            conn.close()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait: a clean shutdown (the server just closes its connections)."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the server dies without a word."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    def pause(self) -> None:
        """SIGSTOP: TCP stays open, nothing answers (a hung server).

        Returns once every thread is really stopped (the signal is asynchronous: a query
        sent right after ``kill`` could otherwise still be answered).
        """
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _all_stopped(self.proc.pid):
            time.sleep(0.01)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)

    def _signal_and_wait(self, sig: int, timeout: float) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        # The process is gone but the kernel may still hold the port briefly: wait until
        # connecting is refused, so a test's "server is down" really is.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _accepts(self.host, self.port):
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the process and remove its files."""
        self.kill()
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            text = ""
        with contextlib.suppress(OSError):
            text += (self.base / "stdout.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _all_stopped(pid: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for tid in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] not in ("T", "t"):
            return False
    return True


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
