"""Observed Deployment, Pods and Events -> the Workspace's ``status``.

Pure and deterministic: the same world (and the previous status fed back in) yields an
identical dict, so the controller can skip the status write when nothing changed. ``now``
only matters at transitions and for the progress deadline.

Conditions, in the order a workspace comes up (the first one that is not True is the step
it is waiting on; later steps are Unknown with reason ``Waiting``):

1. ``Accepted``          the spec is valid (InvalidSpec otherwise).
2. ``Deployed``          the Deployment exists (DeploymentNotFound).
3. ``PodScheduled``      a pod exists and is on a node (FailedCreate, Unschedulable, NoPod).
4. ``ImagePulled``       its image is on the node (ErrImagePull, ImagePullBackOff, ...).
5. ``ContainersStarted`` the container runs (CrashLoopBackOff, CreateContainerConfigError...).
6. ``Ready``             the Deployment has a ready pod of the current template. The
   progress deadline counts from the later of Ready's ``lastTransitionTime`` (when it went
   False for this generation: a spec change restarts the clock) and Deployed's (time spent
   Pending is the operator's delay, not the workspace's).

``lastTransitionTime`` is kept while a condition's status is unchanged; a condition that
is not True also restarts at a new generation (the attempt it described is over).

A stopped workspace (``spec.stopped``) skips the pod steps (Unknown, reason ``Stopped``),
its Ready is False with reason ``Stopped``, and a seventh condition ``Stopped`` (True, the
reason and message from the ``guildnet.io/stop-reason`` annotation, ``UserRequested`` when
there is none) says since when. A started workspace has no ``Stopped`` condition.

Phase: Terminating (deletionTimestamp) > Failed (invalid spec, a fail-fast reason, or no
progress within the deadline) > Stopped (``spec.stopped``; the message says "stopping"
while a pod is still there) > Pending (no Deployment yet) > Running (ready, current
template) > Starting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from guildnet.operator.constants import (
    ANNOTATION_GENERATION,
    ANNOTATION_STOP_REASON,
    CONTAINER_NAME,
    STOP_USER_REQUESTED,
)
from guildnet.operator.desired import first_port, proxy_url, service_dns
from guildnet.operator.spec import SpecError, parse_spec
from guildnet.proxy.origins import WorkspaceOrigins
from guildnet.proxy.paths import DEFAULT_CLUSTER

CONDITION_TYPES: Final = (
    "Accepted",
    "Deployed",
    "PodScheduled",
    "ImagePulled",
    "ContainersStarted",
    "Ready",
)
PULL_FAILURES: Final = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
     "RegistryUnavailable", "SignatureValidationFailed"}
)  # fmt: skip
START_FAILURES: Final = frozenset(
    {"CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError",
     "RunContainerError", "PreStartHookError", "PostStartHookError"}
)  # fmt: skip

#: The Stopped condition's message when the stop-reason annotation gives none.
_STOP_MESSAGES: Final = {
    "UserRequested": "stopped on request",
    "Idle": "stopped after being idle",
}

MAX_MESSAGE: Final = 1024  # Kubernetes messages (pull errors) can be long; status stays small

Obj = Mapping[str, Any]


def _ts(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _cond(obj: Obj | None, ctype: str) -> Obj | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


class _Step:
    """One condition's outcome before timestamps: status, reason, message, fatal?"""

    def __init__(self, status: str, reason: str, message: str = "", failed: bool = False):
        self.status = status
        self.reason = reason
        self.message = (
            message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."
        )
        self.failed = failed


def stop_reason(ws: Obj) -> tuple[str, str]:
    """(reason, message) from the ``guildnet.io/stop-reason`` annotation, or the default.

    The value is ``<Reason>`` or ``<Reason>: <message>``; a reason must be a CamelCase word
    (it becomes a condition reason), otherwise the whole value is taken as the message.
    """
    raw = ((ws.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_STOP_REASON)
    if not isinstance(raw, str) or not raw.strip():
        return STOP_USER_REQUESTED, ""
    head, sep, tail = raw.strip().partition(":")
    if head.isalnum() and head[:1].isupper() and len(head) <= 64:
        return head, tail.strip() if sep else ""
    return STOP_USER_REQUESTED, raw.strip()[:MAX_MESSAGE]


def is_stopped(ws: Obj) -> bool:
    """``spec.stopped`` is true (read leniently: an invalid spec still says so)."""
    return (ws.get("spec") or {}).get("stopped") is True


def _newest_pod(pods: Sequence[Obj]) -> Obj | None:
    """The pod that stands for the workspace: newest not being deleted, else newest."""

    def key(p: Obj) -> tuple[str, str]:
        meta = p.get("metadata") or {}
        return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))

    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    candidates = live or list(pods)
    return max(candidates, key=key) if candidates else None


