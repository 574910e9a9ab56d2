"""Stop, start and restart: the Workspace patches, the manifests and the status they give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.operator import constants as C
from guildnet.operator.desired import OperatorConfig, desired_objects
from guildnet.operator.images import image_defaults
from guildnet.operator.spec import SpecError, parse_spec
from guildnet.operator.status import compute_status, stop_reason
from guildnet.proxy.pages import stopped_page, wants_html
from guildnet.workspaces.lifecycle import (
    changed_spec,
    keep_volume_patch,
    replace_spec_patch,
    restart_patch,
    stop_patch,
)
from tests.unit.test_operator_spec import valid_spec_dicts
from tests.unit.test_operator_status import RUNNING, conds, deployment, pod, ws

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
CFG = OperatorConfig(namespace="ns1")


def workspace(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": "ide", "namespace": "ns1", "uid": "u1", "generation": 2}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": spec}


# --- patches ------------------------------------------------------------------------------


def test_stop_and_start_patches() -> None:
    assert stop_patch(True) == {
        "metadata": {"annotations": {C.ANNOTATION_STOP_REASON: "UserRequested"}},
        "spec": {"stopped": True},
    }
    idle = stop_patch(True, C.STOP_IDLE, "no traffic\\nfor 30m", resource_version="42")
    assert idle["metadata"] == {
        "annotations": {C.ANNOTATION_STOP_REASON: "Idle: no traffic\\nfor 30m"},
        "resourceVersion": "42",
    }
    # Starting deletes both (null in a merge patch), so a started spec has no "stopped".
    assert stop_patch(False) == {
        "metadata": {"annotations": {C.ANNOTATION_STOP_REASON: None}},
        "spec": {"stopped": None},
    }
    for bad in ("", "idle", "Idle now", "Idle:x"):
        with pytest.raises(ValueError):
            stop_patch(True, bad)


def test_restart_patch_is_a_utc_timestamp() -> None:
    body = restart_patch(datetime(2025, 1, 1, 12, 0, 0, 123456))
    assert body == {
        "metadata": {"annotations": {C.ANNOTATION_RESTARTED_AT: "2025-01-01T12:00:00.123456Z"}}
    }


@given(st.sampled_from(["UserRequested", "Idle", "Maintenance"]), st.text(max_size=80))
def test_stop_reason_round_trips_through_the_annotation(reason: str, message: str) -> None:
    body = stop_patch(True, reason, message)
    annotations = body["metadata"]["annotations"]
    got_reason, got_message = stop_reason({"metadata": {"annotations": annotations}})
    assert got_reason == reason
    assert got_message == " ".join(message.split())


def test_stop_reason_defaults_and_free_text() -> None:
    assert stop_reason({}) == ("UserRequested", "")
    assert stop_reason(workspace({}, {C.ANNOTATION_STOP_REASON: "just text"})) == (
        "UserRequested",
        "just text",
    )


# --- manifests ----------------------------------------------------------------------------


@given(valid_spec_dicts())
@settings(max_examples=60, deadline=None)
def test_stopped_means_zero_replicas_and_keeps_every_other_object(spec: dict[str, Any]) -> None:
    spec = {**spec, "exposure": {"type": "ClusterIP"}}
    running = desired_objects(workspace({**spec, "stopped": False}), CFG, "pw")
    stopped = desired_objects(workspace({**spec, "stopped": True}), CFG, "pw")
    assert running.deployment["spec"]["replicas"] == 1
    assert stopped.deployment["spec"]["replicas"] == 0
    assert stopped.service == running.service and stopped.secret == running.secret
    # Only the replica count differs: starting again gives the very same pod template.
    assert stopped.deployment["spec"]["template"] == running.deployment["spec"]["template"]


def test_restart_annotation_rolls_the_pod_template() -> None:
    spec = {"image": "nginx:1.27"}
    plain = desired_objects(workspace(spec), CFG, None).deployment
    stamp = "2025-01-01T12:00:00.000000Z"
    rolled = desired_objects(
        workspace(spec, {C.ANNOTATION_RESTARTED_AT: stamp}), CFG, None
    ).deployment
    assert "annotations" not in plain["spec"]["template"]["metadata"]
    assert rolled["spec"]["template"]["metadata"]["annotations"] == {C.POD_RESTARTED_AT: stamp}
    assert (
        rolled["metadata"]["annotations"][C.ANNOTATION_DESIRED_HASH]
        != (plain["metadata"]["annotations"][C.ANNOTATION_DESIRED_HASH])
    )


# --- status -------------------------------------------------------------------------------


def stopped_ws(status: dict[str, Any] | None = None, reason: str | None = None) -> dict:
    obj = ws({"image": "codercom/code-server:4.139.1", "stopped": True}, gen=2, status=status)
    if reason is not None:
        obj["metadata"]["annotations"] = {C.ANNOTATION_STOP_REASON: reason}
    return obj


def test_stopping_then_stopped() -> None:
    dep = deployment(built_from=2, generation=2, observed=2, ready=0, updated=0)
    stopping = compute_status(stopped_ws(), dep, [pod(state=RUNNING, deleting=True)], [], T0)
    assert stopping["phase"] == "Stopped"
    assert stopping["message"].startswith("stopping: waiting for 1 pod(s)")
    later = T0 + timedelta(seconds=20)
    done = compute_status(stopped_ws(stopping), dep, [], [], later)
    assert done["phase"] == "Stopped" and "reason" not in done
    # Since when: the time the Stopped condition became True, kept across reconciles.
    assert (
        done["message"] == "stopped since 2025-01-01T12:00:00Z (UserRequested: stopped on request)"
    )
    c = conds(done)
    assert c["Stopped"]["status"] == "True" and c["Stopped"]["reason"] == "UserRequested"
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "Stopped"
    assert c["PodScheduled"]["status"] == "Unknown" and c["PodScheduled"]["reason"] == "Stopped"
    assert compute_status(stopped_ws(done), dep, [], [], later + timedelta(hours=3)) == done


def test_a_stopped_workspace_never_hits_the_progress_deadline() -> None:
    dep = deployment(built_from=2, generation=2, observed=2, ready=0, updated=0)
    first = compute_status(stopped_ws(), dep, [], [], T0)
    much_later = compute_status(stopped_ws(first), dep, [], [], T0 + timedelta(days=2))
    assert much_later["phase"] == "Stopped"


def test_idle_reason_and_message_from_the_annotation() -> None:
    dep = deployment(built_from=2, generation=2, observed=2)
    status = compute_status(stopped_ws(reason="Idle: no traffic for 30m"), dep, [], [], T0)
    stopped = conds(status)["Stopped"]
    assert (stopped["reason"], stopped["message"]) == ("Idle", "no traffic for 30m")
    assert status["message"].endswith("(Idle: no traffic for 30m)")


def test_started_again_has_no_stopped_condition() -> None:
    dep = deployment(built_from=3, generation=3, observed=3, ready=1)
    before = compute_status(stopped_ws(), dep, [], [], T0)
    obj = ws({"image": "codercom/code-server:4.139.1"}, gen=3, status=before)
    after = compute_status(obj, dep, [pod(state=RUNNING)], [], T0 + timedelta(seconds=5))
    assert after["phase"] == "Running" and "Stopped" not in conds(after)


# --- the proxy's page ---------------------------------------------------------------------


def test_stopped_page_escapes_and_posts_to_the_start_route() -> None:
    page = stopped_page("ide", "/api/servers/ide/start", "<b>stopped</b> & idle").decode()
    assert '<form method="post" action="/api/servers/ide/start">' in page
    assert "&lt;b&gt;stopped&lt;/b&gt; &amp; idle" in page and "<script" not in page
    assert wants_html(b"text/html,application/xhtml+xml")
    assert not wants_html(b"application/json") and not wants_html(None)


# --- the home volume ----------------------------------------------------------------------

KIND_HOMES = {
    "codercom/code-server:4.139.1": "/home/coder",
    "lscr.io/linuxserver/code-server:latest": "/config",
    "quay.io/jupyter/base-notebook:lab-4.6.6": "/home/jovyan",
    "jupyter/scipy-notebook": "/home/jovyan",
    "nginx:1.27": "/workspace",
    "mccutchen/go-httpbin:2.26.0": "/workspace",
}


def mounts(dep: dict[str, Any]) -> dict[str, str]:
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return {m["name"]: m["mountPath"] for m in container["volumeMounts"]}


@pytest.mark.parametrize(("image", "home"), sorted(KIND_HOMES.items()))
def test_home_volume_mounts_where_the_image_keeps_its_work(image: str, home: str) -> None:
    d = desired_objects(workspace({"image": image}), CFG, "pw")
    assert mounts(d.deployment) == {"tmp": "/tmp", "home": home}
    volumes = {v["name"]: v for v in d.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["home"] == {"name": "home", "persistentVolumeClaim": {"claimName": "ide-home"}}
    assert d.deployment["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 1000


@given(valid_spec_dicts(), st.sampled_from([None, "5Gi"]), st.sampled_from([None, "fast"]))
@settings(max_examples=80, deadline=None)
def test_one_owned_labelled_claim_unless_ephemeral(
    spec: dict[str, Any], size: str | None, storage_class: str | None
) -> None:
    spec = {**spec, "exposure": {"type": "ClusterIP"}}
    cfg = OperatorConfig(namespace="ns1", storage_size=size, storage_class=storage_class)
    d = desired_objects(workspace(spec), cfg, "pw")
    parsed = parse_spec(spec)
    storage = parsed.storage
    ephemeral = (storage is not None and storage.ephemeral) or (
        size is None and (storage is None or storage.size is None)
    )
    if ephemeral:
        assert d.volume is None and "home" not in mounts(d.deployment)
        return
    claim = d.volume
    assert claim is not None and claim in d.objects()
    # Applied before the Deployment whose pods mount it.
    assert d.objects().index(claim) < d.objects().index(d.deployment)
    meta = claim["metadata"]
    assert meta["name"] == "ide-home" and meta["namespace"] == "ns1"
    (owner,) = meta["ownerReferences"]
    assert owner["kind"] == "Workspace" and owner["uid"] == "u1" and owner["controller"] is True
    assert meta["labels"][C.LABEL_WORKSPACE] == "ide"
    assert meta["labels"][C.LABEL_MANAGED_BY] == C.MANAGED_BY
    want_size = (storage.size if storage else None) or size
    assert claim["spec"]["resources"]["requests"]["storage"] == want_size
    want_class = (storage.storage_class_name if storage else None) or storage_class
    assert claim["spec"].get("storageClassName") == want_class
    want_mount = (storage.mount_path if storage else None) or KIND_HOMES.get(
        parsed.image, image_defaults(parsed.image).home
    )
    assert mounts(d.deployment)["home"] == want_mount
    # Stopping keeps the claim exactly as it is.
    stopped = desired_objects(workspace({**spec, "stopped": True}), cfg, "pw")
    assert stopped.volume == claim


def test_volume_pending_is_a_named_wait_not_a_failure() -> None:
    dep = deployment(built_from=1, generation=1, observed=1)
    claim = {
        "metadata": {"name": "ide-home"},
        "spec": {"storageClassName": "absent"},
        "status": {"phase": "Pending"},
    }
    unsched = pod(node=None, scheduled={"type": "PodScheduled", "status": "False"})
    unsched["status"]["conditions"][0].update(
        reason="Unschedulable", message="pod has unbound immediate PersistentVolumeClaims"
    )
    status = compute_status(ws(), dep, [unsched], [], T0, volume=claim)
    assert status["phase"] == "Starting", status
    assert status["message"].startswith("VolumePending: waiting for PersistentVolumeClaim ide-home")
    assert "'absent'" in status["message"]
    # Bound now, the scheduler has not retried yet: scheduling, not Failed.
    bound = {**claim, "status": {"phase": "Bound"}}
    status = compute_status(ws(), dep, [unsched], [], T0, volume=bound)
    assert status["phase"] == "Starting" and conds(status)["PodScheduled"]["reason"] == "Scheduling"


def test_quota_and_limit_range_failures_name_themselves() -> None:
    quota = (
        'pods "chg-1" is forbidden: exceeded quota: team-cpu, requested: requests.cpu=4, '
        "used: requests.cpu=0, limited: requests.cpu=1"
    )
    limit = 'pods "chg-1" is forbidden: maximum cpu usage per Container is 1, but limit is 4'
    for message, reason in ((quota, "QuotaExceeded"), (limit, "LimitRangeExceeded")):
        failure = {
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": message,
        }
        dep = deployment(conditions=[failure])
        status = compute_status(ws(), dep, [], [], T0)
        assert status["phase"] == "Failed" and status["reason"] == reason
        assert message in status["message"]


# --- PATCH --------------------------------------------------------------------------------


def test_changed_spec_replaces_given_keys_and_refuses_fixed_ones() -> None:
    current = {"image": "a", "env": [{"name": "X", "value": "1"}], "storage": {"size": "1Gi"}}
    new = changed_spec(current, {"image": "b", "env": None, "args": ["-v"]})
    assert new == {"image": "b", "args": ["-v"], "storage": {"size": "1Gi"}}
    for key in ("storage", "stopped", "name", "colour"):
        with pytest.raises(SpecError) as e:
            changed_spec(current, {key: 1})
        assert e.value.field == key
    patch = replace_spec_patch(new, "77")
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "77"}
    assert patch[1] == {"op": "replace", "path": "/spec", "value": new}


def test_keep_volume_patch_drops_ownership() -> None:
    assert keep_volume_patch() == {
        "metadata": {"ownerReferences": None, "labels": {C.LABEL_KEPT: "true"}}
    }
