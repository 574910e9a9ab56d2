"""Certificate choice, the generated certificate, and the TLS versions served.

Handshakes are real: the server side is the pyOpenSSL context Twisted would
use, on a loopback socket; the client is Python's ssl module pinned to one
protocol version.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL

from guildnet.tls import (
    CertPair,
    dns_names,
    find_certificate,
    server_context_factory,
    wildcard_names,
    write_self_signed,
)

# Twisted's CertificateOptions takes pyOpenSSL keys by contract; the warning is theirs to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


def make_pair(directory: Path, stem: str, hostname: str) -> tuple[Path, Path]:
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    write_self_signed(crt, key, hostname)
    return crt, key


def common_name(crt: Path) -> str:
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    return str(cert.subject.rfc4514_string())


# --- which certificate ----------------------------------------------------------


def test_server_pair_wins_over_dev_and_generated(tmp_path: Path) -> None:
    make_pair(tmp_path / "certs", "server", "server-host")
    make_pair(tmp_path / "certs", "dev", "dev-host")
    pair = find_certificate(tmp_path, tmp_path / "state" / "certs")
    assert pair == CertPair(
        tmp_path / "certs/server.crt", tmp_path / "certs/server.key", generated=False
    )
    assert not (tmp_path / "state").exists(), "nothing is generated when ./certs has a pair"


def test_dev_pair_used_without_server_pair(tmp_path: Path) -> None:
    make_pair(tmp_path / "certs", "dev", "dev-host")
    (tmp_path / "certs/server.crt").write_bytes((tmp_path / "certs/dev.crt").read_bytes())  # no key
    pair = find_certificate(tmp_path, tmp_path / "state" / "certs")
    assert pair == CertPair(tmp_path / "certs/dev.crt", tmp_path / "certs/dev.key", generated=False)


def test_half_pairs_fall_through_to_generated(tmp_path: Path) -> None:
    make_pair(tmp_path / "certs", "dev", "dev-host")
    (tmp_path / "certs/dev.key").unlink()
    (tmp_path / "certs/server.key").write_text("orphan key")
    pair = find_certificate(tmp_path, tmp_path / "state" / "certs", hostname="gen-host")
    assert pair.generated
    assert pair.cert == tmp_path / "state/certs/selfsigned.crt"
    assert "gen-host" in common_name(pair.cert)


# --- the generated certificate -------------------------------------------------


def test_generated_certificate_names_and_key_mode(tmp_path: Path) -> None:
    certs_dir = tmp_path / "state" / "certs"
    pair = find_certificate(tmp_path, certs_dir, hostname="guildnet-box")
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "guildnet-box"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(certs_dir.stat().st_mode) == 0o700
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()
    assert not list(certs_dir.glob("*.tmp_path")), "temporary files are renamed into place"


def test_generated_certificate_defaults_to_the_host_name(tmp_path: Path) -> None:
    pair = find_certificate(tmp_path, tmp_path / "certs-state")
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert socket.gethostname() in san.get_values_for_type(x509.DNSName)


def test_generated_certificate_is_reused(tmp_path: Path) -> None:
    certs_dir = tmp_path / "state" / "certs"
    first = find_certificate(tmp_path, certs_dir, hostname="a")
    crt, key = first.cert.read_bytes(), first.key.read_bytes()
    second = find_certificate(tmp_path, certs_dir, hostname="b")
    assert second == first
    assert (second.cert.read_bytes(), second.key.read_bytes()) == (crt, key)


def test_parent_directories_are_created(tmp_path: Path) -> None:
    """First run on a new machine: <state>/certs does not exist yet."""
    crt, key = make_pair(tmp_path / "a" / "b", "c", "h")
    assert crt.is_file() and key.is_file()


def test_localhost_is_not_listed_twice(tmp_path: Path) -> None:
    crt, _ = make_pair(tmp_path, "x", "localhost")
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]


# --- server context -----------------------------------------------------------


def test_extra_certificates_in_the_file_form_the_chain(tmp_path: Path) -> None:
    crt, key = make_pair(tmp_path, "leaf", "leaf")
    other, _ = make_pair(tmp_path, "other", "intermediate")
    crt.write_bytes(crt.read_bytes() + other.read_bytes())
    options = server_context_factory(CertPair(crt, key, generated=False))
    assert len(options.extraCertChain) == 1
    chained = options.extraCertChain[0].to_cryptography()
    assert chained == x509.load_pem_x509_certificate(other.read_bytes())


def test_file_without_certificate_is_refused(tmp_path: Path) -> None:
    _, key = make_pair(tmp_path, "x", "x")
    bogus = tmp_path / "bogus.crt"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="no PEM certificate"):
        server_context_factory(CertPair(bogus, key, generated=False))


class TLSServer:
    """One pyOpenSSL handshake per connection on a loopback socket, in a thread."""

    def __init__(self, context: SSL.Context) -> None:
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = int(self.sock.getsockname()[1])
        self.results: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            raw.setblocking(True)
            conn = SSL.Connection(self.context, raw)
            conn.set_accept_state()
            try:
                conn.do_handshake()
                self.results.append(str(conn.get_protocol_version_name()))
                conn.shutdown()
            except SSL.Error as e:
                self.results.append(f"error: {e}")
            finally:
                raw.close()

    def close(self) -> None:
        """Wake the blocked ``accept`` (shutdown does, close alone does not) and join."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TLSServer]:
    pair = find_certificate(tmp_path, tmp_path / "certs-state")
    server = TLSServer(server_context_factory(pair).getContext())
    try:
        yield server
    finally:
        server.close()


