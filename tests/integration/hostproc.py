"""A real ``twistd -n guildnet`` child process and a small HTTPS JSON/SSE client for it.

Used by the DB tests; the default cluster is an API proxy URL (no Kubernetes needed when
``RETHINKDB_ADDR`` says where the database is) unless a kubeconfig is given.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.harness.processes import set_pdeathsig

T = TypeVar("T")
START_TIMEOUT = 150.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class HostProc:
    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.work = work
        self.log_path = work / "hostapp.log"
        full = {
            **os.environ,
            "LISTEN_LOCAL": f"127.0.0.1:{self.port}",
            "GUILDNET_STATE_DIR": str(work / "state"),
            "HOSTAPP_EMBED_OPERATOR": "false",
            "KUBECONFIG": str(work / "no-kubeconfig"),
            **env,
        }
        twistd = Path(sys.executable).parent / "twistd"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(twistd), "-n", "--pidfile=", "guildnet"],
            cwd=work,
            env=full,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=set_pdeathsig,  # never outlives the test run
        )
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        try:
            self.wait_ready()
        except BaseException:
            self.stop()  # the caller never gets an object to stop
            raise

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
        conn = self.connection()
        try:
            hdrs = dict(headers or {})
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
                hdrs.setdefault("content-type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        ctype = resp.getheader("content-type") or ""
        parsed: Any = payload
        if ctype.startswith("application/json") and not resp.getheader("content-disposition"):
            parsed = json.loads(payload)
        elif ctype.startswith(("text/", "application/")):
            parsed = payload.decode()
        return resp.status, parsed, resp

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, data, _ = self.request(method, path, body)
        assert got == status, (method, path, got, data)
        return data

    def get(self, path: str) -> Any:
        return self.ok("GET", path)

    def wait_ready(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"twistd exited:\n{self.log_tail()}")
            return self.request("GET", "/healthz")[0] == 200

        # Generous: on a loaded 2-core machine twistd's imports alone can take most of a minute.
        wait_for("the Host App to listen", up, timeout=START_TIMEOUT)

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


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
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
