"""A real single-node Kubernetes for tests: real kubelet, containerd, runc, CNI, kube-proxy.

`RealNodeCluster` runs beside the kwok tier (`cluster.TestCluster`, kept for scale and simulated
failures) and shares its control plane code (`controlplane.py`). On top of etcd,
kube-apiserver (Node,RBAC authorization, NodeRestriction), kube-controller-manager and
kube-scheduler it runs:

* containerd (Debian's 1.6) with runc and CNI bridge networking (plugins in /usr/lib/cni),
  root, state, socket and runc root under the cluster's work directory;
* a real kubelet (cgroupfs driver, per-cluster `cgroupRoot` `/guildnet-<id>` so concurrent
  runs never share the `kubepods` cgroups), registering node `guildnet-node-0`;
* kube-proxy in iptables mode (Debian's `iptables` is the nf_tables backend, which kube-proxy's
  iptables mode drives through `iptables-restore`; nftables mode would also need the `nft` CLI,
  which Debian ships separately), so Service ClusterIPs work;
* optionally CoreDNS as a host process (see `dns`).

Images come from `make images` (docker-archive tars, `tests/harness/images.py`) and are imported
into containerd at start (`images=[...]`) or later (`ensure_images`).

Namespaces. containerd and kubelet need a private mount namespace (overlay mounts, pod netns
bind mounts): a holder process (`unshare --mount --propagation private ... sleep infinity`)
owns it, every node component starts under `nsenter` into it, and all mounts die with it.
Two network layouts:

* ``network="shared"`` (tests): the node uses the caller's network namespace, which must be
  the private one tests/harness/netns-run.sh creates. The pytest process (and a Host App in
  it) reaches pod IPs over `cni0` and ClusterIPs through kube-proxy's OUTPUT rules.
* ``network="veth"`` (`make dev-cluster`): the holder also gets its own network namespace,
  joined to the host by a veth pair; the host gets routes for the pod and Service CIDRs via
  the veth (198.19.0.0/16 addresses only), and kube-apiserver (on the namespace's 127.0.0.1)
  is forwarded to the host's 127.0.0.1.

Addresses: Services 198.19.0.0/20, pods 198.19.64.0/20, node 198.19.96.2 (in veth mode the
host end of the link is 198.19.96.1). The kwok tier uses 198.18.0.0/16 and 198.19.128.0/17.

Limits: kube-apiserver listens on 127.0.0.1 only, so pods cannot reach it (the `kubernetes`
Service has no endpoints); GuildNet's workspaces never need to. Images imported after start
(`ensure_images`) go through `ctr images import` (about a minute for code-server); images
named at construction come from a cached store cloned in seconds (see `store_cache_root`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.cluster import netns_prepared
from tests.harness.controlplane import (
    CONTROL_PLANE,
    ControlPlaneCluster,
    find_binaries,
    signals_raise,
)
from tests.harness.netns_forward import NetnsForwarder
from tests.harness.pki import kubeconfig
from tests.harness.processes import ClusterStartError, free_ports

SERVICE_CIDR = "198.19.0.0/20"
POD_CIDR = "198.19.64.0/20"
POD_GATEWAY = "198.19.64.1"
NODE_IP = "198.19.96.2"
HOST_LINK_IP = "198.19.96.1"
LINK_PREFIX = 30
DNS_SERVICE_IP = "198.19.0.10"
NODE_NAME = "guildnet-node-0"
BRIDGE = "cni0"
#: Port-less bridge (as a dummy device) in the cluster's network namespace: holds the Service
#: route (so locally generated packets to a ClusterIP find a route before kube-proxy's DNAT)
#: and, in shared mode, the node IP.
SERVICE_DEV = "gn-svc0"
HOST_VETH = "gn-host0"
NODE_VETH = "gn-node0"
PAUSE_IMAGE = "localhost/pause:3.10"
#: Paths containerd, CNI and kubelet write outside their configurable roots: each gets a
#: tmpfs inside the private mount namespace (the empty directories stay on the host).
PRIVATE_DIRS = ("/run/netns", "/var/lib/cni", "/var/log/containers")
NODE_BINARIES = (*CONTROL_PLANE, "kubelet", "kube-proxy")
HOST_TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
}
CNI_PLUGINS = ("bridge", "host-local", "loopback")
CNI_DIR = Path("/usr/lib/cni")
WORK_PREFIX = "gn-node-"


# --------------------------------------------------------------------------- prerequisites


def check_prerequisites() -> None:
    """Raise ClusterStartError naming the fix for the first missing prerequisite."""
    if os.geteuid() != 0:
        raise ClusterStartError(
            "the real-node test cluster needs root (namespaces, mounts, cgroups, iptables): "
            "run the tests as root"
        )
    filesystems = Path("/proc/filesystems").read_text()
    if "\toverlay\n" not in filesystems:
        subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
        if "\toverlay\n" not in Path("/proc/filesystems").read_text():
            raise ClusterStartError(
                "the kernel has no overlayfs (containerd's snapshotter needs it): "
                "`modprobe overlay` or use a kernel with CONFIG_OVERLAY_FS"
            )
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not all((CNI_DIR / p).is_file() for p in CNI_PLUGINS):
        missing.append("containernetworking-plugins")
    if missing:
        raise ClusterStartError(
            "missing host programs for the real-node cluster; install the Debian packages: "
            "apt-get install " + " ".join(sorted(set(missing)))
        )
    if (
        not Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").is_file()
    ):
        raise ClusterStartError("no cgroup hierarchy with the memory controller is mounted")


def image_archives(names: Iterable[str]) -> dict[str, Path]:
    """Archive path per image name (`make images`); ClusterStartError naming the fix."""
    try:
        images: Any = importlib.import_module("tests.harness.images")
    except ImportError as exc:
        raise ClusterStartError(f"tests.harness.images is unavailable ({exc})") from exc
    found: dict[str, Path] = {}
    for name in names:
        try:
            found[name] = Path(images.archive(name))
        except (FileNotFoundError, KeyError) as exc:
            raise ClusterStartError(f"{exc}").with_traceback(None) from None
    return found


#: containerd files written in place: copied, not linked, when a cached store is cloned.
STORE_DATABASES = (
    "io.containerd.metadata.v1.bolt/meta.db",
    "io.containerd.snapshotter.v1.overlayfs/metadata.db",
)


def store_cache_root() -> Path | None:
    """Where imported containerd stores are cached (GUILDNET_CONTAINERD_STORE_CACHE; `off`
    disables the cache)."""
    env = os.environ.get("GUILDNET_CONTAINERD_STORE_CACHE")
    if env == "off":
        return None
    return Path(env) if env else Path.home() / ".cache" / "guildnet" / "containerd-store"


def store_key(archives: dict[str, Path], containerd_version: str) -> str:
    """Cache key of an image set: containerd's version and each archive's name, size, mtime."""
    h = hashlib.sha256(containerd_version.encode())
    for name in sorted(archives):
        st = archives[name].stat()
        h.update(f"\0{name}\0{archives[name].name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def store_cache_dir(archives: dict[str, Path], work: Path) -> Path | None:
    """The cache directory for this image set, or None when hard links cannot reach `work`."""
    root = store_cache_root()
    if root is None:
        return None
    root.mkdir(parents=True, exist_ok=True)
    if root.stat().st_dev != work.stat().st_dev:
        return None  # another filesystem: links impossible, import instead
    version = _run(["containerd", "--version"]).strip()
    return root / store_key(archives, version)


def prune_store_caches(keep: Path, max_age: float = 600.0) -> None:
    """Remove other cached stores untouched for `max_age` seconds (image sets change rarely;
    a clone does not need its cache once made)."""
    for other in keep.parent.iterdir():
        with contextlib.suppress(OSError):
            if other != keep and time.time() - other.stat().st_mtime > max_age:
                shutil.rmtree(other, ignore_errors=True)


# --------------------------------------------------------------------------- pure config


def containerd_config(work: Path, socket: Path) -> str:
    """containerd 1.6 config (version 2): everything under `work`, the CRI settings that work here.

    `restrict_oom_score_adj`: root here lacks CAP_SYS_RESOURCE, and runc fails every sandbox
    (`can't get final child's PID from pipe`) when it tries to lower oom_score_adj.
    """
    return f"""version = 2
