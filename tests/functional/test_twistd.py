"""The real daemon: ``twistd -n --pidfile= guildnet`` in a subprocess.

These prove what a user sees: the plugin is found, configuration errors stop
start-up with one line, and the process serves HTTPS with a certificate it
generated and keeps. Every daemon is terminated by the fixture that started it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from guildnet.config import KNOBS

TWISTD = Path(sys.executable).with_name("twistd")
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no knob or proxy leaks in from the developer's shell."""
    drop = {k.env for k in KNOBS} | {"KUBERNETES_SERVICE_HOST"}
    env = {
        k: v for k, v in os.environ.items() if k not in drop and not k.lower().endswith("_proxy")
    }
    env.update(
        GUILDNET_STATE_DIR=str(tmp / "state"),
        KUBECONFIG=str(tmp / "missing-kubeconfig"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@attrs.define
class Daemon:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


class Daemons:
    """Starts daemons in a temp dir and guarantees they are all killed."""

    def __init__(self, tmp: Path, twistd: Path = TWISTD) -> None:
        self.tmp = tmp
        self.twistd = twistd
        self.running: list[Daemon] = []

    def start(
        self,
        *options: str,
        port: int | None = None,
        twistd_options: tuple[str, ...] = ("--reactor=guildnet",),
        **env: str,
    ) -> Daemon:
        port = port or free_port()
        env.setdefault("LISTEN_LOCAL", f"127.0.0.1:{port}")
        log = self.tmp / f"daemon-{len(self.running)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(self.twistd), "-n", "--pidfile=", *twistd_options, "guildnet", *options],
                cwd=self.tmp,
                env=daemon_env(self.tmp, **env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        daemon = Daemon(proc, log, port)
        self.running.append(daemon)
        wait_until_serving(daemon)
        return daemon

    def close(self) -> None:
        for daemon in self.running:
            daemon.stop()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    d = Daemons(tmp_path)
    try:
        yield d
    finally:
        d.close()


def tls_context(cafile: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_until_serving(daemon: Daemon) -> None:
    """Poll the TLS port until it handshakes; fail early if the process dies."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if daemon.proc.poll() is not None:
            pytest.fail(f"daemon exited with {daemon.proc.returncode}:\n{daemon.output()}")
        try:
            with (
                socket.create_connection(("127.0.0.1", daemon.port), timeout=1) as raw,
                tls_context().wrap_socket(raw),
            ):
                return
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                pytest.fail(f"daemon not serving after {START_TIMEOUT}s:\n{daemon.output()}")
            time.sleep(0.05)


@attrs.frozen
class Fetched:
    status: int
    body: bytes
    peer_der: bytes


def https_get(port: int, path: str, cafile: Path, host: str = "127.0.0.1") -> Fetched:
    """GET over TLS verified against ``cafile`` (the daemon's own certificate)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        tls_context(cafile).wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := tls.recv(65536):
            chunks.append(data)
        der = tls.getpeercert(binary_form=True)
        assert der is not None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return Fetched(status, body, der)


def dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, data = out + rest[:size], rest[size + 2 :]


def cert_der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )


# --- a serving daemon -------------------------------------------------------------


def test_serves_https_with_a_generated_certificate_and_reuses_it(
    daemons: Daemons, tmp_path: Path
) -> None:
    first = daemons.start()
    crt = tmp_path / "state" / "certs" / "selfsigned.crt"
    key = tmp_path / "state" / "certs" / "selfsigned.key"
    assert crt.is_file() and key.is_file()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for host in ("127.0.0.1", "localhost"):  # the certificate's SANs verify both
        got = https_get(first.port, "/healthz", crt, host=host)
        assert got.status == 200
        assert json.loads(got.body)["status"] == "ok"
        assert got.peer_der == cert_der(crt)
    ready = https_get(first.port, "/readyz", crt)
    assert ready.status == 503
    assert json.loads(ready.body)["checks"]["cluster"]["ok"] is False
    # twistd re-raises the SIGTERM it handled once shutdown is complete
    assert first.stop() in (0, -signal.SIGTERM), first.output()
    assert "Server Shut Down." in first.output()
    assert "Traceback" not in first.output()
    assert ACCESS_LINE.search(first.output()), first.output()
    assert "reactor class: guildnet.reactor.GuildNetReactor" in first.output()

    crt_bytes, key_bytes = crt.read_bytes(), key.read_bytes()
    second = daemons.start()
    assert https_get(second.port, "/healthz", crt).peer_der == cert_der(crt)
    assert (crt.read_bytes(), key.read_bytes()) == (crt_bytes, key_bytes)


ACCESS_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[guildnet\.access#info\] access "
    r"request_id=\S+ method=GET path=/healthz status=200 ",
    re.M,
)


def test_logfile_option_is_honoured_with_twistd_line_format(
    daemons: Daemons, tmp_path: Path
) -> None:
    logfile = tmp_path / "logs" / "guildnet.log"
    logfile.parent.mkdir()
    # Also: Twisted's default reactor (no --reactor=guildnet) runs GuildNet unchanged.
    daemon = daemons.start(twistd_options=(f"--logfile={logfile}",))
    crt = tmp_path / "state" / "certs" / "selfsigned.crt"
    assert https_get(daemon.port, "/healthz", crt).status == 200
    assert daemon.stop() in (0, -signal.SIGTERM)
    text = logfile.read_text()
    assert ACCESS_LINE.search(text), text
    assert "Server Shut Down." in text
    assert "guildnet.reactor" not in text
    assert "access request_id=" not in daemon.output(), "the log went to the file only"


def test_certificate_from_cwd_certs_is_preferred(daemons: Daemons, tmp_path: Path) -> None:
    from guildnet.tls import write_self_signed

    write_self_signed(tmp_path / "certs" / "dev.crt", tmp_path / "certs" / "dev.key", "devbox")
    daemon = daemons.start()
    got = https_get(daemon.port, "/healthz", tmp_path / "certs" / "dev.crt")
    assert got.peer_der == cert_der(tmp_path / "certs" / "dev.crt")
    assert not (tmp_path / "state" / "certs" / "selfsigned.crt").exists()


def test_option_overrides_the_environment(daemons: Daemons) -> None:
    env_port, option_port = free_port(), free_port()
    daemon = daemons.start(
        f"--listen-local=127.0.0.1:{option_port}",
        port=option_port,
        LISTEN_LOCAL=f"127.0.0.1:{env_port}",
    )
    assert f"127.0.0.1:{option_port}" in daemon.output()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", env_port), timeout=2).close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1:DeprecationWarning")
def test_tls_1_1_is_refused_and_1_2_accepted(daemons: Daemons) -> None:
    daemon = daemons.start()
    for version, ok in ((ssl.TLSVersion.TLSv1_1, False), (ssl.TLSVersion.TLSv1_2, True)):
        ctx = tls_context()
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as raw:
            if ok:
                with ctx.wrap_socket(raw) as tls:
                    assert tls.version() == "TLSv1.2"
            else:
                with pytest.raises(ssl.SSLError) as info:
                    ctx.wrap_socket(raw)
                assert info.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", info.value


# --- configuration errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "args"),
    [
        ("LISTEN_LOCAL", "127.0.0.1:99999", ()),
        ("LISTEN_LOCAL", "nonsense", ()),
        ("HOSTAPP_EMBED_OPERATOR", "maybe", ()),
        ("FRONTEND_ORIGIN", "ftp://x", ()),
        ("LISTEN_LOCAL", "127.0.0.1:8090", ("--listen-local=127.0.0.1:0",)),
    ],
)
def test_bad_configuration_exits_with_one_line(
    tmp_path: Path, variable: str, value: str, args: tuple[str, ...]
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [str(TWISTD), "-n", "--pidfile=", "guildnet", *args],
        cwd=tmp_path,
        env=daemon_env(tmp_path, **{variable: value}),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 15
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert variable in lines[0]
    assert "Traceback" not in result.stdout.decode()
    assert not (tmp_path / "state").exists(), "nothing is created before the settings are valid"


def test_help_documents_every_knob(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(TWISTD), "guildnet", "--help"],
        cwd=tmp_path,
        env=daemon_env(tmp_path),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.decode().split())
    for knob in KNOBS:
        assert f"--{knob.option}=" in text, knob.option
        assert knob.env in text, knob.env
