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
address. The service CIDR (198.19.128.0/17, room for thousands of Services) is only an
allocation range: no kube-proxy runs. (The real-node tier, realnode.py, uses 198.19.0.0/20 for
Services and 198.19.64.0/20 for pods, where they are routed: the two never overlap.)

Standalone use (backs `make dev-cluster`)::

    python -m tests.harness.cluster --kubeconfig PATH [--no-netns-setup]

starts the cluster, writes an admin kubeconfig to PATH, prints one line, and runs until
SIGINT/SIGTERM, then stops every process and removes its work directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from http import HTTPStatus
from pathlib import Path

from tests.harness.controlplane import (
    CONTROL_PLANE,
    DEFAULT_ETCD_VERSION,
    DEFAULT_K8S_VERSION,
    DEFAULT_KWOK_VERSION,
    ControlPlaneCluster,
    find_binaries,
    signals_raise,
    testbin_cache,
    versions,
)
from tests.harness.pki import PKI
from tests.harness.processes import ClusterStartError, free_ports

__all__ = [
    "DEFAULT_ETCD_VERSION",
    "DEFAULT_K8S_VERSION",
    "DEFAULT_KWOK_VERSION",
    "NETNS_LOCAL_CIDR",
    "NETNS_NODE_IP",
    "NODE_NAME",
    "POD_CIDR",
    "SERVICE_CIDR",
    "ClusterStartError",
    "TestCluster",
    "find_binaries",
    "find_kwok_crd_dir",
    "netns_prepared",
    "testbin_cache",
]

HARNESS_DIR = Path(__file__).resolve().parent
KWOK_STAGES_FILE = HARNESS_DIR / "kwok-stages.yaml"

#: Address on `lo` inside the test namespace: apiserver advertise address and kwok node IP.
NETNS_NODE_IP = "198.18.0.1"
#: The whole range that is local inside the test namespace.
NETNS_LOCAL_CIDR = "198.18.0.0/16"
#: Pod CIDR of the kwok node; excludes 198.18.0.1 so pod IPs never equal the node IP.
POD_CIDR = "198.18.16.0/20"
#: Service ClusterIP allocation range; never routed anywhere (no kube-proxy). Kept apart from
#: the real-node tier's routed ranges (198.19.0.0/20 services, 198.19.64.0/20 pods).
SERVICE_CIDR = "198.19.128.0/17"
NODE_NAME = "kwok-node-0"
#: kwok CRDs the controller serves (see `--enable-crds`).
KWOK_CRDS = ("Logs", "ClusterLogs", "PortForward", "ClusterPortForward")
_KWOK_CRD_FILES = {
    "Logs": "kwok.x-k8s.io_logs.yaml",
    "ClusterLogs": "kwok.x-k8s.io_clusterlogs.yaml",
    "PortForward": "kwok.x-k8s.io_portforwards.yaml",
    "ClusterPortForward": "kwok.x-k8s.io_clusterportforwards.yaml",
}


# --------------------------------------------------------------------------- kwok CRDs


def find_kwok_crd_dir() -> Path:
    """Find kwok's CRD manifests without touching the network.

    Order: GUILDNET_KWOK_CRD_DIR, `<testbin>/kwok-<v>/crd` (copied by build-testbin.sh), the
    Go module cache (`GOMODCACHE`/`GOPATH`/`~/go`), then `go mod download -json` with
    GOPROXY=off (module cache only).
    """
    kwok = versions()["kwok"]
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


# --------------------------------------------------------------------------- cluster


class TestCluster(ControlPlaneCluster):
    """etcd + kube-apiserver + controller-manager + scheduler + kwok, one kwok node.

    Use as a context manager or call `start()`/`stop()`. After `start()`, `kubeconfig_path`
    is an admin (system:masters) kubeconfig and `server` the API server URL.
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
        super().__init__(
            work_dir=work_dir,
            keep_work_dir=keep_work_dir,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
            work_prefix="guildnet-cluster-",
        )
        self._netns_request = netns
        self.netns = False
        self.node_name = NODE_NAME
        self.pod_cidr = POD_CIDR
        self.node_ip = "127.0.0.1"

    def _start(self, deadline: float) -> None:
        bins = find_binaries((*CONTROL_PLANE, "kwok"))
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

        pki, sa = self._start_control_plane(
            bins,
            deadline,
            advertise_ip=self.node_ip,
            service_cidr=SERVICE_CIDR,
            extra_cert_ips=(NETNS_NODE_IP,),
            apiserver_args=("--authorization-mode=RBAC",),
        )
        self._install_crds(crd_dir, deadline)
        self._create_node()
        self._start_controllers(bins, pki, sa, service_cidr=SERVICE_CIDR)
        self._start_kwok(bins["kwok"], pki)
        node = self.node_name
        self._wait(deadline, f"node {node} Ready", lambda: self._node_ready(node))
        self._wait(deadline, "ServiceAccount default/default", self._default_sa_exists)

    def _start_kwok(self, kwok: Path, pki: PKI) -> None:
        (kubelet_port,) = free_ports(self.node_ip, 1)
        kwok_serving = pki.issue(
            "kwok-kubelet",
            f"system:node:{self.node_name}",
            organizations=("system:nodes",),
            ips=tuple(dict.fromkeys((self.node_ip, "127.0.0.1"))),
            dns=("localhost", self.node_name),
            server=True,
        )
        kwok_home = self.work_dir / "kwok-home"
        kwok_home.mkdir(exist_ok=True)
        self._spawn(
            "kwok",
            [
                str(kwok),
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


# --------------------------------------------------------------------------- CLI


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
    with signals_raise():
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