root = "{work}/root"
state = "{work}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "{work}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{work}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_DIR}"
    conf_dir = "{work}/cni"
    max_conf_num = 1
"""


def cni_conflist(ipam_dir: Path) -> dict[str, Any]:
    """Bridge network for pods; no masquerade (nothing leaves the namespace)."""
    return {
        "cniVersion": "0.4.0",
        "name": "guildnet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "loopback"},
        ],
    }


def kubelet_config(
    *,
    work: Path,
    socket: Path,
    cgroup_root: str,
    port: int,
    healthz_port: int,
    ca: Path,
    cert: Path,
    key: Path,
    cluster_dns: Sequence[str],
) -> dict[str, Any]:
    """KubeletConfiguration for this machine kind (cgroup v1, no swap handling, no eviction)."""
    endpoint = f"unix://{socket}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        "clusterDomain": "cluster.local",
        "clusterDNS": list(cluster_dns),
        "resolvConf": "",
        "enforceNodeAllocatable": [],
        "localStorageCapacityIsolation": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "podCIDR": POD_CIDR,
        "maxPods": 110,
        "podLogsDir": str(work / "pod-logs"),
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "kubeAPIQPS": 100,
        "kubeAPIBurst": 200,
        "eventRecordQPS": 100,
        "eventBurst": 200,
    }


def kube_proxy_config(
    kubeconfig_path: Path, healthz_port: int, metrics_port: int
) -> dict[str, Any]:
    """kube-proxy in iptables mode; touches no global sysctl (conntrack limits left alone)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig_path), "qps": 50, "burst": 100},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": ["primary"],
        "detectLocalMode": "ClusterCIDR",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
    }


