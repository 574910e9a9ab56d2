"""The Host App's TLS certificate: found in ./certs, else generated once.

Order (from the spec): ``./certs/server.crt|key``, ``./certs/dev.crt|key``,
else a self-signed certificate kept under ``<state>/certs/`` and reused on
restart, so browsers that trusted it once keep trusting it. In subdomain mode
(``WORKSPACE_ORIGIN=subdomain``) it also names ``*.<WORKSPACE_ORIGIN_DOMAIN>``, the
workspace origins; a kept certificate that lacks a required name is replaced.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import ssl


@attrs.frozen
class CertPair:
    cert: Path
    key: Path
    generated: bool


def find_certificate(
    cwd: Path,
    certs_dir: Path,
    hostname: str | None = None,
    extra_names: Sequence[str] = (),
) -> CertPair:
    """Pick the certificate to serve, generating the self-signed one if needed.

    ``extra_names`` are DNS names the self-signed certificate must also carry (the
    workspace origins' wildcard); a kept one without them is generated anew. Your own
    ``./certs`` certificate is used as it is: it must cover them itself.
    """
    for stem in ("server", "dev"):
        crt, key = cwd / "certs" / f"{stem}.crt", cwd / "certs" / f"{stem}.key"
        if crt.is_file() and key.is_file():
            return CertPair(crt, key, generated=False)
    crt, key = certs_dir / "selfsigned.crt", certs_dir / "selfsigned.key"
    if not (crt.is_file() and key.is_file()) or not set(extra_names) <= dns_names(crt):
        write_self_signed(crt, key, hostname or socket.gethostname(), extra_names)
    return CertPair(crt, key, generated=True)


def dns_names(crt: Path) -> set[str]:
    """The DNS names in a PEM certificate's SAN (empty if it cannot be read)."""
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound, OSError):
        return set()
    return set(san.get_values_for_type(x509.DNSName))


def wildcard_names(domain: str | None) -> tuple[str, ...]:
    """Subdomain mode's names: ``*.<domain>`` (the workspace origins) and the domain itself
    (where the Host App can be opened so that they are same-site with it); else nothing."""
    return (domain, f"*.{domain}") if domain else ()


def self_signed_sans(hostname: str, extra_names: Sequence[str] = ()) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    if hostname and hostname != "localhost":
        names.append(x509.DNSName(hostname))
    names.extend(x509.DNSName(n) for n in extra_names if n not in ("localhost", hostname))
    return names


def write_self_signed(crt: Path, key: Path, hostname: str, extra_names: Sequence[str] = ()) -> None:
    """Write a 5-year P-256 self-signed certificate; the key file is mode 0600."""
    crt.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"GuildNet ({hostname})")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=5 * 365))
        .add_extension(
            x509.SubjectAlternativeName(self_signed_sans(hostname, extra_names)), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private, hashes.SHA256())
    )
    key_bytes = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp_key = key.with_suffix(".key.tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    os.chmod(tmp_key, 0o600)
    tmp_crt = crt.with_suffix(".crt.tmp")
    tmp_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key)
    os.replace(tmp_crt, crt)


def server_context_factory(pair: CertPair) -> ssl.CertificateOptions:
    """TLS 1.2+ server options; extra certificates in the file form the chain."""
    return server_context_from_pem(pair.cert.read_bytes(), pair.key.read_bytes(), str(pair.cert))


def server_context_from_pem(pem: bytes, key_pem: bytes, where: str) -> ssl.CertificateOptions:
    """TLS 1.2+ server options from PEM in memory (the certificate chain, then its key)."""
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = [marker + part for part in pem.split(marker)[1:]]
    if not blocks:
        raise ValueError(f"{where}: no PEM certificate found")
    # Anything after the last certificate's END line (a key in a combined file) is not part of it.
    end = b"-----END CERTIFICATE-----"
    blocks = [b[: b.index(end) + len(end)] if end in b else b for b in blocks]
    leaf = ssl.PrivateCertificate.loadPEM(blocks[0] + b"\n" + key_pem)
    chain = [ssl.Certificate.loadPEM(b).original for b in blocks[1:]]
    return ssl.CertificateOptions(
        privateKey=leaf.privateKey.original,
        certificate=leaf.original,
        extraCertChain=chain,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableProtocols=[b"http/1.1"],
    )