def _container_status(pod: Obj) -> Obj | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("name") == CONTAINER_NAME:
            return cs
    return statuses[0] if statuses else None


def _event_for(pod: Obj, events: Sequence[Obj], reason: str) -> Obj | None:
    """The latest Event with ``reason`` about ``pod`` (core/v1 or events.k8s.io/v1)."""
    meta = pod.get("metadata") or {}
    found: list[tuple[str, Obj]] = []
    for ev in events:
        about = ev.get("involvedObject") or ev.get("regarding") or {}
        if about.get("kind", "Pod") != "Pod" or about.get("name") != meta.get("name"):
            continue
        if about.get("uid") and meta.get("uid") and about["uid"] != meta["uid"]:
            continue
        if ev.get("reason") != reason:
            continue
        when = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or ""
        found.append((str(when), ev))
    return max(found, key=lambda t: t[0])[1] if found else None


def _event_message(ev: Obj) -> str:
    return str(ev.get("message") or ev.get("note") or "")


def _volume_pending(volume: Obj | None) -> _Step | None:
    """A home volume that is not bound yet: the pod cannot be scheduled until it is."""
    if volume is None:
        return None
    phase = (volume.get("status") or {}).get("phase")
    if phase == "Bound":
        return None
    name = (volume.get("metadata") or {}).get("name") or "the home volume"
    sc = (volume.get("spec") or {}).get("storageClassName")
    where = f"storage class {sc!r}" if sc else "no storage class (and no default class)"
    if phase == "Lost":
        return _Step("False", "VolumeLost", f"{name}: its PersistentVolume is gone", True)
    return _Step(
        "False",
        "VolumePending",
        f"waiting for PersistentVolumeClaim {name} to be bound ({where}); "
        "is a provisioner running for it?",
    )