def coredns_corefile(kubeconfig_path: Path, *, health_port: int, ready_port: int) -> str:
    """Cluster DNS for cluster.local only: no `forward` (nothing outside may be asked)."""
    return f"""cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig_path}
        pods insecure
    }}
    cache 5
}}
"""


def dns_service_objects() -> list[tuple[str, dict[str, Any]]]:
    """(API path, object) of the `kube-dns` Service at DNS_SERVICE_IP and its EndpointSlice
    pointing at CoreDNS on the node IP."""
    ports = [("dns", "UDP"), ("dns-tcp", "TCP")]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "clusterIP": DNS_SERVICE_IP,
            "ports": [{"name": n, "protocol": p, "port": 53, "targetPort": 53} for n, p in ports],
        },
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-node",
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "guildnet-test-harness",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
        "ports": [{"name": n, "protocol": p, "port": 53} for n, p in ports],
    }
    return [
        ("/api/v1/namespaces/kube-system/services", service),
        ("/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices", slice_),
    ]


def dns_query(server: str, name: str, timeout: float = 1.0) -> list[str]:
    """One A query over UDP to `server`:53; the answer's IPv4 addresses (minimal RFC 1035)."""
    qid = secrets.randbelow(65536)
    labels = name.rstrip(".").split(".")
    question = b"".join(bytes([len(p)]) + p.encode() for p in labels) + b"\0"
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, 53))
        data = sock.recv(4096)
    rid, flags, _qd, ancount, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if rid != qid or not flags & 0x8000:
        raise ValueError("not an answer to our query")
    pos = 12 + len(question) + 4
    addresses = []
    for _ in range(ancount):
        while data[pos] != 0 and data[pos] & 0xC0 != 0xC0:  # skip the owner name
            pos += data[pos] + 1
        pos += 2 if data[pos] & 0xC0 == 0xC0 else 1
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            addresses.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += rdlen
    return addresses


# --------------------------------------------------------------------------- host helpers


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 60.0) -> str:
    """Run a host command; on failure raise ClusterStartError with its output."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise ClusterStartError(
            f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
        )
    return proc.stdout


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _pids_mentioning(needle: str, also: str = "") -> list[int]:
    """Processes whose command line contains `needle` (a unique work-dir path) and `also`."""
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and also in cmdline:
            pids.append(int(entry.name))
    return pids


def _kill(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def cgroup_dirs(cgroup_root: str) -> list[Path]:
    """The cgroup root's directory in every mounted hierarchy (v1 controllers and unified)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype = post.split(" ", 1)[0]
        if fstype in ("cgroup", "cgroup2"):
            mount_point = Path(pre.split(" ")[4])
            found.append(mount_point / cgroup_root.lstrip("/"))
    return found


def _cgroup_tree(top: Path) -> list[Path]:
    """`top` and every cgroup below it, deepest first (cgroups vanish while we walk: fine)."""
    found = [Path(d) for d, _, _ in os.walk(top)]  # os.walk ignores vanished directories
    return sorted(found, key=lambda p: -len(p.parts))


def _cgroup_pids(cgroup_root: str) -> set[int]:
    pids: set[int] = set()
    for top in cgroup_dirs(cgroup_root):
        for d in _cgroup_tree(top):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
    return pids


def create_cgroup_root(cgroup_root: str) -> None:
    """kubelet insists its cgroupRoot exists; cpuset needs cpus/mems copied from the parent."""
    for top in cgroup_dirs(cgroup_root):
        top.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            parent = top.parent / name
            if parent.is_file() and (top / name).is_file():
                with contextlib.suppress(OSError):
                    (top / name).write_text(parent.read_text())


