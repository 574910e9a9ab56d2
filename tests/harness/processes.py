"""Child processes of the test clusters: spawn with a log file, poll for readiness, stop in tiers.

Shared by the kwok tier (cluster.py) and the real-node tier (realnode.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

_PROXY_ENV = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)


class ClusterStartError(RuntimeError):
    """The cluster did not come up; the message names the fix or carries the process log tails."""


def set_pdeathsig() -> None:
    """Runs in the child before exec: die with the parent, so a crashed test run leaks nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Child environment without proxy settings: every connection must stay local."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_ENV}
    if extra:
        env.update(extra)
    return env


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file (for failure messages)."""
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    text = data[-32768:].decode(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def free_ports(host: str, count: int) -> list[int]:
    """Reserve `count` distinct free TCP ports on `host` (held open together to avoid dupes)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Proc:
    """One spawned component and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None


class ProcessSet:
    """The processes of one cluster: spawned with logs under `log_dir`, stopped in tiers."""

    def __init__(self, log_dir: Path, cwd: Path) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        self._procs: list[Proc] = []
        self._lock = threading.Lock()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start `argv` in its own session with PR_SET_PDEATHSIG, output to `<name>.log`."""
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=child_env(env),
                start_new_session=True,  # Ctrl-C reaches us, and we stop children in order
                preexec_fn=set_pdeathsig,  # single-threaded here
            )
        proc = Proc(name, popen, log)
        with self._lock:
            self._procs.append(proc)
        return proc

    def get(self, name: str) -> Proc | None:
        with self._lock:
            return next((p for p in self._procs if p.name == name), None)

    def check_alive(self) -> None:
        """Raise ClusterStartError naming the first component that exited."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if not proc.alive():
                raise ClusterStartError(f"{proc.name} exited with {proc.popen.returncode}")

    def wait(self, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        """Poll `ready` until true; fail fast if a component died, or at the deadline."""
        delay = 0.05
        while True:
            self.check_alive()
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, names: Iterable[str] | None = None, timeout: float = 10.0) -> None:
        """SIGTERM the named processes (all if None) together, SIGKILL what outlives `timeout`."""
        with self._lock:
            wanted = set(names) if names is not None else None
            tier = [p for p in self._procs if wanted is None or p.name in wanted]
            self._procs = [p for p in self._procs if p not in tier]
        for proc in tier:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        for proc in tier:
            try:
                proc.popen.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait(timeout=timeout)

    def names(self) -> list[str]:
        with self._lock:
            return [p.name for p in self._procs]

    def logs_tail(self, lines: int = 40) -> str:
        """Last lines of every component's log, for failure messages."""
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            proc = self.get(log.stem)
            if proc is None:
                state = "stopped"
            else:
                state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
            parts.append(f"===== {log.stem} ({state}) {log} =====\n{tail(log, lines)}")
        return "\n".join(parts)
