"""The real-node tier's pure configuration: address plan, containerd, CNI, kubelet, kube-proxy."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

from tests.harness import cluster, realnode

WORK = Path("/tmp/gn-node-abc")


def test_address_plan_is_disjoint_and_inside_198_19() -> None:
    """Routed ranges stay in 198.19.0.0/16 (never 198.18/16, which netns-run.sh makes local,
    nor the kwok tier's unrouted Service range)."""
    mine = [
        ipaddress.IPv4Network(c, strict=False)
        for c in (realnode.SERVICE_CIDR, realnode.POD_CIDR, f"{realnode.NODE_IP}/30")
    ]
    allowed = ipaddress.IPv4Network("198.19.0.0/16")
    others = [
        ipaddress.ip_network(cluster.NETNS_LOCAL_CIDR),
        ipaddress.ip_network(cluster.SERVICE_CIDR),
        ipaddress.ip_network(cluster.POD_CIDR),
    ]
    for i, net in enumerate(mine):
        assert net.subnet_of(allowed)
        assert not any(net.overlaps(o) for o in others)
        assert not any(net.overlaps(m) for m in mine[i + 1 :])
    assert ipaddress.ip_address(realnode.DNS_SERVICE_IP) in mine[0]
    assert ipaddress.ip_address(realnode.HOST_LINK_IP) in mine[2]
    assert ipaddress.ip_address(realnode.POD_GATEWAY) in mine[1]


def test_containerd_config_keeps_everything_under_the_work_dir() -> None:
    conf = tomllib.loads(realnode.containerd_config(WORK, WORK / "c.sock"))
    assert conf["root"].startswith(str(WORK)) and conf["state"].startswith(str(WORK))
    assert conf["grpc"]["address"] == str(WORK / "c.sock")
    cri = conf["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # the one blocker on these machines
    assert cri["sandbox_image"] == realnode.PAUSE_IMAGE
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False and runc["Root"].startswith(str(WORK))
    assert cri["cni"]["conf_dir"].startswith(str(WORK))


def test_cni_bridge_uses_the_pod_cidr_without_masquerade() -> None:
    bridge = realnode.cni_conflist(WORK / "ipam")["plugins"][0]
    assert bridge["bridge"] == realnode.BRIDGE and bridge["ipMasq"] is False
    (rng,) = bridge["ipam"]["ranges"][0]
    assert rng == {"subnet": realnode.POD_CIDR, "gateway": realnode.POD_GATEWAY}
    assert bridge["ipam"]["dataDir"] == str(WORK / "ipam")


def test_kubelet_config_isolates_cgroups_and_listens_on_the_node_ip() -> None:
    conf = realnode.kubelet_config(
        work=WORK,
        socket=WORK / "c.sock",
        cgroup_root="/guildnet-abc",
        port=10250,
        healthz_port=10248,
        ca=WORK / "ca.crt",
        cert=WORK / "k.crt",
        key=WORK / "k.key",
        cluster_dns=[realnode.DNS_SERVICE_IP],
    )
    assert conf["cgroupRoot"] == "/guildnet-abc" and conf["cgroupDriver"] == "cgroupfs"
    assert conf["address"] == realnode.NODE_IP and conf["readOnlyPort"] == 0
    assert conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["authorization"]["mode"] == "Webhook"
    assert conf["containerRuntimeEndpoint"] == f"unix://{WORK / 'c.sock'}"
    assert conf["clusterDNS"] == [realnode.DNS_SERVICE_IP]
    assert conf["podLogsDir"].startswith(str(WORK))


def test_kube_proxy_touches_no_global_conntrack_setting() -> None:
    conf = realnode.kube_proxy_config(WORK / "kubeconfig", 1, 2)
    assert conf["mode"] == "iptables" and conf["clusterCIDR"] == realnode.POD_CIDR
    assert conf["conntrack"]["maxPerCore"] == 0
    assert conf["healthzBindAddress"].startswith("127.0.0.1:")


def test_dns_objects_point_the_service_at_the_node() -> None:
    (svc_path, svc), (_, slice_) = realnode.dns_service_objects()
    assert svc_path.endswith("/namespaces/kube-system/services")
    assert svc["spec"]["clusterIP"] == realnode.DNS_SERVICE_IP and "selector" not in svc["spec"]
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    assert slice_["endpoints"][0]["addresses"] == [realnode.NODE_IP]
    corefile = realnode.coredns_corefile(WORK / "kc", health_port=1, ready_port=2)
    assert f"bind {realnode.NODE_IP}" in corefile and "forward" not in corefile
