"""The integration tests' Host App (``tests.harness.hostapp``'s launcher, started at once)
with a small HTTPS JSON/SSE client.

The default cluster is none and the embedded operator off unless the test's environment
says otherwise: the DB tests give an API proxy URL (no Kubernetes needed when
``RETHINKDB_ADDR`` says where the database is), the workspace tests a kubeconfig
(``cluster_env``).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException

from tests.harness.hostapp import HostProcess, exchange, free_port

__all__ = ["SSE", "HostProc", "closed_url", "cluster_env", "free_port", "wait_for"]

T = TypeVar("T")
START_TIMEOUT = 150.0


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """``probe()``'s first truthy answer; connection and API errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, ApiException) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def cluster_env(kubeconfig: str, namespace: str) -> dict[str, str]:
    """A Host App whose default cluster is the test cluster, with the embedded operator."""
    return {
        "KUBECONFIG": kubeconfig,
        "K8S_NAMESPACE": namespace,
        "HOSTAPP_EMBED_OPERATOR": "true",
    }


class HostProc(HostProcess):
    """Started by the constructor (stopped again if it does not come up)."""

    def __init__(
        self,
        work: Path,
        env: Mapping[str, str],
        *,
        reactor: str | None = "guildnet",
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        defaults = {"HOSTAPP_EMBED_OPERATOR": "false", "KUBECONFIG": str(work / "no-kubeconfig")}
        super().__init__(work, {**defaults, **env}, reactor=reactor, start_timeout=start_timeout)
        self.start()

    def connection(self, timeout: float = 30) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ctx, timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, http.client.HTTPResponse]:
        return exchange(self.connection(), method, path, body, raw, headers)

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, data, _ = self.request(method, path, body)
        assert got == status, (method, path, got, data)
        return data

    def get(self, path: str) -> Any:
        return self.ok("GET", path)


class SSE:
    """A minimal EventSource over one HTTPS connection."""

    def __init__(self, app: HostProc, path: str, headers: dict[str, str] | None = None) -> None:
        self.conn = app.connection()
        self.conn.request("GET", path, headers={"accept": "text/event-stream", **(headers or {})})
        self.resp = self.conn.getresponse()
        self.comments: list[str] = []

    @property
    def status(self) -> int:
        return self.resp.status

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next event: {"event", "data" (JSON-decoded), "id"}; comments are collected."""
        assert self.conn.sock is not None
        deadline = time.monotonic() + timeout
        event: dict[str, Any] = {"event": "message", "data": [], "id": None}
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event within {timeout}s")
            self.conn.sock.settimeout(left)
            raw = self.resp.readline()
            if not raw:
                raise EOFError("stream ended")
            line = raw.decode().rstrip("\n")
            if line == "":
                if event["data"]:
                    event["data"] = json.loads("\n".join(event["data"]))
                    return event
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "":
                self.comments.append(value)
            elif field == "data":
                event["data"].append(value)
            elif field in ("event", "id"):
                event[field] = value

    def until(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Read until an event matches; returns it and everything read before it."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event in {timeout}s; saw {seen[-10:]}")
            ev = self.next(timeout=left)
            if match(ev):
                return ev, seen
            seen.append(ev)

    def close(self) -> None:
        self.conn.close()
