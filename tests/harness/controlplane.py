"""The control plane both test tiers share: etcd, kube-apiserver, controller-manager, scheduler.

`ControlPlaneCluster` owns the work directory, the PKI, the processes and a minimal admin API
client; the kwok tier (`cluster.TestCluster`) and the real-node tier
(`realnode.RealNodeCluster`) subclass it and add their node.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import shutil
import signal
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from http import HTTPStatus
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from tests.harness.pki import PKI, KeyPair, kubeconfig
from tests.harness.processes import ClusterStartError, ProcessSet, free_ports
from tests.harness.storage import HostPathProvisioner

DEFAULT_K8S_VERSION = "v1.36.3"
DEFAULT_ETCD_VERSION = "v3.6.16"
DEFAULT_KWOK_VERSION = "v0.8.0"
DEFAULT_COREDNS_VERSION = "v1.15.0"

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


# --------------------------------------------------------------------------- binaries


def testbin_cache() -> Path:
    """Where build-testbin.sh caches binaries (same env var and default as the script)."""
    env = os.environ.get("GUILDNET_TESTBIN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "guildnet" / "testbin"


def versions() -> dict[str, str]:
    """Component versions (env overrides as in build-testbin.sh)."""
    return {
        "k8s": os.environ.get("K8S_VERSION", DEFAULT_K8S_VERSION),
        "etcd": os.environ.get("ETCD_VERSION", DEFAULT_ETCD_VERSION),
        "kwok": os.environ.get("KWOK_VERSION", DEFAULT_KWOK_VERSION),
        "coredns": os.environ.get("COREDNS_VERSION", DEFAULT_COREDNS_VERSION),
    }


def binary_path(name: str) -> tuple[str, Path]:
    """(override env var, path) of one test binary, e.g. `kube-apiserver`."""
    env = "GUILDNET_" + name.upper().replace("-", "_") + "_BIN"
    if os.environ.get(env):
        return env, Path(os.environ[env])
    v = versions()
    cache = testbin_cache()
    if name == "etcd":
        return env, cache / f"etcd-{v['etcd']}" / "etcd"
    if name == "kwok":
        return env, cache / f"kwok-{v['kwok']}" / "kwok"
    if name == "coredns":
        return env, cache / f"coredns-{v['coredns']}" / "coredns"
    return env, cache / f"kube-{v['k8s']}" / name


def find_binaries(names: Sequence[str]) -> dict[str, Path]:
    """Locate the named binaries: `GUILDNET_<NAME>_BIN` wins, else the versioned testbin cache.

    Cache location and versions: GUILDNET_TESTBIN_CACHE, K8S_VERSION, ETCD_VERSION,
    KWOK_VERSION, COREDNS_VERSION. Raises ClusterStartError naming `make testbin`.
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        env, path = binary_path(name)
        if path.is_file() and os.access(path, os.X_OK):
            found[name] = path
        else:
            missing.append(f"{path} (override with {env})")
    if missing:
        raise ClusterStartError(
            "test cluster binaries not found:\n  "
            + "\n  ".join(missing)
            + "\nbuild them with: make testbin  (tests/harness/build-testbin.sh)"
        )
    return found


# --------------------------------------------------------------------------- CLI helper


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
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


# --------------------------------------------------------------------------- cluster base


