"""A real Kubernetes control plane for GuildNet's tests, driven from Python (envtest style).

`TestCluster` runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok
controller as local processes, so tests talk to a real API server instead of fakes. kwok
simulates one Node (`kwok-node-0`): pods scheduled on it go Running+Ready with a pod IP from
198.18.16.0/20, and kwok serves the kubelet API so `pods/log`, `pods/portforward` and
`pods/proxy` go through kube-apiserver exactly as in a real cluster. kwok's Logs, ClusterLogs,
PortForward and ClusterPortForward CRDs map those to local files and TCP addresses.

Binaries come from `tests/harness/build-testbin.sh` (cached under
`~/.cache/guildnet/testbin/`); see `find_binaries` for the environment overrides.

Two network modes:

* **netns mode** (what `pytest tests/integration` uses): the process runs inside the private
  network namespace made by `tests/harness/netns-run.sh`, where 198.18.0.1 is on `lo` and every
  198.18.0.0/16 address is local. kube-apiserver advertises 198.18.0.1, the kwok node's
  InternalIP and kubelet endpoint are 198.18.0.1, and a test backend for a pod listens on the
  pod IP (198.18.0.x), which kube-apiserver is willing to proxy to (it refuses loopback).
* **host mode** (no prepared namespace, or `--no-netns-setup`): everything binds 127.0.0.1 and
  the node IP is 127.0.0.1. Pod IPs are still handed out from 198.18.16.0/20 but are not
  routable, so pod/service proxy to pods cannot work. That is acceptable for `make dev-cluster`.

All listeners bind loopback (or 198.18.0.1 inside the namespace); nothing talks to any other
address. The service CIDR (198.19.0.0/16, room for thousands of Services) is only an
allocation range: no kube-proxy runs.

Standalone use (backs `make dev-cluster`)::

    python -m tests.harness.cluster --kubeconfig PATH [--no-netns-setup]

starts the cluster, writes an admin kubeconfig to PATH, prints one line, and runs until
SIGINT/SIGTERM, then stops every process and removes its work directory.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HARNESS_DIR = Path(__file__).resolve().parent
KWOK_STAGES_FILE = HARNESS_DIR / "kwok-stages.yaml"

DEFAULT_K8S_VERSION = "v1.36.3"
DEFAULT_ETCD_VERSION = "v3.6.16"
DEFAULT_KWOK_VERSION = "v0.8.0"

#: Address on `lo` inside the test namespace: apiserver advertise address and kwok node IP.
NETNS_NODE_IP = "198.18.0.1"
#: The whole range that is local inside the test namespace.
NETNS_LOCAL_CIDR = "198.18.0.0/16"
#: Pod CIDR of the kwok node; excludes 198.18.0.1 so pod IPs never equal the node IP.
POD_CIDR = "198.18.16.0/20"
#: Service ClusterIP allocation range; never routed anywhere (no kube-proxy).
SERVICE_CIDR = "198.19.0.0/16"
NODE_NAME = "kwok-node-0"
#: kwok CRDs the controller serves (see `--enable-crds`).
KWOK_CRDS = ("Logs", "ClusterLogs", "PortForward", "ClusterPortForward")
_KWOK_CRD_FILES = {
    "Logs": "kwok.x-k8s.io_logs.yaml",
    "ClusterLogs": "kwok.x-k8s.io_clusterlogs.yaml",
    "PortForward": "kwok.x-k8s.io_portforwards.yaml",
    "ClusterPortForward": "kwok.x-k8s.io_clusterportforwards.yaml",
}
_PROXY_ENV = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)


class ClusterStartError(RuntimeError):
    """The control plane did not come up; the message carries the process log tails."""


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane executables."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path


def testbin_cache() -> Path:
    """Where build-testbin.sh caches binaries (same env var and default as the script)."""
    env = os.environ.get("GUILDNET_TESTBIN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "guildnet" / "testbin"


def _versions() -> tuple[str, str, str]:
    return (
        os.environ.get("K8S_VERSION", DEFAULT_K8S_VERSION),
        os.environ.get("ETCD_VERSION", DEFAULT_ETCD_VERSION),
        os.environ.get("KWOK_VERSION", DEFAULT_KWOK_VERSION),
    )


def find_binaries() -> Binaries:
    """Locate the binaries: per-binary env vars win, else the versioned testbin cache.

    Overrides: GUILDNET_ETCD_BIN, GUILDNET_KUBE_APISERVER_BIN,
    GUILDNET_KUBE_CONTROLLER_MANAGER_BIN, GUILDNET_KUBE_SCHEDULER_BIN, GUILDNET_KWOK_BIN;
    cache location/versions: GUILDNET_TESTBIN_CACHE, K8S_VERSION, ETCD_VERSION, KWOK_VERSION.
    """
    cache = testbin_cache()
    k8s, etcd, kwok = _versions()
    wanted = {
        "etcd": ("GUILDNET_ETCD_BIN", cache / f"etcd-{etcd}" / "etcd"),
        "kube_apiserver": (
            "GUILDNET_KUBE_APISERVER_BIN",
            cache / f"kube-{k8s}" / "kube-apiserver",
        ),
        "kube_controller_manager": (
            "GUILDNET_KUBE_CONTROLLER_MANAGER_BIN",
            cache / f"kube-{k8s}" / "kube-controller-manager",
        ),
        "kube_scheduler": (
            "GUILDNET_KUBE_SCHEDULER_BIN",
            cache / f"kube-{k8s}" / "kube-scheduler",
        ),
        "kwok": ("GUILDNET_KWOK_BIN", cache / f"kwok-{kwok}" / "kwok"),
    }
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, (env, default) in wanted.items():
        path = Path(os.environ[env]) if os.environ.get(env) else default
        if path.is_file() and os.access(path, os.X_OK):
            found[key] = path
        else:
            missing.append(f"{path} (override with {env})")
    if missing:
        raise ClusterStartError(
            "test control-plane binaries not found:\n  "
            + "\n  ".join(missing)
            + "\nbuild them with: tests/harness/build-testbin.sh"
        )
    return Binaries(**found)


def find_kwok_crd_dir() -> Path:
    """Find kwok's CRD manifests without touching the network.

    Order: GUILDNET_KWOK_CRD_DIR, `<testbin>/kwok-<v>/crd` (copied by build-testbin.sh), the
    Go module cache (`GOMODCACHE`/`GOPATH`/`~/go`), then `go mod download -json` with
    GOPROXY=off (module cache only).
    """
    _, _, kwok = _versions()
    candidates: list[Path] = []
    if os.environ.get("GUILDNET_KWOK_CRD_DIR"):
        candidates.append(Path(os.environ["GUILDNET_KWOK_CRD_DIR"]))
    candidates.append(testbin_cache() / f"kwok-{kwok}" / "crd")
    modcache = os.environ.get("GOMODCACHE") or str(
        Path(os.environ.get("GOPATH") or Path.home() / "go") / "pkg" / "mod"
    )
    candidates.append(Path(modcache) / f"sigs.k8s.io/kwok@{kwok}/kustomize/crd/bases")
    for cand in candidates:
        if (cand / _KWOK_CRD_FILES["Logs"]).is_file():
            return cand
    go = shutil.which("go")
    if go:
        env = dict(os.environ, GOPROXY="off", GOFLAGS="-mod=mod")
        with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError, KeyError):
            out = subprocess.run(
                [go, "mod", "download", "-json", f"sigs.k8s.io/kwok@{kwok}"],
                env=env,
                capture_output=True,
                timeout=30,
                check=True,
                cwd=tempfile.gettempdir(),
            ).stdout
            cand = Path(json.loads(out)["Dir"]) / "kustomize" / "crd" / "bases"
            if (cand / _KWOK_CRD_FILES["Logs"]).is_file():
                return cand
    raise ClusterStartError(
        "kwok CRD manifests not found in "
        + ", ".join(str(c) for c in candidates)
        + "; run tests/harness/build-testbin.sh or set GUILDNET_KWOK_CRD_DIR"
    )


# --------------------------------------------------------------------------- network


def netns_prepared() -> bool:
    """True when running inside the namespace netns-run.sh prepares (198.18.0.x is local)."""
    for addr in (NETNS_NODE_IP, "198.18.0.254"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((addr, 0))
            except OSError:
                return False
    return True


def _free_ports(host: str, count: int) -> list[int]:
    """Reserve `count` distinct free TCP ports on `host` (held open together to avoid dupes)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class _KeyPair:
    cert: Path
    key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


