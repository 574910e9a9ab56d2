"""compute_status: table-driven pod/Deployment fixtures, deadlines and idempotence."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from guildnet.operator.constants import ANNOTATION_GENERATION
from guildnet.operator.status import CONDITION_TYPES, compute_status

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=30)


def ws(
    spec: dict[str, Any] | None = None,
    *,
    gen: int = 1,
    status: dict[str, Any] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "ide", "namespace": "ns1", "uid": "u1", "generation": gen}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T12:05:00Z"
    out: dict[str, Any] = {
        "metadata": meta,
        "spec": spec if spec is not None else {"image": "codercom/code-server:4.139.1"},
    }
    if status is not None:
        out["status"] = status
    return out


def deployment(
    *,
    built_from: int | None = 1,
    generation: int = 1,
    observed: int = 1,
    ready: int = 0,
    updated: int = 1,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "ide", "namespace": "ns1", "generation": generation}
    if built_from is not None:
        meta["annotations"] = {ANNOTATION_GENERATION: str(built_from)}
    return {
        "metadata": meta,
        "status": {
            "observedGeneration": observed,
            "replicas": 1,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "conditions": conditions or [],
        },
    }


def pod(
    *,
    name: str = "ide-abc-1",
    created: str = "2025-01-01T12:00:01Z",
    node: str | None = "kwok-node-0",
    scheduled: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    deleting: bool = False,
    image_id: str = "",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T12:00:05Z"
    conds = [scheduled or {"type": "PodScheduled", "status": "True" if node else "False"}]
    status: dict[str, Any] = {"conditions": conds}
    if state is not None:
        cs: dict[str, Any] = {
            "name": "workspace",
            "image": "codercom/code-server:4.139.1",
            "imageID": image_id,
            "state": state,
            "ready": "running" in state,
            "restartCount": 3 if last else 0,
        }
        if last:
            cs["lastState"] = {"terminated": last}
        status["containerStatuses"] = [cs]
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": status}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


RUNNING = {"running": {"startedAt": "2025-01-01T12:00:03Z"}}
UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/1 nodes are available: 1 Insufficient cpu.",
}


def event(pod_name: str, reason: str, message: str, *, new_api: bool = False) -> dict[str, Any]:
    about = {"kind": "Pod", "name": pod_name, "uid": f"uid-{pod_name}"}
    if new_api:
        return {"regarding": about, "reason": reason, "note": message, "eventTime": "t"}
    return {"involvedObject": about, "reason": reason, "message": message, "lastTimestamp": "t"}


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


# (id, workspace, deployment, pods, events, phase, reason-or-None, the condition that says why)
CASES: list[tuple[str, dict, dict | None, list, list, str, str | None, str]] = [
    ("pending", ws(), None, [], [], "Pending", None, "Deployed"),
    ("no-pod", ws(), deployment(), [], [], "Starting", None, "PodScheduled"),
    (
        "scheduling",
        ws(),
        deployment(),
        [pod(node=None, scheduled={"type": "PodScheduled", "status": "False"})],
        [],
        "Starting",
        None,
        "PodScheduled",
    ),
    (
        "creating",
        ws(),
        deployment(),
        [pod(state=waiting("ContainerCreating"))],
        [],
        "Starting",
        None,
        "ImagePulled",
    ),
    (
        "started-not-ready",
        ws(),
        deployment(),
        [pod(state=RUNNING)],
        [],
        "Starting",
        None,
        "Ready",
    ),
    ("running", ws(), deployment(ready=1), [pod(state=RUNNING)], [], "Running", None, "Ready"),
    (
        "ready-but-old-template",
        ws(gen=2),
        deployment(ready=1, built_from=1),
        [pod(state=RUNNING)],
        [],
        "Starting",
        None,
        "Ready",
    ),
    (
        "ready-but-not-observed",
        ws(),
        deployment(ready=1, generation=2, observed=1),
        [pod(state=RUNNING)],
        [],
        "Starting",
        None,
        "Ready",
    ),
    (
        "image-pull-backoff",
        ws(),
        deployment(),
        [pod(state=waiting("ImagePullBackOff", 'Back-off pulling image "nope"'))],
        [],
        "Failed",
        "ImagePullBackOff",
        "ImagePulled",
    ),
    (
        "err-image-pull",
        ws(),
        deployment(),
        [pod(state=waiting("ErrImagePull", "manifest unknown"))],
        [],
        "Failed",
        "ErrImagePull",
        "ImagePulled",
    ),
    (
        "invalid-image-name",
        ws(),
        deployment(),
        [pod(state=waiting("InvalidImageName", "couldn't parse image"))],
        [],
        "Failed",
        "InvalidImageName",
        "ImagePulled",
    ),
    (
        "crash-loop",
        ws(),
        deployment(),
        [
            pod(
                state=waiting("CrashLoopBackOff", "back-off 40s restarting failed container"),
                last={"exitCode": 1, "reason": "Error"},
            )
        ],
        [],
        "Failed",
        "CrashLoopBackOff",
        "ContainersStarted",
    ),
    (
        "crash-loop-between-back-offs",
        ws(),
        deployment(),
        [
            pod(
                state={"terminated": {"exitCode": 3, "reason": "Error"}},
                last={"exitCode": 3, "reason": "Error"},
            )
        ],
        [],
        "Failed",
        "CrashLoopBackOff",
        "ContainersStarted",
    ),
    (
        "first-exit",
        ws(),
        deployment(),
        [pod(state={"terminated": {"exitCode": 3, "reason": "Error"}})],
        [],
        "Starting",
        None,
        "ContainersStarted",
    ),
    (
        "create-container-config-error",
        ws(),
        deployment(),
        [pod(state=waiting("CreateContainerConfigError", 'secret "ide-password" not found'))],
        [],
        "Failed",
        "CreateContainerConfigError",
        "ContainersStarted",
    ),
    (
        "create-container-error",
        ws(),
        deployment(),
        [pod(state=waiting("CreateContainerError", "no command specified"))],
        [],
        "Failed",
        "CreateContainerError",
        "ContainersStarted",
    ),
    (
        "unschedulable-condition",
        ws(),
        deployment(),
        [pod(node=None, scheduled=UNSCHEDULABLE)],
        [],
        "Failed",
        "Unschedulable",
        "PodScheduled",
    ),
    (
        "failed-scheduling-event",
        ws(),
        deployment(),
        [pod(node=None, scheduled={"type": "PodScheduled", "status": "False"})],
        [event("ide-abc-1", "FailedScheduling", "0/1 nodes are available")],
        "Failed",
        "Unschedulable",
        "PodScheduled",
    ),
    (
        "failed-scheduling-event-new-api",
        ws(),
        deployment(),
        [pod(node=None, scheduled={"type": "PodScheduled", "status": "False"})],
        [event("ide-abc-1", "FailedScheduling", "0/1 nodes are available", new_api=True)],
        "Failed",
        "Unschedulable",
        "PodScheduled",
    ),
    (
        "failed-scheduling-event-of-another-pod",
        ws(),
        deployment(),
        [pod(node=None, scheduled={"type": "PodScheduled", "status": "False"})],
        [event("other-pod", "FailedScheduling", "0/1 nodes are available")],
        "Starting",
        None,
        "PodScheduled",
    ),
    (
        "failed-scheduling-event-but-now-scheduled",
        ws(),
        deployment(),
        [pod(state=RUNNING)],
        [event("ide-abc-1", "FailedScheduling", "0/1 nodes are available")],
        "Starting",
        None,
        "Ready",
    ),
    (
        "replica-failure",
        ws(),
        deployment(
            conditions=[
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": 'pods "ide-abc" is forbidden: exceeded quota',
                }
            ]
        ),
        [],
        [],
        "Failed",
        "QuotaExceeded",  # the ReplicaSet's FailedCreate, named for what refused the pod
        "PodScheduled",
    ),
    (
        "progress-deadline-exceeded",
        ws(),
        deployment(
            conditions=[
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "ide-abc" has timed out progressing.',
                }
            ]
        ),
        [pod(state=RUNNING)],
        [],
        "Failed",
        "ProgressDeadlineExceeded",
        "Ready",
    ),
    (
        "invalid-spec",
        ws({"image": "bad image"}),
        None,
        [],
        [],
        "Failed",
        "InvalidSpec",
        "Accepted",
    ),
    (
        "terminating",
        ws(deleting=True),
        deployment(ready=1),
        [pod(state=RUNNING)],
        [],
        "Terminating",
        None,
        "Ready",
    ),
    (
        "new-pod-wins-over-terminating-old-one",
        ws(),
        deployment(),
        [
            pod(name="ide-old", created="2025-01-01T11:00:00Z", state=RUNNING, deleting=True),
            pod(name="ide-new", state=waiting("ErrImagePull", "not found")),
        ],
        [],
        "Failed",
        "ErrImagePull",
        "ImagePulled",
    ),
]


@pytest.mark.parametrize(
    ("ws_obj", "dep", "pods", "events", "phase", "reason", "why"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_status_table(ws_obj, dep, pods, events, phase, reason, why) -> None:
    status = compute_status(ws_obj, dep, pods, events, T0)
    assert status["phase"] == phase
    assert [c["type"] for c in status["conditions"]] == list(CONDITION_TYPES)
    by_type = conds(status)
    # Every condition before the one that says why is True; that one is not.
    for ctype in CONDITION_TYPES[: CONDITION_TYPES.index(why)]:
        assert by_type[ctype]["status"] == "True", (ctype, status)
    if phase != "Running":
        assert by_type[why]["status"] != "True"
        assert by_type["Ready"]["status"] == "False"
    else:
        assert by_type["Ready"]["status"] == "True"
    if reason is not None:
        assert status["reason"] == reason
        assert by_type[why]["reason"] == reason
        assert by_type["Ready"]["reason"] == reason
        assert reason in status["message"]
    else:
        assert "reason" not in status
    for c in status["conditions"]:
        assert c["status"] in ("True", "False", "Unknown")
        assert c["reason"] and c["lastTransitionTime"] == "2025-01-01T12:00:00Z"
        assert c["observedGeneration"] == ws_obj["metadata"]["generation"]
    assert status["observedGeneration"] == ws_obj["metadata"]["generation"]
    assert status["url"] == "/proxy/server/ide/"
    other = compute_status(ws_obj, dep, pods, events, T0, cluster_id="prod")
    assert other["url"] == "/api/cluster/prod/proxy/server/ide/"  # the canonical URL there
    assert status["serviceDNS"] == "ide.ns1.svc.cluster.local"
    if reason != "InvalidSpec":
        assert status["proxyTarget"] == "ide.ns1.svc.cluster.local:8080"
    assert status["readyReplicas"] == ((dep or {}).get("status") or {}).get("readyReplicas", 0)


@pytest.mark.parametrize(
    ("ws_obj", "dep", "pods", "events"), [c[1:5] for c in CASES], ids=[c[0] for c in CASES]
)
def test_recomputing_an_unchanged_world_is_identical(ws_obj, dep, pods, events) -> None:
    first = compute_status(ws_obj, dep, pods, events, T0)
    again = copy.deepcopy(ws_obj)
    again["status"] = copy.deepcopy(first)
    assert compute_status(again, dep, pods, events, LATER) == first
    assert compute_status(again, dep, pods, events, LATER) == first


def test_crash_loop_message_has_the_exit_code() -> None:
    p = pod(
        state=waiting("CrashLoopBackOff", "back-off"), last={"exitCode": 137, "reason": "OOMKilled"}
    )
    status = compute_status(ws(), deployment(), [p], [], T0)
    assert "137" in status["message"] and "OOMKilled" in status["message"]


def test_a_crash_loop_stays_failed_through_its_cycle() -> None:
    """A kubelet reports a crash-looping container as CrashLoopBackOff, then (after the
    back-off) started and exited again; the phase must not flicker back to Starting."""
    backoff = pod(state=waiting("CrashLoopBackOff", "back-off 10s"), last={"exitCode": 3})
    exited = pod(state={"terminated": {"exitCode": 3, "reason": "Error"}}, last={"exitCode": 3})
    s1 = compute_status(ws(), deployment(), [backoff], [], T0)
    s2 = compute_status(ws(status=s1), deployment(), [exited], [], LATER)
    s3 = compute_status(ws(status=s2), deployment(), [backoff], [], LATER)
    for s in (s1, s2, s3):
        assert (s["phase"], s["reason"]) == ("Failed", "CrashLoopBackOff"), s
    assert "last exit code 3" in s2["message"]
    started = [conds(s)["ContainersStarted"]["lastTransitionTime"] for s in (s1, s2, s3)]
    assert started == [started[0]] * 3


def test_transition_times_move_only_on_change() -> None:
    s1 = compute_status(ws(), deployment(), [pod(state=waiting("ContainerCreating"))], [], T0)
    s2 = compute_status(ws(status=s1), deployment(), [pod(state=RUNNING)], [], LATER)
    c1, c2 = conds(s1), conds(s2)
    assert c2["PodScheduled"]["lastTransitionTime"] == c1["PodScheduled"]["lastTransitionTime"]
    assert c2["ImagePulled"]["lastTransitionTime"] == "2025-01-01T12:00:30Z"
    assert c2["ContainersStarted"]["lastTransitionTime"] == "2025-01-01T12:00:30Z"
    assert c2["Ready"]["lastTransitionTime"] == c1["Ready"]["lastTransitionTime"]
    s3 = compute_status(ws(status=s2), deployment(ready=1), [pod(state=RUNNING)], [], LATER)
    assert s3["phase"] == "Running"
    assert conds(s3)["Ready"]["lastTransitionTime"] == "2025-01-01T12:00:30Z"


def test_no_progress_within_the_deadline_fails() -> None:
    pods = [pod(state=waiting("ContainerCreating"))]
    s1 = compute_status(ws(), deployment(), pods, [], T0, progress_deadline_s=600)
    assert s1["phase"] == "Starting"
    s2 = compute_status(ws(status=s1), deployment(), pods, [], T0 + timedelta(seconds=599))
    assert s2 == s1
    s3 = compute_status(ws(status=s1), deployment(), pods, [], T0 + timedelta(seconds=601))
    assert s3["phase"] == "Failed" and s3["reason"] == "ProgressDeadlineExceeded"
    assert "ContainerCreating" in s3["message"]
    # ...and stays Failed (idempotent) until the world changes.
    s4 = compute_status(ws(status=s3), deployment(), pods, [], T0 + timedelta(seconds=700))
    assert s4 == s3
    # A spec change (new generation) restarts the clock.
    s5 = compute_status(
        ws(gen=2, status=s3), deployment(built_from=2), pods, [], T0 + timedelta(seconds=800)
    )
    assert s5["phase"] == "Starting"
    assert conds(s5)["Ready"]["lastTransitionTime"] == "2025-01-01T12:13:20Z"


def test_deadline_does_not_apply_before_the_deployment_exists() -> None:
    s1 = compute_status(ws(), None, [], [], T0)
    s2 = compute_status(ws(status=s1), None, [], [], T0 + timedelta(hours=2))
    assert s2["phase"] == "Pending" and s2 == s1


def test_recovery_from_failure() -> None:
    bad = [pod(state=waiting("ImagePullBackOff"))]
    s1 = compute_status(ws(), deployment(), bad, [], T0)
    assert s1["phase"] == "Failed"
    s2 = compute_status(ws(status=s1), deployment(ready=1), [pod(state=RUNNING)], [], LATER)
    assert s2["phase"] == "Running" and "reason" not in s2


def test_naive_now_is_utc_and_ports_follow_spec() -> None:
    spec = {"image": "nginx", "ports": [{"containerPort": 3000, "name": "web"}]}
    status = compute_status(ws(spec), None, [], [], datetime(2025, 1, 1, 12, 0, 0))
    assert status["proxyTarget"] == "ide.ns1.svc.cluster.local:3000"
    assert status["conditions"][0]["lastTransitionTime"] == "2025-01-01T12:00:00Z"
    # Time spent Pending (no Deployment: the operator's delay) does not count...
    later = compute_status(
        ws(spec, status=status), deployment(), [], [], datetime(2025, 1, 1, 13, 0, 0)
    )
    assert later["phase"] == "Starting"
    # ...the clock starts when the Deployment appears.
    again = compute_status(
        ws(spec, status=later), deployment(), [], [], datetime(2025, 1, 1, 13, 10, 1)
    )
    assert again["phase"] == "Failed" and again["reason"] == "ProgressDeadlineExceeded"
