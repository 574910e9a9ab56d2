"""A real ``twistd -n guildnet`` child process for the integration, e2e and real-node
tests and the benchmarks: the one launcher (``HostProcess``) they all use.

The daemon runs from this checkout (``PYTHONPATH``), on GuildNet's own reactor unless told,
bound to a free loopback port, with a private state directory. Proxy variables are dropped
from its environment (nothing outside the test network namespace may be contacted), and
so are the caller's ``HOSTAPP_*``/``WORKSPACE_*`` knobs: each test passes exactly the
ones it means.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.harness.processes import set_pdeathsig

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0  # a cap: start-up takes ~2 s, far longer on a machine thrashing its disk


class HostAppError(RuntimeError):
    """The Host App did not start (the message carries its log's tail)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def insecure_context() -> ssl.SSLContext:
    """The Host App's certificate is self-signed: tests talk to it without verification."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any, http.client.HTTPResponse]:
    """One request on ``conn`` (closed after): ``body`` as JSON, or ``raw`` bytes.

    Returns the status, the body (JSON decoded unless an attachment, other text as str,
    anything else bytes) and the response (its headers).
    """
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


class HostProcess:
    """The one launcher of ``twistd -n guildnet`` for tests and benchmarks.

    ``start()`` spawns the daemon (it dies with the test run: PDEATHSIG) and waits for
    ``/healthz``; ``stop()`` SIGTERMs it. ``reactor``: twistd's ``--reactor`` (None:
    Twisted's default). The clients are the subclasses' (``HostApp`` here, the
    integration tests' ``HostProc``).
    """

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str],
        name: str = "hostapp",
        *,
        reactor: str | None = "guildnet",
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.lower().endswith("_proxy") and not k.startswith(("HOSTAPP_", "WORKSPACE_"))
        }
        self.env = {
            **base,
            "LISTEN_LOCAL": f"127.0.0.1:{self.port}",
            "GUILDNET_STATE_DIR": str(workdir / f"{name}-state"),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO),
            **env,
        }
        self.reactor = reactor
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctx = insecure_context()

    def start(self, timeout: float | None = None) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        twistd = str(Path(sys.executable).parent / "twistd")
        reactor = [f"--reactor={self.reactor}"] if self.reactor else []
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [twistd, "-n", "--pidfile=", *reactor, "guildnet"],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=set_pdeathsig,  # never outlives the test run
            )
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise HostAppError(f"the Host App did not start:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return int(self.proc.pid)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", context=self.ctx, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def assert_no_traceback(self) -> None:
        """The daemon logged no Traceback (after ``stop()``, its whole log)."""
        log = self.output()
        at = log.find("Traceback")
        assert at < 0, log[max(0, at - 2000) : at + 4000]

    @contextlib.contextmanager
    def running(self, *, clean_log: bool = True) -> Iterator[Self]:
        """The Host App for a ``with`` block (a fixture's life): started unless it is,
        stopped after it; ``clean_log``: then its log must hold no Traceback."""
        if self.proc is None:
            self.start()
        try:
            yield self
        finally:
            self.stop()
        if clean_log:
            self.assert_no_traceback()

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HostApp(HostProcess):
    """The Host App with a urllib client (raw bodies) for end-to-end tests and benchmarks."""

    def spki(self) -> str:
        """base64 SHA-256 of the served certificate's public key, for Chromium's
        ``--ignore-certificate-errors-spki-list`` (a trusted cert, unlike ignoring errors)."""
        pem = ssl.get_server_certificate(("127.0.0.1", self.port))
        cert = x509.load_pem_x509_certificate(pem.encode())
        der = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(der).digest()).decode()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS request; any status is returned, never raised."""
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"content-type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=hdrs)
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.ctx), _NoRedirect()
        )
        try:
            with opener.open(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, raw = self.request(method, path, body)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers the tests check, not something to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
