"""Per-workspace activity as the proxy sees it: one float per workspace, written in place.

The idle culler needs "when did anyone last use this workspace through GuildNet". The
proxy knows: every proxied request and every chunk of a WebSocket (or other upgraded
connection) in either direction passes through it. Recording that must cost nothing on
the IDE's hot path, so the record is an :class:`Activity` object (``__slots__``, one
float) that the route resolver hands to the exchange with its target: a request or a
chunk does ``activity.mono = monotonic()`` (an attribute store of a float; no dict
lookup, no allocation, no timer). Readers (the culler, the API) convert it to wall time.

What counts: a request's head, each request-body and response-body piece, each
WebSocket chunk. What does not: a chunk that is exactly one WebSocket ping or pong frame
(protocol keepalives of an open but silent socket), checked only for chunks of at most
131 bytes. Application-level keepalives are data: code-server's IDE sends a 13-byte
"KeepAlive" message every 5 s while its tab is open, so an open code-server tab counts as
in use, as an open JupyterLab tab does in JupyterHub (its polling).

Cost (``python -m bench.activity`` on the 2-core development machine, CPython 3.11): a
chunk's record is about 0.05 us for a large chunk and 0.15 us for a small one, against
about 5-10 us that the splice spends per chunk on TLS and socket writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Final

#: The clock activity is recorded on: monotonic, so a wall-clock step never makes a
#: workspace look idle (or busy) for longer than it was.
monotonic = time.monotonic

#: A single control frame is at most 2 + 4 (mask) + 125 bytes.
CONTROL_MAX: Final = 131
_PING_PONG: Final = (0x89, 0x8A)  # FIN + opcode 9 (ping) / 10 (pong)


def is_keepalive(data: bytes) -> bool:
    """Whether ``data`` is exactly one WebSocket ping or pong frame (either direction).

    Callers check ``len(data) <= CONTROL_MAX`` first, so large chunks never get here.
    """
    if len(data) < 2 or data[0] not in _PING_PONG:
        return False
    second = data[1]
    length = second & 0x7F
    if length > 125:
        return False
    return len(data) == 2 + (4 if second & 0x80 else 0) + length


class Activity:
    """The last activity of one workspace, on the ``monotonic`` clock (0.0: none yet)."""

    __slots__ = ("cluster", "mono", "name", "namespace")

    def __init__(self, cluster: str, namespace: str, name: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.mono = 0.0

    def touch(self) -> None:
        self.mono = monotonic()

    def wall(self, now_wall: float, now_mono: float) -> float | None:
        """The last activity as a wall-clock time (seconds since the epoch), or None."""
        if not self.mono:
            return None
        return now_wall - (now_mono - self.mono)

    def __repr__(self) -> str:
        return f"Activity({self.cluster}/{self.namespace}/{self.name}, mono={self.mono:.1f})"


class ActivityBook:
    """Every workspace's :class:`Activity`, keyed by (cluster, namespace, name).

    An entry is made when the proxy first resolves a route to the workspace (so only
    workspaces that exist get one) and dropped by the culler when the workspace is gone.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], Activity] = {}

    def entry(self, cluster: str, namespace: str, name: str) -> Activity:
        key = (cluster, namespace, name)
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = Activity(cluster, namespace, name)
        return found

    def get(self, cluster: str, namespace: str, name: str) -> Activity | None:
        return self._entries.get((cluster, namespace, name))

    def last_wall(self, cluster: str, namespace: str, name: str) -> float | None:
        """The workspace's last proxied activity as a wall-clock time, or None."""
        found = self._entries.get((cluster, namespace, name))
        if found is None:
            return None
        return found.wall(time.time(), monotonic())

    def forget(self, cluster: str, namespace: str, name: str) -> None:
        self._entries.pop((cluster, namespace, name), None)

    def of_cluster(self, cluster: str) -> Iterator[Activity]:
        return (a for a in list(self._entries.values()) if a.cluster == cluster)

    def __len__(self) -> int:
        return len(self._entries)