class _PKI:
    """A throw-away CA and the certificates the control plane needs (ECDSA P-256: fast)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        self._not_before = now - datetime.timedelta(hours=1)
        self._not_after = now + datetime.timedelta(days=7)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guildnet-test-ca")])
        self._ca_name = name
        ski = x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key())
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_cert = _write(
            self.dir / "ca.crt", self._ca_cert.public_bytes(serialization.Encoding.PEM), 0o644
        )
        self.ca_key = _write(self.dir / "ca.key", _pem_key(self._ca_key))

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        organizations: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        dns: tuple[str, ...] = (),
        server: bool = False,
        client: bool = False,
    ) -> _KeyPair:
        """Issue a leaf certificate signed by the CA and write `<name>.crt`/`<name>.key`."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self._ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return _KeyPair(
            cert=_write(
                self.dir / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644
            ),
            key=_write(self.dir / f"{name}.key", _pem_key(key)),
        )

    def service_account_keys(self) -> _KeyPair:
        """Key pair kube-apiserver signs (and verifies) service-account tokens with."""
        key = ec.generate_private_key(ec.SECP256R1())
        pub = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return _KeyPair(
            cert=_write(self.dir / "sa.pub", pub, 0o644),
            key=_write(self.dir / "sa.key", _pem_key(key)),
        )