class ControlPlaneCluster:
    """Lifecycle, PKI, processes and admin API access shared by both tiers.

    Subclasses implement `_start(deadline)` (calling `_start_control_plane` and
    `_start_controllers`) and may extend `stop()`.

    Note: children get PR_SET_PDEATHSIG, which fires when the *thread* that started them exits;
    call `start()` from a thread that outlives the cluster (normally the main thread).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        work_dir: Path | None,
        keep_work_dir: bool,
        start_timeout: float,
        stop_timeout: float,
        work_prefix: str,
    ) -> None:
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix=work_prefix))
        self.keep_work_dir = keep_work_dir
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.server = ""
        self.kubeconfig_path = self.work_dir / "admin.kubeconfig"
        self.ca_cert = self.work_dir / "pki" / "ca.crt"
        self.admin_cert = self.work_dir / "pki" / "admin.crt"
        self.admin_key = self.work_dir / "pki" / "admin.key"
        self.log_dir = self.work_dir / "logs"
        self.startup_seconds = 0.0
        self._procs = ProcessSet(self.log_dir, self.work_dir)
        self._ssl: ssl.SSLContext | None = None
        self._api_port = 0
        self._started = False
        self.provisioner: HostPathProvisioner | None = None

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
            if isinstance(exc, TimeoutError) or (
                isinstance(exc, ClusterStartError) and self._procs_started
            ):
                raise ClusterStartError(f"{exc}\n\n{details}") from exc
            raise
        self.startup_seconds = time.monotonic() - t0

    @property
    def _procs_started(self) -> bool:
        return self.log_dir.is_dir() and any(self.log_dir.glob("*.log"))

    def _start(self, deadline: float) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every process (clients, then kube-apiserver, then etcd) and clean up."""
        self._stop_processes()
        if self._own_work_dir and not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _stop_processes(self, keep: Sequence[str] = ()) -> None:
        """Clients first, then kube-apiserver, then etcd, so nothing logs spurious errors.

        `keep`: names to leave running (a subclass stops them later).
        """
        if self.provisioner is not None:
            self.provisioner.stop()
            self.provisioner = None
        names = self._procs.names()
        self._procs.stop(
            [n for n in names if n not in ("kube-apiserver", "etcd", *keep)], self.stop_timeout
        )
        self._procs.stop(["kube-apiserver"], self.stop_timeout)
        self._procs.stop(["etcd"], self.stop_timeout)

    def logs_tail(self, lines: int = 40) -> str:
        """Last lines of every component's log, for failure messages."""
        return self._procs.logs_tail(lines)

    # ---- helpers for subclasses

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._procs.spawn(name, argv, env)

    def _check_alive(self) -> None:
        self._procs.check_alive()

    def _wait(self, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        self._procs.wait(deadline, what, ready)

    def _start_control_plane(
        self,
        bins: dict[str, Path],
        deadline: float,
        *,
        advertise_ip: str,
        service_cidr: str,
        extra_cert_ips: tuple[str, ...] = (),
        apiserver_args: Sequence[str] = (),
        prefix: Sequence[str] = (),
        api_port: int | None = None,
    ) -> tuple[PKI, KeyPair]:
        """PKI, etcd and kube-apiserver (on 127.0.0.1); waits for /readyz.

        Returns the PKI and the service-account key pair (the controller manager needs it).
        `prefix` wraps each command (e.g. `nsenter` into the cluster's namespaces); `api_port`
        is kube-apiserver's port when the caller already chose it.
        """
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pki = PKI(self.work_dir / "pki")
        etcd_client, etcd_peer, free_api_port = free_ports("127.0.0.1", 3)
        api_port = api_port or free_api_port
        self._api_port = api_port
        self.server = f"https://127.0.0.1:{api_port}"

        first_service_ip = str(next(ipaddress.ip_network(service_cidr).hosts()))
        serving = pki.issue(
            "apiserver",
            "kube-apiserver",
            ips=tuple(
                dict.fromkeys(("127.0.0.1", advertise_ip, first_service_ip, *extra_cert_ips))
            ),
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
        sa = pki.service_account_keys()
        self.ca_cert, self.admin_cert, self.admin_key = pki.ca_cert, admin.cert, admin.key
        self.kubeconfig_path.write_text(kubeconfig(self.server, pki.ca_cert, admin))
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
                *prefix,
                str(bins["etcd"]),
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
                *prefix,
                str(bins["kube-apiserver"]),
                f"--etcd-servers={client_url}",
                "--bind-address=127.0.0.1",
                f"--advertise-address={advertise_ip}",
                f"--secure-port={api_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--cert-dir={self.work_dir / 'apiserver-certs'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-cluster-ip-range={service_cidr}",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                # kube-apiserver -> kubelet: mutual TLS, server cert checked against the CA,
                # and only the InternalIP is used (never a hostname that would need DNS).
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                *apiserver_args,
            ],
        )
        self._wait(deadline, "kube-apiserver /readyz", self._readyz)
        return pki, sa

    def _start_controllers(
        self,
        bins: dict[str, Path],
        pki: PKI,
        sa: KeyPair,
        *,
        service_cidr: str,
        prefix: Sequence[str] = (),
    ) -> None:
        """kube-controller-manager and kube-scheduler, both as cluster admin."""
        kcm_port, sched_port = free_ports("127.0.0.1", 2)
        self._spawn(
            "kube-controller-manager",
            [
                *prefix,
                str(bins["kube-controller-manager"]),
                f"--kubeconfig={self.kubeconfig_path}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.work_dir / 'kcm-certs'}",
                "--leader-elect=false",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={sa.key}",
                f"--service-cluster-ip-range={service_cidr}",
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
                *prefix,
                str(bins["kube-scheduler"]),
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
        # Home volumes bind on both tiers (tests/harness/storage.py says why not a real
        # provisioner).
        self.provisioner = HostPathProvisioner(self.request, self.work_dir / "volumes")
        self.provisioner.install()
        self.provisioner.start()

    # ---- admin API access

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

    def _create(self, path: str, obj: dict[str, Any]) -> None:
        """POST `obj`; an existing object (409) is fine."""
        status, data = self.request("POST", path, json.dumps(obj).encode())
        if status not in (HTTPStatus.CREATED, HTTPStatus.CONFLICT):
            raise ClusterStartError(f"creating {path}: HTTP {status}: {data[:500]!r}")

    def _readyz(self) -> bool:
        status, _ = self.request("GET", "/readyz", timeout=2.0)
        return status == HTTPStatus.OK

    def _node_ready(self, node_name: str) -> bool:
        node = self._get_json(f"/api/v1/nodes/{node_name}") or {}
        conds = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def _default_sa_exists(self) -> bool:
        return self._get_json("/api/v1/namespaces/default/serviceaccounts/default") is not None