def client_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers exactly ``version``, old ciphers allowed (SECLEVEL=0)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def handshake(port: int, version: ssl.TLSVersion) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_context(version).wrap_socket(raw) as tls,
    ):
        return str(tls.version())


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=lambda v: v.name
)
def test_modern_tls_accepted(tls_server: TLSServer, version: ssl.TLSVersion) -> None:
    expected = {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    assert handshake(tls_server.port, version) == expected


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=lambda v: v.name
)
@pytest.mark.parametrize("seclevel", ["default", "SECLEVEL=0"])
def test_old_tls_refused_by_the_server(
    tmp_path: Path, version: ssl.TLSVersion, seclevel: str
) -> None:
    """Refused by our protocol floor, not only by OpenSSL 3's default security level.

    With SECLEVEL=0 OpenSSL itself would speak TLS 1.0/1.1 (see the control
    test below), so only ``server_context_factory``'s minimum version stops it.
    """
    pair = find_certificate(tmp_path, tmp_path / "certs-state")
    context = server_context_factory(pair).getContext()
    if seclevel != "default":
        context.set_cipher_list(b"DEFAULT:@" + seclevel.encode())
    server = TLSServer(context)
    try:
        with pytest.raises(ssl.SSLError) as info:
            handshake(server.port, version)
    finally:
        server.close()
    # The server's protocol_version alert, not a client that could not even try.
    assert info.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", info.value
    assert server.results and server.results[0].startswith("error:")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=lambda v: v.name
)
def test_client_can_really_speak_old_tls(tmp_path: Path, version: ssl.TLSVersion) -> None:
    """Control for the refusal test: an old-TLS server does complete this handshake."""
    pair = find_certificate(tmp_path, tmp_path / "certs-state")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    server_ctx.minimum_version = server_ctx.maximum_version = version
    server_ctx.load_cert_chain(pair.cert, pair.key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = int(listener.getsockname()[1])
        seen: list[str] = []

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    seen.append(str(tls.version()))
            except ssl.SSLError as e:  # pragma: no cover - reported by the assertion
                seen.append(f"error: {e}")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            got = handshake(port, version)
        except ssl.SSLError as e:
            pytest.skip(f"this OpenSSL build cannot speak {version.name} at all: {e}")
        thread.join(5)
    assert got == {ssl.TLSVersion.TLSv1: "TLSv1", ssl.TLSVersion.TLSv1_1: "TLSv1.1"}[version]


def test_served_certificate_is_the_chosen_one(tls_server: TLSServer, tmp_path: Path) -> None:
    pair = find_certificate(tmp_path, tmp_path / "certs-state")
    expected = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pair.cert))
    for name in ("localhost", "127.0.0.1"):
        with (
            socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            assert der == expected.public_bytes(serialization.Encoding.DER)
            assert tls.selected_alpn_protocol() in (None, "http/1.1")


# --- subdomain mode: the workspace origins' wildcard -----------------------------------------


def test_subdomain_mode_adds_the_wildcard_and_replaces_a_kept_certificate(tmp_path: Path) -> None:
    state = tmp_path / "state"
    plain = find_certificate(tmp_path, state, "box")
    assert "*.ws.localhost" not in dns_names(plain.cert)
    first = plain.cert.read_bytes()
    wild = find_certificate(tmp_path, state, "box", extra_names=wildcard_names("ws.localhost"))
    assert dns_names(wild.cert) == {"localhost", "box", "ws.localhost", "*.ws.localhost"}
    assert wild.cert.read_bytes() != first  # regenerated: the kept one lacked the name
    again = find_certificate(tmp_path, state, "box", extra_names=("ws.localhost", "*.ws.localhost"))
    assert again.cert.read_bytes() == wild.cert.read_bytes()  # now kept
    assert wildcard_names(None) == ()


def _verified_names(pair: CertPair, names: list[str]) -> dict[str, str]:
    """Real handshakes with hostname checking, the certificate as the only trust anchor."""
    server = TLSServer(server_context_factory(pair).getContext())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pair.cert))
    out: dict[str, str] = {}
    try:
        for name in names:
            try:
                with (
                    socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
                    ctx.wrap_socket(raw, server_hostname=name),
                ):
                    out[name] = "ok"
            except ssl.SSLCertVerificationError as e:
                out[name] = e.verify_message
    finally:
        server.close()
    return out


def test_wildcard_verifies_for_workspace_hosts(tmp_path: Path) -> None:
    pair = find_certificate(tmp_path, tmp_path / "s", "box", wildcard_names("ws.localhost"))
    got = _verified_names(pair, ["ide--default.ws.localhost", "ws.localhost", "a.b.ws.localhost"])
    assert got["ide--default.ws.localhost"] == "ok"
    assert got["ws.localhost"] == "ok"  # the Host App, opened same-site with its workspaces
    assert got["a.b.ws.localhost"] != "ok"  # a wildcard covers one label


def test_a_wildcard_directly_under_a_top_level_name_is_not_honoured(tmp_path: Path) -> None:
    """What the README says about WORKSPACE_ORIGIN_DOMAIN=localhost: OpenSSL (like
    browsers) ignores ``*.localhost``, so such a certificate is never valid for a
    workspace host; ``ws.localhost`` (two labels) is."""
    pair = find_certificate(tmp_path, tmp_path / "s", "box", ("*.localhost",))
    assert "*.localhost" in dns_names(pair.cert)
    got = _verified_names(pair, ["ide--default.localhost", "localhost"])
    assert got == {"ide--default.localhost": got["ide--default.localhost"], "localhost": "ok"}
    assert got["ide--default.localhost"] != "ok"
