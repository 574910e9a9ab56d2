"""Small helpers for the real-node tests: exec in a pod, wait for a workspace, read its pods."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.stream import stream

from guildnet.operator.constants import CONTAINER_NAME, LABEL_WORKSPACE
from guildnet.operator.images import PRESETS
from tests.harness.hostapp import HostApp

T = TypeVar("T")


def preset_image(preset: str) -> str:
    """The image reference of a launch preset (the images are built under exactly these)."""
    return next(p.image for p in PRESETS if p.id == preset)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.3) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def pod_exec(core: Any, namespace: str, pod: str, argv: list[str], timeout: float = 60) -> str:
    """Run ``argv`` in the workspace container (``pods/exec`` through the real kubelet).

    Returns stdout; a non-zero exit status fails with stdout and stderr.
    """
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container=CONTAINER_NAME,
        command=argv,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    out: list[str] = []
    err: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while resp.is_open():
            resp.update(timeout=1)
            if resp.peek_stdout():
                out.append(resp.read_stdout())
            if resp.peek_stderr():
                err.append(resp.read_stderr())
            if time.monotonic() > deadline:
                raise AssertionError(f"exec {argv} in {pod} did not finish in {timeout}s")
        code = resp.returncode
    finally:
        resp.close()
    if code not in (0, None):
        raise AssertionError(f"exec {argv} in {pod} exited {code}: {''.join(out)}{''.join(err)}")
    return "".join(out)


def workspace_pods(core: Any, namespace: str, name: str) -> list[Any]:
    """The workspace's pods as the API server has them now (not a cache)."""
    return list(
        core.list_namespaced_pod(namespace, label_selector=f"{LABEL_WORKSPACE}={name}").items
    )


def running_pod(core: Any, namespace: str, name: str, timeout: float = 60) -> Any:
    """The workspace's one Running, Ready pod (waits for it)."""

    def ready() -> Any:
        for pod in workspace_pods(core, namespace, name):
            conds = {c.type: c.status for c in pod.status.conditions or []}
            if pod.metadata.deletion_timestamp is None and conds.get("Ready") == "True":
                return pod
        return None

    return wait_for(f"a Ready pod of {name}", ready, timeout)


def launch(app: HostApp, body: dict[str, Any]) -> str:
    """POST /api/jobs; returns the workspace id."""
    status, reply = app.json("POST", "/api/jobs", body)
    assert status == 202, (status, reply)
    return str(reply["id"])


def server(app: HostApp, name: str) -> dict[str, Any] | None:
    status, reply = app.json("GET", f"/api/servers/{name}")
    if status == 404:
        return None
    assert status == 200, (status, reply)
    assert isinstance(reply, dict)
    return reply


def wait_phase(app: HostApp, name: str, phase: str, timeout: float) -> dict[str, Any]:
    """Wait until the workspace's phase is ``phase``; fail with the last detail seen."""
    seen: list[dict[str, Any] | None] = [None]

    def probe() -> dict[str, Any] | None:
        detail = server(app, name)
        seen[0] = detail
        return detail if detail and detail.get("phase") == phase else None

    try:
        return wait_for(f"{name} to be {phase}", probe, timeout, every=0.5)
    except AssertionError as e:
        detail = seen[0] or {}
        raise AssertionError(
            f"{e}; last phase {detail.get('phase')!r}: {detail.get('status')}"
        ) from None


def delete_and_wait_gone(app: HostApp, core: Any, namespace: str, name: str) -> float:
    """DELETE the workspace; wait until no pod of it is left. Returns the seconds it took."""
    t0 = time.monotonic()
    status, reply = app.json("DELETE", f"/api/servers/{name}")
    assert status == 200, (status, reply)
    wait_for(
        f"the pods of {name} to be gone", lambda: not workspace_pods(core, namespace, name), 90
    )
    return time.monotonic() - t0