def remove_cgroup_root(cgroup_root: str, timeout: float = 10.0) -> list[Path]:
    """Kill what runs in the cgroup root and remove it (deepest first); returns what is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = _cgroup_pids(cgroup_root)
        _kill(pids)
        left = []
        for top in cgroup_dirs(cgroup_root):
            for d in _cgroup_tree(top):
                with contextlib.suppress(OSError):
                    d.rmdir()
            if top.exists():
                left.append(top)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def remove_kube_chains(iptables: str = "iptables") -> None:
    """Delete the kubelet's leftover KUBE-* chains (kube-proxy --cleanup leaves them) and
    the rules jumping to them, in every table of the current network namespace."""
    for table in ("filter", "nat", "mangle"):
        listing = subprocess.run(
            [iptables, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        chains = [ln.split()[1] for ln in listing if ln.startswith("-N KUBE-")]
        for rule in listing:
            parts = shlex.split(rule)
            jumps = any(p.startswith("KUBE-") for p in parts[2:])
            if parts[:1] == ["-A"] and jumps and not parts[1].startswith("KUBE-"):
                subprocess.run(
                    [iptables, "-w", "-t", table, "-D", *parts[1:]],
                    capture_output=True,
                    check=False,
                )
        for chain in chains:
            subprocess.run([iptables, "-w", "-t", table, "-F", chain], capture_output=True)
        for chain in chains:
            subprocess.run([iptables, "-w", "-t", table, "-X", chain], capture_output=True)


def _link_exists(name: str, netns_pid: int | None = None) -> bool:
    prefix = ["nsenter", f"--target={netns_pid}", "--net"] if netns_pid else []
    return (
        subprocess.run(
            [*prefix, "ip", "link", "show", name], capture_output=True, check=False
        ).returncode
        == 0
    )


def holder_marker(work: Path) -> str:
    """The holder process's argv[0] (names the cluster's work dir while it sleeps)."""
    # Ends in the ready file's path, which earlier versions of reap_stale() looked for.
    return f"guildnet-realnode-holder:{work}/holder.ready"


def cluster_alive(work: Path) -> bool:
    """Whether a process of the cluster in `work` other than a containerd shim runs.

    Every component's command line names the work dir, and all but the shims (which
    containerd detaches) die with the process that started the cluster.
    """
    return any(b"containerd-shim" not in _cmdline(pid) for pid in _pids_mentioning(f"{work}/"))


def reap_stale(tmp: Path | None = None, mine: Path | None = None) -> list[str]:
    """Remove what crashed real-node clusters left: their processes, cgroups, work dirs.

    A cluster's work dir is `<tmp>/gn-node-<id>`, its cgroup root `/guildnet-<id>`; it is
    alive while `cluster_alive()` says so, or starting while its work dir is under a minute old
    (except `mine`, the caller's own fixed work dir, e.g. the dev cluster's).
    """
    tmp = tmp or Path(tempfile.gettempdir())
    removed = []
    roots: set[str] = set()
    for top in cgroup_dirs("/"):
        if top.is_dir():
            roots.update(p.name for p in top.glob("guildnet-*") if p.is_dir())
    for work in tmp.glob(f"{WORK_PREFIX}*"):
        roots.add("guildnet-" + work.name.removeprefix(WORK_PREFIX))
    for root in sorted(roots):
        ident = root.removeprefix("guildnet-")
        work = tmp / f"{WORK_PREFIX}{ident}"
        with contextlib.suppress(OSError):
            if work != mine and time.time() - work.stat().st_mtime < 60:
                continue  # just created: starting
        if cluster_alive(work):
            continue
        _kill(_pids_mentioning(f"{work}/"))
        remove_cgroup_root(f"/{root}", timeout=5.0)
        shutil.rmtree(work, ignore_errors=True)
        removed.append(root)
    return removed


# --------------------------------------------------------------------------- cluster


class _Worker(threading.Thread):
    """Runs one start-up step in the background; keeps its error and finishing time."""

    def __init__(self, cluster: RealNodeCluster, fn: Callable[[], object]) -> None:
        super().__init__(name="realnode-start-worker", daemon=True)
        self.cluster = cluster
        self.fn = fn
        self.error: Exception | None = None
        self.finished = 0.0

    def run(self) -> None:
        try:
            self.fn()
        except Exception as exc:
            self.error = exc
        self.finished = self.cluster._mark()


@dataclass
class Timings:
    """Seconds from `start()` to each milestone (printed by the fixture and dev-cluster)."""

    containerd: float = 0.0
    images: float = 0.0
    apiserver: float = 0.0
    node_ready: float = 0.0
    dns: float = 0.0
    total: float = 0.0

    def line(self) -> str:
        return (
            f"containerd {self.containerd:.1f}s, images {self.images:.1f}s, "
            f"apiserver {self.apiserver:.1f}s, kubelet node Ready {self.node_ready:.1f}s, "
            f"CoreDNS {self.dns:.1f}s, total {self.total:.1f}s"
        )


class RealNodeCluster(ControlPlaneCluster):
    """Control plane + one real node (containerd, kubelet, kube-proxy), optionally CoreDNS.

    After `start()`: `kubeconfig_path` (admin), `server`, `node_name`, `node_ip`,
    `pod_cidr`, `service_cidr`, `timings`. `ensure_images(names)` imports more images later.
    """

    __test__ = False

    def __init__(
        self,
        *,
        images: Sequence[str] = ("pause",),
        network: str = "shared",
        dns: bool = True,
        ident: str | None = None,
        start_timeout: float = 180.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Configure (nothing starts until `start()`).

        images: names from tests/harness/images.py to import (pause is always added).
        network: "shared" (the caller's namespace, which must be netns-run.sh's) or "veth".
        dns: run CoreDNS (needs the `coredns` test binary) and point kubelet's clusterDNS at it.
        ident: cluster id (cgroup root `/guildnet-<id>`, work dir `/tmp/gn-node-<id>`).
        """
        if network not in ("shared", "veth"):
            raise ValueError(f"network must be 'shared' or 'veth', not {network!r}")
        self.ident = ident or secrets.token_hex(4)
        work = Path(tempfile.gettempdir()) / f"{WORK_PREFIX}{self.ident}"
        super().__init__(
            work_dir=work,
            keep_work_dir=False,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
            work_prefix=WORK_PREFIX,
        )
        self._own_work_dir = True
        self.images = list(dict.fromkeys(("pause", *images)))
        self.network = network
        self.dns = dns
        self.node_name = NODE_NAME
        self.node_ip = NODE_IP
        self.pod_cidr = POD_CIDR
        self.service_cidr = SERVICE_CIDR
        self.dns_service_ip = DNS_SERVICE_IP
        self.cgroup_root = f"/guildnet-{self.ident}"
        self.containerd_socket = self.work_dir / "containerd" / "containerd.sock"
        self.timings = Timings()
        self.host_changes: list[str] = []
        self.imported: set[str] = set()
        self._holder_pid = 0
        self._created = False
        self._forwarder: NetnsForwarder | None = None
        self._t0 = 0.0

    # ---- lifecycle

    def _mark(self) -> float:
        return time.monotonic() - self._t0

    def _start(self, deadline: float) -> None:
        self._t0 = time.monotonic()
        check_prerequisites()
        names = list(NODE_BINARIES) + (["coredns"] if self.dns else [])
        bins = find_binaries(names)
        archives = image_archives(self.images)
        if self.network == "shared" and not netns_prepared():
            raise ClusterStartError(
                "network='shared' puts the node's bridge and iptables rules into the current "
                "network namespace, which must be the private one made by "
                "tests/harness/netns-run.sh (198.18.0.1 is not local here)"
            )
        reap_stale(mine=self.work_dir)
        try:
            self.work_dir.mkdir()
        except FileExistsError:
            raise ClusterStartError(
                f"work dir {self.work_dir} exists: cluster id {self.ident!r} is in use"
            ) from None
        self._created = True  # from here on, stop() owns the work dir and cgroup root
        if self.network == "veth":
            self._remove_host_link()
        self.log_dir.mkdir()

        self._start_holder(deadline)
        self._setup_network()
        ns = self._ns_prefix(mount=True)
        cp_prefix = self._ns_prefix(mount=False)

        # containerd's store: a hard-linked clone of a cached, already imported store when
        # possible (seconds instead of a minute for code-server), prepared while the control
        # plane starts; else containerd starts first and imports in the background.
        ctd = self.work_dir / "containerd"
        (ctd / "cni").mkdir(parents=True)
        (ctd / "config.toml").write_text(containerd_config(ctd, self.containerd_socket))
        (ctd / "cni" / "10-guildnet.conflist").write_text(
            json.dumps(cni_conflist(self.work_dir / "cni-ipam"), indent=2)
        )
        cache = store_cache_dir(archives, self.work_dir)
        if cache is not None:
            worker: _Worker = _Worker(self, lambda: self._clone_store(cache, archives, ctd))
        else:
            self._start_containerd(deadline)
            worker = _Worker(self, lambda: self._import(archives))
        worker.start()

        api_port = None
        if self.network == "veth":
            (api_port,) = free_ports("127.0.0.1", 1)
            self._forwarder = NetnsForwarder(self._holder_pid, "127.0.0.1", api_port)
            self._forwarder.start()
        pki, sa = self._start_control_plane(
            bins,
            deadline,
            advertise_ip=NODE_IP,
            service_cidr=SERVICE_CIDR,
            apiserver_args=(
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
            ),
            prefix=cp_prefix,
            api_port=api_port,
        )
        self.timings.apiserver = self._mark()
        self._start_controllers(bins, pki, sa, service_cidr=SERVICE_CIDR, prefix=cp_prefix)

        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            raise TimeoutError("timed out preparing containerd's images")
        if worker.error is not None:
            raise worker.error
        self.timings.images = worker.finished
        if cache is not None:
            self._start_containerd(deadline)
            self.imported.update(archives)

        # kubelet: its own identity (Node authorizer), serving cert for the node IP.
        kdir = self.work_dir / "kubelet"
        kdir.mkdir()
        serving = pki.issue("kubelet-serving", NODE_NAME, ips=(NODE_IP,), server=True)
        client = pki.issue(
            "kubelet-client",
            f"system:node:{NODE_NAME}",
            organizations=("system:nodes",),
            client=True,
        )
        kubelet_kubeconfig = kdir / "kubeconfig"
        kubelet_kubeconfig.write_text(kubeconfig(self.server, pki.ca_cert, client, "kubelet"))
        kubelet_port, healthz_port, proxy_healthz, proxy_metrics = free_ports("127.0.0.1", 4)
        create_cgroup_root(self.cgroup_root)
        self.host_changes.append(f"cgroup {self.cgroup_root} in every hierarchy")
        config = kubelet_config(
            work=self.work_dir,
            socket=self.containerd_socket,
            cgroup_root=self.cgroup_root,
            port=kubelet_port,
            healthz_port=healthz_port,
            ca=pki.ca_cert,
            cert=serving.cert,
            key=serving.key,
            cluster_dns=[DNS_SERVICE_IP] if self.dns else [],
        )
        (kdir / "config.json").write_text(json.dumps(config, indent=2))
        self._spawn(
            "kubelet",
            [
                *ns,
                str(bins["kubelet"]),
                f"--config={kdir / 'config.json'}",
                f"--kubeconfig={kubelet_kubeconfig}",
                f"--root-dir={kdir / 'root'}",
                f"--cert-dir={kdir / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )
        proxy_cfg = self.work_dir / "kube-proxy.json"
        proxy_cfg.write_text(
            json.dumps(kube_proxy_config(self.kubeconfig_path, proxy_healthz, proxy_metrics))
        )
        self._spawn("kube-proxy", [*cp_prefix, str(bins["kube-proxy"]), f"--config={proxy_cfg}"])
        self._wait(deadline, f"node {NODE_NAME} Ready", lambda: self._node_ready(NODE_NAME))
        self.timings.node_ready = self._mark()
        if self.dns:
            self._start_coredns(bins["coredns"], deadline)
            self.timings.dns = self._mark()
        self._wait(deadline, "ServiceAccount default/default", self._default_sa_exists)
        self.timings.total = self._mark()

    def stop(self) -> None:
        """Tear everything down: pods, kubelet, containers, containerd, control plane, holder,
        then the host changes, cgroups and work dir. Safe to call after a partial start."""
        if not self._created:
            return
        errors: list[BaseException] = []

        def step(fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as exc:  # keep tearing down; report the first failure at the end
                errors.append(exc)

        step(lambda: self._procs.stop(["kubelet"], self.stop_timeout))
        # Kill every pod process at once (faster than deleting pods one by one).
        step(lambda: remove_cgroup_root(self.cgroup_root, timeout=0.5))
        step(lambda: self._procs.stop(["containerd", "coredns"], self.stop_timeout))
        # Shims outlive containerd by design: they mention the work dir (socket, runc root).
        step(lambda: _kill(_pids_mentioning(f"{self.work_dir}/", "containerd-shim")))
        step(lambda: self._procs.stop(["kube-proxy"], self.stop_timeout))
        step(lambda: self._stop_processes(keep=["holder"]))
        if self._forwarder is not None:
            step(self._forwarder.stop)
            self._forwarder = None
        if self.network == "shared" and self._holder_pid:
            step(self._clean_shared_netns)
        step(lambda: self._procs.stop(["holder"], self.stop_timeout))
        self._holder_pid = 0
        if self.network == "veth":
            step(self._remove_host_link)
        left = remove_cgroup_root(self.cgroup_root)
        if left:
            errors.append(RuntimeError(f"cgroups left: {left}"))
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self._created = False
        if errors:
            raise errors[0]

    # ---- images

    def ensure_images(self, names: Iterable[str]) -> None:
        """Import images (tests/harness/images.py names) that are not imported yet."""
        wanted = [n for n in names if n not in self.imported]
        if wanted:
            self._import(image_archives(wanted))

    def _import(self, archives: dict[str, Path], socket: Path | None = None) -> None:
        for name, path in archives.items():
            if socket is None and name in self.imported:
                continue
            _run(
                [
                    *self._ns_prefix(mount=True),
                    "ctr",
                    f"--address={socket or self.containerd_socket}",
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    "--no-unpack=false",
                    str(path),
                ],
                timeout=600.0,
            )
            if socket is None:
                self.imported.add(name)

    def _start_containerd(self, deadline: float) -> None:
        ctd = self.work_dir / "containerd"
        ns = self._ns_prefix(mount=True)
        self._spawn("containerd", [*ns, "containerd", f"--config={ctd / 'config.toml'}"])
        self._wait(deadline, "containerd socket", self._containerd_up)
        self.timings.containerd = self._mark()

    def _clone_store(self, cache: Path, archives: dict[str, Path], ctd: Path) -> None:
        """Hard-link the cached store into `ctd/root` (building the cache first if needed).

        Blobs and unpacked layers are never written in place (layers are overlay lower
        directories), so links are safe; the two bolt databases are copied.
        """
        if not (cache / "root").is_dir():
            self._build_store(cache, archives)
        os.utime(cache)  # in use: keeps prune_store_caches() away
        _run(["cp", "-al", str(cache / "root"), str(ctd / "root")], timeout=300.0)
        for db in STORE_DATABASES:
            target = ctd / "root" / db
            if target.exists():
                shutil.copyfile(cache / "root" / db, target.with_suffix(".copy"))
                target.with_suffix(".copy").replace(target)  # a new inode, not the cache's

    def _build_store(self, cache: Path, archives: dict[str, Path]) -> None:
        """Import the archives with a throw-away containerd whose root becomes the cache."""
        tmp = cache.parent / f".build-{self.ident}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        sock = self.work_dir / "store-build.sock"
        (tmp / "config.toml").write_text(containerd_config(tmp, sock))
        ns = self._ns_prefix(mount=True)
        name = "containerd-store-build"
        self._procs.spawn(name, [*ns, "containerd", f"--config={tmp / 'config.toml'}"])
        try:
            deadline = time.monotonic() + 60.0
            self._procs.wait(deadline, "store-build containerd", lambda: self._ctr_ok(sock))
            self._import(archives, socket=sock)
        finally:
            self._procs.stop([name], self.stop_timeout)
        for leftover in ("state", "opt", "runc", "cni", "config.toml"):
            path = tmp / leftover
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        try:
            tmp.rename(cache)
        except OSError:  # another run built it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        prune_store_caches(keep=cache)

    # ---- namespaces and network

    def _ns_prefix(self, *, mount: bool) -> list[str]:
        """nsenter into the holder's mount namespace (node components) and, in veth mode,
        its network namespace (every component)."""
        args = []
        if mount:
            args.append("--mount")
        if self.network == "veth":
            args.append("--net")
        if not args:
            return []
        return ["nsenter", f"--target={self._holder_pid}", *args, "--"]

    def _start_holder(self, deadline: float) -> None:
        for d in PRIVATE_DIRS:
            Path(d).mkdir(parents=True, exist_ok=True)
        ready = self.work_dir / "holder.ready"
        script = "set -e; " + "".join(
            f"mount -t tmpfs -o mode=0755 tmpfs {d}; " for d in PRIVATE_DIRS
        )
        if self.network == "veth":
            script += "ip link set lo up; "
        # The holder's command line must keep naming the work dir (reap_stale() tells live
        # clusters from dead ones by it), so `exec -a` renames the sleep it becomes.
        script += f"touch {ready}; exec -a {holder_marker(self.work_dir)} sleep infinity"
        argv = ["unshare", "--mount", "--propagation", "private"]
        if self.network == "veth":
            argv.append("--net")
        proc = self._procs.spawn("holder", [*argv, "--", "bash", "-c", script])
        self._wait(deadline, "namespace holder", ready.exists)
        self._holder_pid = proc.popen.pid

    def _in_cluster_net(self, *argv: str) -> None:
        prefix = ["nsenter", f"--target={self._holder_pid}", "--net", "--"]
        _run([*(prefix if self.network == "veth" else []), *argv])

    def _setup_network(self) -> None:
        net = self._in_cluster_net
        # A port-less bridge: this kernel has no dummy devices, and a bridge without ports
        # drops what it is given just the same.
        net("ip", "link", "add", SERVICE_DEV, "type", "bridge")
        net("ip", "link", "set", SERVICE_DEV, "up")
        net("ip", "route", "add", SERVICE_CIDR, "dev", SERVICE_DEV)
        if self.network == "shared":
            net("ip", "addr", "add", f"{NODE_IP}/32", "dev", SERVICE_DEV)
        else:
            pid = str(self._holder_pid)
            _run(["ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", NODE_VETH])
            self.host_changes.append(f"veth {HOST_VETH} (peer {NODE_VETH} in the node namespace)")
            _run(["ip", "link", "set", NODE_VETH, "netns", pid])
            _run(["ip", "addr", "add", f"{HOST_LINK_IP}/{LINK_PREFIX}", "dev", HOST_VETH])
            _run(["ip", "link", "set", HOST_VETH, "up"])
            self.host_changes.append(f"address {HOST_LINK_IP}/{LINK_PREFIX} on {HOST_VETH}")
            for cidr in (SERVICE_CIDR, POD_CIDR):
                _run(["ip", "route", "add", cidr, "via", NODE_IP, "dev", HOST_VETH])
                self.host_changes.append(f"route {cidr} via {NODE_IP} dev {HOST_VETH}")
            net("ip", "addr", "add", f"{NODE_IP}/{LINK_PREFIX}", "dev", NODE_VETH)
            net("ip", "link", "set", NODE_VETH, "up")
        net("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        net(
            "sh",
            "-c",
            "f=/proc/sys/net/bridge/bridge-nf-call-iptables; [ ! -e $f ] || echo 1 > $f",
        )

    def _remove_host_link(self) -> None:
        """Delete the host end of the veth (its routes and the peer go with it); idempotent."""
        if _link_exists(HOST_VETH):
            _run(["ip", "link", "del", HOST_VETH], check=False)

    def _clean_shared_netns(self) -> None:
        """Undo what the node did to the shared namespace: kube-proxy's rules, cni0, gn-svc0."""
        with contextlib.suppress(ClusterStartError):
            kube_proxy = find_binaries(["kube-proxy"])["kube-proxy"]
            subprocess.run(
                [str(kube_proxy), "--cleanup"], capture_output=True, timeout=60, check=False
            )
        for dev in (BRIDGE, SERVICE_DEV):
            if _link_exists(dev):
                _run(["ip", "link", "del", dev], check=False)
        for cmd in ("iptables", "ip6tables"):
            remove_kube_chains(cmd)

    # ---- components

    def _containerd_up(self) -> bool:
        return self._ctr_ok(self.containerd_socket)

    def _ctr_ok(self, socket: Path) -> bool:
        if not socket.exists():
            return False
        proc = subprocess.run(
            [*self._ns_prefix(mount=True), "ctr", f"--address={socket}", "version"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return proc.returncode == 0

    def _start_coredns(self, coredns: Path, deadline: float) -> None:
        """CoreDNS as a process in the cluster's network namespace, on NODE_IP:53, behind the
        `kube-system/kube-dns` Service (selector-less: its EndpointSlice names the node IP)."""
        (health_port, ready_port) = free_ports("127.0.0.1", 2)
        corefile = self.work_dir / "Corefile"
        corefile.write_text(
            coredns_corefile(self.kubeconfig_path, health_port=health_port, ready_port=ready_port)
        )
        self._spawn(
            "coredns",
            [*self._ns_prefix(mount=False), str(coredns), "-conf", str(corefile)],
        )
        for path, obj in dns_service_objects():
            self._create(path, obj)
        name = "kubernetes.default.svc.cluster.local"
        self._wait(deadline, "CoreDNS answering", lambda: bool(dns_query(NODE_IP, name)))


# --------------------------------------------------------------------------- CLI (make dev-cluster)

DEV_IDENT = "dev"


def _all_image_names() -> list[str]:
    images: Any = importlib.import_module("tests.harness.images")
    return list(images.IMAGES)


def main(argv: list[str] | None = None) -> int:
    """Run the real-node dev cluster in the foreground until Ctrl-C/SIGTERM.

    The node gets its own network namespace joined to the host by a veth pair, so `make run`
    in another terminal reaches pod IPs and ClusterIPs; kube-apiserver is on the host's
    127.0.0.1. Everything it changes on the host is printed, and removed on exit (or, after
    a crash, by the next start).
    """
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.realnode", description=(main.__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--kubeconfig", required=True, help="where to write the admin kubeconfig")
    parser.add_argument(
        "--images",
        default="all",
        help="comma-separated image names from tests/harness/images.py, or 'all' (default)",
    )
    parser.add_argument("--no-dns", action="store_true", help="run without CoreDNS")
    args = parser.parse_args(argv)

    with signals_raise():
        try:
            names = _all_image_names() if args.images == "all" else args.images.split(",")
            work = Path(tempfile.gettempdir()) / f"{WORK_PREFIX}{DEV_IDENT}"
            if cluster_alive(work):
                raise ClusterStartError(f"a dev cluster is already running (work dir {work})")
            cluster = RealNodeCluster(
                images=names, network="veth", dns=not args.no_dns, ident=DEV_IDENT
            )
        except ClusterStartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            cluster.start()
            target = Path(args.kubeconfig).expanduser()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.kubeconfig_path, target)
            target.chmod(0o600)
            print(
                f"guildnet real-node dev cluster ready in {cluster.startup_seconds:.1f}s "
                f"({cluster.timings.line()})\n"
                f"  server={cluster.server} kubeconfig={target} logs={cluster.log_dir}\n"
                f"  images: {', '.join(sorted(cluster.imported))}\n"
                f"  pods {POD_CIDR} and Services {SERVICE_CIDR} are routed from this host; "
                f"cluster DNS {DNS_SERVICE_IP if cluster.dns else '(off)'}\n"
                "  changed on the host (removed on exit):\n    "
                + "\n    ".join(cluster.host_changes)
                + "\n  Ctrl-C to stop",
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
            print("stopping the dev cluster ...", flush=True)
            cluster.stop()
            print("stopped; host changes removed", flush=True)


if __name__ == "__main__":
    sys.exit(main())