def _kubeconfig(server: str, ca: Path, client: _KeyPair, user: str = "admin") -> str:
    """A self-contained kubeconfig (certs embedded) so it can be copied anywhere."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "guildnet-test",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert),
                    "client-key-data": b64(client.key),
                },
            }
        ],
        "contexts": [
            {"name": "guildnet-test", "context": {"cluster": "guildnet-test", "user": user}}
        ],
        "current-context": "guildnet-test",
        "preferences": {},
    }
    # JSON is valid YAML; every kubeconfig loader accepts it.
    return json.dumps(doc, indent=2) + "\n"


# --------------------------------------------------------------------------- processes


def _set_pdeathsig() -> None:
    """Runs in the child before exec: die with the parent, so a crashed test run leaks nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    text = data[-32768:].decode(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Child environment without proxy settings: every connection must stay local."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_ENV}
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------- cluster


class TestCluster:
    """etcd + kube-apiserver + controller-manager + scheduler + kwok, one kwok node.

    Use as a context manager or call `start()`/`stop()`. After `start()`, `kubeconfig_path`
    is an admin (system:masters) kubeconfig and `server` the API server URL.

    Note: children get PR_SET_PDEATHSIG, which fires when the *thread* that started them exits;
    call `start()` from a thread that outlives the cluster (normally the main thread).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        *,
        netns: bool | None = None,
        work_dir: Path | None = None,
        keep_work_dir: bool = False,
        start_timeout: float = 90.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Configure (nothing starts until `start()`).

        netns: None auto-detects a namespace prepared by netns-run.sh; False forces host mode;
        True requires the namespace. work_dir: where certs, etcd data and logs go (default: a
        fresh temp dir, removed on stop unless keep_work_dir).
        """
        self._netns_request = netns
        self.netns = False
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="guildnet-cluster-"))
        self.keep_work_dir = keep_work_dir
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.node_name = NODE_NAME
        self.pod_cidr = POD_CIDR
        self.node_ip = "127.0.0.1"
        self.server = ""
        self.kubeconfig_path = self.work_dir / "admin.kubeconfig"
        self.ca_cert = self.work_dir / "pki" / "ca.crt"
        self.admin_cert = self.work_dir / "pki" / "admin.crt"
        self.admin_key = self.work_dir / "pki" / "admin.key"
        self.log_dir = self.work_dir / "logs"
        self.startup_seconds = 0.0
        self._procs: list[_Proc] = []
        self._ssl: ssl.SSLContext | None = None
        self._api_port = 0
        self._started = False
        self._lock = threading.Lock()

    # ---- context manager

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- lifecycle

    def start(self) -> None:
        """Start every component and wait until a pod could be scheduled and run."""
        if self._started:
            raise RuntimeError("cluster already started")
        self._started = True
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout
        try:
            self._start(deadline)
        except BaseException as exc:
            details = self.logs_tail()
            self.stop()
            if isinstance(exc, ClusterStartError | TimeoutError):
                raise ClusterStartError(f"{exc}\n\n{details}") from exc
            raise
        self.startup_seconds = time.monotonic() - t0

    def _start(self, deadline: float) -> None:
        bins = find_binaries()
        crd_dir = find_kwok_crd_dir()
        if not KWOK_STAGES_FILE.is_file():
            raise ClusterStartError(f"missing {KWOK_STAGES_FILE}")
        prepared = netns_prepared()
        if self._netns_request is True and not prepared:
            raise ClusterStartError(
                "netns mode requested but 198.18.0.1 is not local: run under "
                "tests/harness/netns-run.sh"
            )
        self.netns = prepared if self._netns_request is None else self._netns_request
        self.node_ip = NETNS_NODE_IP if self.netns else "127.0.0.1"

        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pki = _PKI(self.work_dir / "pki")
        etcd_client, etcd_peer, api_port, kcm_port, sched_port = _free_ports("127.0.0.1", 5)
        (kubelet_port,) = _free_ports(self.node_ip, 1)
        self._api_port = api_port
        self.server = f"https://127.0.0.1:{api_port}"

        first_service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
        serving = pki.issue(
            "apiserver",
            "kube-apiserver",
            ips=tuple(dict.fromkeys(("127.0.0.1", self.node_ip, NETNS_NODE_IP, first_service_ip))),
            dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            server=True,
        )
        admin = pki.issue("admin", "admin", organizations=("system:masters",), client=True)
        kubelet_client = pki.issue(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organizations=("system:masters",),
            client=True,
        )
        kwok_serving = pki.issue(
            "kwok-kubelet",
            f"system:node:{self.node_name}",
            organizations=("system:nodes",),
            ips=tuple(dict.fromkeys((self.node_ip, "127.0.0.1"))),
            dns=("localhost", self.node_name),
            server=True,
        )
        sa = pki.service_account_keys()
        self.ca_cert, self.admin_cert, self.admin_key = pki.ca_cert, admin.cert, admin.key
        self.kubeconfig_path.write_text(_kubeconfig(self.server, pki.ca_cert, admin))
        self.kubeconfig_path.chmod(0o600)
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(admin.cert), str(admin.key))
        self._ssl = ctx

        etcd_dir = self.work_dir / "etcd"
        etcd_dir.mkdir(mode=0o700, exist_ok=True)
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        client_url = f"http://127.0.0.1:{etcd_client}"
        self._spawn(
            "etcd",
            [
                str(bins.etcd),
                "--name=default",
                f"--data-dir={etcd_dir}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=1073741824",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(bins.kube_apiserver),
                f"--etcd-servers={client_url}",
                "--bind-address=127.0.0.1",
                f"--advertise-address={self.node_ip}",
                f"--secure-port={api_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--cert-dir={self.work_dir / 'apiserver-certs'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                # kube-apiserver -> kwok "kubelet": mutual TLS, server cert checked against the CA,
                # and only the InternalIP is used (never a hostname that would need DNS).
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
            ],
        )
        self._wait(deadline, "kube-apiserver /readyz", self._readyz)

        self._install_crds(crd_dir, deadline)
        self._create_node()

        self._spawn(
            "kube-controller-manager",
            [
                str(bins.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig_path}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.work_dir / 'kcm-certs'}",
                "--leader-elect=false",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={sa.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allocate-node-cidrs=false",
                # Client-side rate limits only slow tests down (namespace deletion walks every
                # resource type); kwokctl lifts them the same way.
                "--kube-api-qps=5000",
                "--kube-api-burst=10000",
                "--profiling=false",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bins.kube_scheduler),
                f"--kubeconfig={self.kubeconfig_path}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={self.work_dir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--kube-api-qps=5000",
                "--kube-api-burst=10000",
                "--profiling=false",
            ],
        )
        kwok_home = self.work_dir / "kwok-home"
        kwok_home.mkdir(exist_ok=True)
        self._spawn(
            "kwok",
            [
                str(bins.kwok),
                f"--kubeconfig={self.kubeconfig_path}",
                f"--config={KWOK_STAGES_FILE}",
                "--manage-all-nodes=true",
                f"--node-ip={self.node_ip}",
                "--node-name=localhost",
                f"--node-port={kubelet_port}",
                f"--server-address={self.node_ip}:{kubelet_port}",
                f"--tls-cert-file={kwok_serving.cert}",
                f"--tls-private-key-file={kwok_serving.key}",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
                "--enable-crds=" + ",".join(KWOK_CRDS),
            ],
            # kwok also loads ~/.kwok/kwok.yaml if present: isolate it from the user's home.
            env={"HOME": str(kwok_home)},
        )
        self._wait(deadline, f"node {self.node_name} Ready", self._node_ready)
        self._wait(deadline, "ServiceAccount default/default", self._default_sa_exists)

    def stop(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL after stop_timeout) and clean up."""
        with self._lock:
            procs, self._procs = self._procs, []
        # Clients first, then the API server, then etcd, so nothing logs spurious errors.
        tiers = [
            [p for p in procs if p.name not in ("kube-apiserver", "etcd")],
            [p for p in procs if p.name == "kube-apiserver"],
            [p for p in procs if p.name == "etcd"],
        ]
        for tier in tiers:
            for proc in tier:
                if proc.alive():
                    with contextlib.suppress(ProcessLookupError):
                        proc.popen.send_signal(signal.SIGTERM)
            end = time.monotonic() + self.stop_timeout
            for proc in tier:
                try:
                    proc.popen.wait(timeout=max(0.0, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.popen.kill()
                    proc.popen.wait(timeout=self.stop_timeout)
        if self._own_work_dir and not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def logs_tail(self, lines: int = 40) -> str:
        """Last lines of every component's log, for failure messages."""
        parts = []
        for proc in list(self._procs):
            state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
            parts.append(f"===== {proc.name} ({state}) {proc.log} =====\n{_tail(proc.log, lines)}")
        return "\n".join(parts)

    # ---- helpers

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                env=_child_env(env),
                start_new_session=True,  # Ctrl-C reaches us, and we stop children in order
                preexec_fn=_set_pdeathsig,  # single-threaded here
            )
        with self._lock:
            self._procs.append(_Proc(name, popen, log))

    def _check_alive(self) -> None:
        for proc in self._procs:
            if not proc.alive():
                raise ClusterStartError(f"{proc.name} exited with {proc.popen.returncode}")

    def _wait(self, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        """Poll `ready` until true; fail fast if a component died, or at the deadline."""
        delay = 0.05
        while True:
            self._check_alive()
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, bytes]:
        """A minimal admin-authenticated API call (the harness needs no client library)."""
        if self._ssl is None:
            raise RuntimeError("cluster not started")
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self._api_port, context=self._ssl, timeout=timeout
        )
        try:
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _get_json(self, path: str) -> dict[str, Any] | None:
        status, data = self.request("GET", path)
        if status != HTTPStatus.OK:
            return None
        result: dict[str, Any] = json.loads(data)
        return result

    def _readyz(self) -> bool:
        status, _ = self.request("GET", "/readyz", timeout=2.0)
        return status == HTTPStatus.OK

    def _install_crds(self, crd_dir: Path, deadline: float) -> None:
        names = []
        for kind in KWOK_CRDS:
            manifest = (crd_dir / _KWOK_CRD_FILES[kind]).read_bytes()
            # The apiserver decodes YAML bodies itself; drop a leading document marker.
            manifest = manifest.removeprefix(b"---\n")
            status, data = self.request(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                manifest,
                "application/yaml",
            )
            if status not in (HTTPStatus.CREATED, HTTPStatus.CONFLICT):
                raise ClusterStartError(f"creating CRD {kind}: HTTP {status}: {data[:500]!r}")
            # kwok.x-k8s.io_<plural>.yaml defines <plural>.kwok.x-k8s.io
            group, plural = _KWOK_CRD_FILES[kind].removesuffix(".yaml").split("_", 1)
            names.append(f"{plural}.{group}")

        def established() -> bool:
            for name in names:
                crd = self._get_json(
                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                )
                conds = (crd or {}).get("status", {}).get("conditions", [])
                if not any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                    return False
            return True

        self._wait(deadline, "kwok CRDs Established", established)

    def _create_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
        }
        status, data = self.request("POST", "/api/v1/nodes", json.dumps(node).encode())
        if status != HTTPStatus.CREATED:
            raise ClusterStartError(f"creating node: HTTP {status}: {data[:500]!r}")

    def _node_ready(self) -> bool:
        node = self._get_json(f"/api/v1/nodes/{self.node_name}") or {}
        conds = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def _default_sa_exists(self) -> bool:
        return self._get_json("/api/v1/namespaces/default/serviceaccounts/default") is not None


