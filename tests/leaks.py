"""What a process holds, so tests can prove a shutdown left nothing behind."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def threads_named(prefix: str) -> list[str]:
    """Live threads whose name contains ``prefix`` (Twisted pools add a "PoolThread-" head)."""
    return sorted(t.name for t in threading.enumerate() if prefix in t.name and t.is_alive())


def _fd_targets() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return out


def open_files_under(path: Path) -> list[str]:
    root = str(path.resolve())
    return [t for t in _fd_targets() if t.startswith(root)]


def socket_inodes() -> set[str]:
    return {t for t in _fd_targets() if t.startswith("socket:")}


def socket_peers(inodes: set[str]) -> dict[str, str]:
    """``socket:[N]`` -> "local -> remote (state)" from /proc/net/tcp{,6}: what a leaked
    socket was, for the failure message."""
    wanted = {i[len("socket:[") : -1] for i in inodes}
    out: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[9] in wanted:
                out[f"socket:[{f[9]}]"] = f"{_addr(f[1])} -> {_addr(f[2])} (state {f[3]})"
    return out


def _addr(hexaddr: str) -> str:
    host, port = hexaddr.split(":")
    return f"{host}:{int(port, 16)}"
