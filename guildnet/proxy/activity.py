"""Per-workspace activity as the proxy sees it: one float per workspace, written in place.

The idle culler needs "when did anyone last use this workspace through GuildNet". The
proxy knows: every proxied request and every chunk of a WebSocket (or other upgraded
connection) in either direction passes through it. Recording that must cost nothing on
the IDE's hot path, so the record is an :class:`Activity` object (``__slots__``) that the
route resolver hands to the exchange with its target, and a request or a chunk does
``activity.at = t``: an attribute store of the reactor time ``t`` the exchange or splice
already read for its own idle timeout. No dict lookup, no allocation, no timer, no
extra clock read (``time.monotonic()`` costs ~0.3 us on this machine's VM clock).

The reactor clock is the wall clock, so the record is wall time, which is what the
annotation and the API show. A wall-clock step would distort it; the culler detects one
(its ticks compare wall and monotonic clocks) and then treats every workspace as active
at that moment, so a step can delay a cull but never bring one forward.

What counts: a request's head, each request-body and response-body piece, each
WebSocket chunk. What does not: a chunk that is exactly one WebSocket ping or pong frame
(protocol keepalives of an open but silent socket; only chunks whose first byte is a
ping/pong opcode are looked at). Application-level keepalives are data: code-server's
IDE sends a 13-byte "KeepAlive" message every 5 s while its tab is open, so an open
code-server tab counts as in use, as an open JupyterLab tab does in JupyterHub.

Cost (``python -m bench.activity``: the real ``Splice`` hot path with no-op transports, on
the loaded 2-core development VM): about +60 ns per keystroke-sized data chunk, +30 ns
per 16 KiB chunk, +170 ns per lone ping frame, over the splice's own 170-200 ns; a
proxied chunk spends several microseconds in TLS and socket calls besides.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

#: First bytes of a final ping (opcode 9) or pong (opcode 10) frame: only chunks that
#: start with one of these are checked further.
PING_PONG: Final = (0x89, 0x8A)


def is_keepalive(data: bytes) -> bool:
    """Whether ``data`` is exactly one WebSocket ping or pong frame (either direction).

    Callers check ``data[0] in PING_PONG`` first, so data chunks rarely get here.
    """
    if len(data) < 2 or len(data) > 131 or data[0] not in PING_PONG:
        return False
    second = data[1]
    length = second & 0x7F
    if length > 125:
        return False
    return len(data) == 2 + (4 if second & 0x80 else 0) + length


class Activity:
    """The last activity of one workspace: reactor (wall) time, 0.0 before any."""

    __slots__ = ("at", "cluster", "name", "namespace")

    def __init__(self, cluster: str, namespace: str, name: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.at = 0.0

    def __repr__(self) -> str:
        return f"Activity({self.cluster}/{self.namespace}/{self.name}, at={self.at:.1f})"


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
        if found is None or not found.at:
            return None
        return found.at

    def forget(self, cluster: str, namespace: str, name: str) -> None:
        self._entries.pop((cluster, namespace, name), None)

    def of_cluster(self, cluster: str) -> Iterator[Activity]:
        return (a for a in list(self._entries.values()) if a.cluster == cluster)

    def __len__(self) -> int:
        return len(self._entries)
