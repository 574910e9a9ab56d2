"""The RethinkDB manifests (pure): the shipped YAML matches them, and they are hardened."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from guildnet.rdb import deploy as D

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "storage"),
    [("etc/k8s/rethinkdb.yaml", "pvc"), ("etc/k8s/rethinkdb-emptydir.yaml", "emptyDir")],
)
def test_shipped_yaml_is_the_rendering(path: str, storage: str) -> None:
    text = (ROOT / path).read_text()
    assert text == D.render_yaml(D.manifests(namespace=None, storage=storage))
    assert list(yaml.safe_load_all(text)) == D.manifests(namespace=None, storage=storage)


def test_hardened_statefulset_and_a_driver_only_service() -> None:
    service, sts = D.manifests("db", "data", storage="pvc", size="5Gi", storage_class="fast")
    assert service["metadata"] == {
        "name": "db",
        "namespace": "data",
        "labels": service["metadata"]["labels"],
    }
    assert [p["port"] for p in service["spec"]["ports"]] == [28015]
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "rethinkdb:2.4.4"
    assert "--no-http-admin" in c["args"] and "all" in c["args"]
    assert c["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert c["readinessProbe"]["tcpSocket"]["port"] == "driver" and c["livenessProbe"]
    assert c["resources"]["limits"]["memory"] == "1Gi"
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    _, ephemeral = D.manifests(storage="emptyDir")
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    assert {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}} in ephemeral["spec"]["template"][
        "spec"
    ]["volumes"]
    assert D.object_url(sts) == "/apis/apps/v1/namespaces/data/statefulsets/db"


def test_the_image_entrypoint_stays_and_the_args_start_the_server() -> None:
    """No `command`: ours keeps tini as PID 1, upstream's image (no entrypoint) runs the args."""
    _, sts = D.manifests()
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in c
    assert c["args"][0] == "rethinkdb"
    assert c["args"][c["args"].index("--directory") + 1].startswith("/data/")
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    # fsGroup: a fresh volume (emptyDir or a PVC) is writable by uid 1000.
    assert sts["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 1000


def test_readiness_is_probed_often_and_liveness_waits() -> None:
    """A Service routes only to Ready pods: every (re)start waits for the readiness probe,
    so it runs every 2 s (a 10 s period cost ~10 s per restart on a real kubelet); liveness
    gives a slow start 30 s + 6 x 10 s before the kubelet restarts the server."""
    _, sts = D.manifests()
    c = sts["spec"]["template"]["spec"]["containers"][0]
    ready, live = c["readinessProbe"], c["livenessProbe"]
    assert ready["periodSeconds"] <= 2 and ready["initialDelaySeconds"] <= 1
    assert ready["timeoutSeconds"] <= ready["periodSeconds"]
    wait = live["initialDelaySeconds"] + live["periodSeconds"] * live["failureThreshold"]
    assert wait >= 60


@pytest.mark.parametrize(
    ("kw", "field"), [({"storage": "disk"}, "storage"), ({"size": "1 GB"}, "size")]
)
def test_bad_options_name_the_field(kw: dict[str, str], field: str) -> None:
    with pytest.raises(D.DeployError) as info:
        D.manifests(**kw)
    assert info.value.field == field