# --------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into KeyboardInterrupt so both stop the cluster the same way.

    SIGINT is set explicitly because a background job (`cmd &`) inherits it as ignored.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    """Run a dev cluster in the foreground until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.cluster", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--kubeconfig", required=True, help="where to write the admin kubeconfig")
    parser.add_argument(
        "--no-netns-setup",
        action="store_true",
        help="host mode: bind 127.0.0.1 only, even inside a prepared network namespace",
    )
    parser.add_argument("--work-dir", type=Path, help="keep certs, etcd data and logs here")
    args = parser.parse_args(argv)

    cluster = TestCluster(
        netns=False if args.no_netns_setup else None,
        work_dir=args.work_dir,
        keep_work_dir=args.work_dir is not None,
    )
    with _signals_raise():
        try:
            cluster.start()
            target = Path(args.kubeconfig)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.kubeconfig_path, target)
            target.chmod(0o600)
            mode = "netns" if cluster.netns else "host"
            print(
                f"guildnet test cluster ready in {cluster.startup_seconds:.1f}s: "
                f"server={cluster.server} kubeconfig={target} mode={mode} "
                f"logs={cluster.log_dir} (Ctrl-C to stop)",
                flush=True,
            )
            while True:
                time.sleep(1.0)
                cluster._check_alive()
        except KeyboardInterrupt:
            return 0
        except ClusterStartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