def _schedule_step(
    deployment: Obj, pod: Obj | None, events: Sequence[Obj], volume: Obj | None = None
) -> _Step:
    failure = _cond(deployment, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        message = str(failure.get("message") or "")
        reason = str(failure.get("reason") or "FailedCreate")
        if "exceeded quota" in message:
            reason = "QuotaExceeded"  # the message names the ResourceQuota
        elif "usage per Container" in message or "usage per Pod" in message:
            reason = "LimitRangeExceeded"
        return _Step("False", reason, message, failed=True)
    scheduled = _cond(pod, "PodScheduled") if pod is not None else None
    if pod is not None and (
        (pod.get("spec") or {}).get("nodeName") or (scheduled or {}).get("status") == "True"
    ):
        node = (pod.get("spec") or {}).get("nodeName") or ""
        return _Step("True", "Scheduled", f"scheduled on {node}" if node else "scheduled")
    pending = _volume_pending(volume)
    if pending is not None:
        return pending  # before "Unschedulable": an unbound claim is why, not a failure
    if pod is None:
        return _Step("False", "NoPod", "waiting for the Deployment to create a pod")
    why: str | None = None
    if scheduled is not None and scheduled.get("reason") == "Unschedulable":
        why = str(scheduled.get("message") or "")
    else:
        ev = _event_for(pod, events, "FailedScheduling")
        why = _event_message(ev) if ev is not None else None
    if why is not None and not (volume is not None and "PersistentVolumeClaim" in why):
        return _Step("False", "Unschedulable", why, failed=True)
    # (A claim that was unbound when the scheduler last tried is bound now: it retries.)
    return _Step("False", "Scheduling", "waiting for the scheduler")


def _pull_step(pod: Obj) -> _Step:
    cs = _container_status(pod)
    if cs is None:
        return _Step("False", "ContainerCreating", "waiting for the image")
    state = cs.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    if reason in PULL_FAILURES:
        return _Step("False", str(reason), str(waiting.get("message") or ""), failed=True)
    if "running" in state or "terminated" in state or cs.get("imageID") or reason in START_FAILURES:
        return _Step("True", "Pulled", str(cs.get("image") or ""))
    return _Step("False", str(reason or "ContainerCreating"), str(waiting.get("message") or ""))


def _start_step(pod: Obj) -> _Step:
    cs = _container_status(pod) or {}
    state = cs.get("state") or {}
    if "running" in state:
        return _Step("True", "Started")
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    message = str(waiting.get("message") or "")
    if reason in START_FAILURES:
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if last:
            detail = f"last exit code {last.get('exitCode')} ({last.get('reason') or 'Error'})"
            message = f"{message}; {detail}" if message else detail
        return _Step("False", str(reason), message, failed=True)
    terminated = state.get("terminated")
    if terminated:
        detail = f"exited with code {terminated.get('exitCode')}"
        restarts = int(cs.get("restartCount") or 0)
        if restarts > 0:
            # Between two back-offs of a crash loop the kubelet reports the exit before it
            # says CrashLoopBackOff again: stay Failed instead of flickering to Starting.
            code, why = terminated.get("exitCode"), terminated.get("reason") or "Error"
            detail = f"last exit code {code} ({why}); restarted {restarts} times"
            return _Step("False", "CrashLoopBackOff", detail, failed=True)
        return _Step("False", str(terminated.get("reason") or "Terminated"), detail)
    return _Step("False", str(reason or "ContainerCreating"), message)


def _deployment_current(deployment: Obj, generation: Any) -> bool:
    """Has the Deployment rolled out the template for this Workspace generation?"""
    meta = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    built_from = (meta.get("annotations") or {}).get(ANNOTATION_GENERATION)
    if built_from is not None and generation is not None and built_from != str(generation):
        return False
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    return int(status.get("updatedReplicas") or 0) >= 1


def _steps(
    ws: Obj,
    deployment: Obj | None,
    pods: Sequence[Obj],
    events: Sequence[Obj],
    volume: Obj | None = None,
) -> list[_Step]:
    steps: list[_Step] = []
    try:
        parse_spec(ws.get("spec") or {})
        steps.append(_Step("True", "SpecValid"))
    except SpecError as e:
        steps.append(_Step("False", "InvalidSpec", str(e), failed=True))
        return steps
    if deployment is None:
        steps.append(_Step("False", "DeploymentNotFound", "waiting for the operator"))
        return steps
    steps.append(_Step("True", "DeploymentCreated"))
    if is_stopped(ws):
        return steps
    pod = _newest_pod(pods)
    steps.append(_schedule_step(deployment, pod, events, volume))
    if steps[-1].status != "True" or pod is None:
        return steps
    steps.append(_pull_step(pod))
    if steps[-1].status != "True":
        return steps
    steps.append(_start_step(pod))
    return steps


def _condition(
    ctype: str, step: _Step, prev: Obj | None, generation: Any, now: datetime
) -> dict[str, Any]:
    when = _ts(now)
    if prev is not None and prev.get("status") == step.status and prev.get("lastTransitionTime"):
        same_attempt = step.status == "True" or prev.get("observedGeneration") == generation
        if same_attempt:
            when = str(prev["lastTransitionTime"])
    cond: dict[str, Any] = {
        "type": ctype,
        "status": step.status,
        "reason": step.reason,
        "message": step.message,
        "lastTransitionTime": when,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def _since(prev: Obj | None, status: str, generation: Any, now: datetime) -> datetime:
    """When ``prev`` entered ``status`` (for this generation, if given); else ``now``."""
    if prev is None or prev.get("status") != status:
        return now
    if generation is not None and prev.get("observedGeneration") != generation:
        return now
    return _parse_ts(prev.get("lastTransitionTime")) or now


def compute_status(
    ws: Obj,
    deployment: Obj | None,
    pods: Sequence[Obj],
    events: Sequence[Obj],
    now: datetime,
    progress_deadline_s: int = 600,
    cluster_id: str = DEFAULT_CLUSTER,
    origins: WorkspaceOrigins | None = None,
    volume: Obj | None = None,
) -> dict[str, Any]:
    """The whole ``status`` for Workspace ``ws`` given what is observed in the cluster.

    ``ws`` carries the previous status (for lastTransitionTime); ``pods`` and ``events`` are
    the workspace's pods and the Events about them (others are ignored); ``volume`` is its
    home PersistentVolumeClaim, if any (an unbound one holds PodScheduled at VolumePending).
    ``url`` is the workspace's canonical URL in cluster ``cluster_id`` (``paths.workspace_prefix``).
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    meta = ws.get("metadata") or {}
    name = str(meta.get("name") or "")
    generation = meta.get("generation")
    previous = {c.get("type"): c for c in (ws.get("status") or {}).get("conditions") or []}
    terminating = bool(meta.get("deletionTimestamp"))
    stopped = is_stopped(ws)

    steps = _steps(ws, deployment, pods, events, volume)
    failed = next((s for s in steps if s.failed), None)
    ready_replicas = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    current = deployment is not None and _deployment_current(deployment, generation)
    all_true = len(steps) == len(CONDITION_TYPES) - 1 and all(s.status == "True" for s in steps)
    running = all_true and ready_replicas >= 1 and current and not terminating and not stopped
    stop_cond: dict[str, Any] | None = None
    stop_message = ""
    if stopped:
        why, detail = stop_reason(ws)
        stop_step = _Step("True", why, detail or _STOP_MESSAGES.get(why, "stopped"))
        stop_cond = _condition("Stopped", stop_step, previous.get("Stopped"), generation, now)
        if pods:
            stop_message = f"stopping: waiting for {len(pods)} pod(s) to exit ({why})"
        else:
            since = stop_cond["lastTransitionTime"]
            stop_message = f"stopped since {since} ({why}: {stop_step.message})"

    # The Ready step, including the progress deadline. The clock starts at the later of "Ready
    # went False for this generation" and "the Deployment appeared" (time spent Pending is
    # the operator's delay, not the workspace's), both read back from the previous status.
    started = max(
        _since(previous.get("Ready"), "False", generation, now),
        _since(previous.get("Deployed"), "True", None, now),
    )
    progressing = _cond(deployment, "Progressing")
    if terminating:
        ready = _Step("False", "Terminating", "the workspace is being deleted")
    elif stopped and failed is None:
        ready = _Step("False", "Stopped", stop_message)
    elif running:
        ready = _Step("True", "Ready", "the workspace is ready")
    elif failed is not None:
        ready = _Step("False", failed.reason, failed.message, failed=True)
    elif (
        progressing is not None
        and progressing.get("status") == "False"
        and progressing.get("reason") == "ProgressDeadlineExceeded"
    ):
        ready = _Step(
            "False", "ProgressDeadlineExceeded", str(progressing.get("message") or ""), True
        )
    elif deployment is not None and (now - started).total_seconds() > progress_deadline_s:
        stuck = next((s for s in steps if s.status != "True"), None)
        where = f"; waiting at {stuck.reason}" if stuck else ""
        ready = _Step(
            "False",
            "ProgressDeadlineExceeded",
            f"not ready after {progress_deadline_s}s{where}",
            failed=True,
        )
    else:
        stuck = next((s for s in steps if s.status != "True"), None)
        if stuck is not None:
            ready = _Step("False", "NotReady", f"waiting for {stuck.reason}")
        elif not current:
            ready = _Step("False", "RollingOut", "waiting for the Deployment to roll out")
        else:
            ready = _Step("False", "NotReady", "waiting for the readiness probe")

    filled = list(steps)
    while len(filled) < len(CONDITION_TYPES) - 1:
        if stopped:
            filled.append(_Step("Unknown", "Stopped", "the workspace is stopped"))
        else:
            filled.append(_Step("Unknown", "Waiting", "an earlier step is not done"))
    filled.append(ready)
    conditions = [
        _condition(ctype, step, previous.get(ctype), generation, now)
        for ctype, step in zip(CONDITION_TYPES, filled, strict=True)
    ]
    if stop_cond is not None:
        conditions.append(stop_cond)

    if terminating:
        phase, message = "Terminating", "the workspace is being deleted"
    elif failed is not None or ready.failed:
        phase = "Failed"
        culprit = failed or ready
        message = f"{culprit.reason}: {culprit.message}" if culprit.message else culprit.reason
    elif stopped:
        phase, message = "Stopped", stop_message
    elif deployment is None:
        phase, message = "Pending", "waiting for the operator to create the Deployment"
    elif running:
        phase, message = "Running", "the workspace is ready"
    else:
        stuck = next((s for s in steps if s.status != "True"), None)
        phase = "Starting"
        message = f"{stuck.reason}: {stuck.message}" if stuck else ready.message
        if stuck is not None and not stuck.message:
            message = stuck.reason

    status: dict[str, Any] = {
        "phase": phase,
        "readyReplicas": ready_replicas,
        "url": proxy_url(name, cluster_id) if origins is None else origins.url(cluster_id, name),
        "message": message,
        "conditions": conditions,
    }
    if failed is not None or ready.failed:
        status["reason"] = (failed or ready).reason
    if name:
        status["serviceDNS"] = service_dns(ws)
        with contextlib.suppress(SpecError):  # an invalid spec has no port to point at
            status["proxyTarget"] = f"{status['serviceDNS']}:{first_port(ws)}"
    if generation is not None:
        status["observedGeneration"] = generation
    return status
