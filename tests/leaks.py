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
