"""Real IDEs on the real node, launched and used through GuildNet's UI in Chromium.

``real_ide.e2e.mjs`` drives Debian's Chromium (playwright-core) against a real ``twistd
guildnet`` whose default cluster is the real-node test cluster (real kubelet, containerd,
CNI, kube-proxy) with the locally built images. At checkpoints the browser script hands over
to this test, which checks the real Pod and the files in it through ``pods/exec``:

* code-server: the preset launched from the UI runs with the operator's hardened spec (read
  from the real Pod, and ``id`` inside it); the test seeds a file and the user settings
  (no workspace-trust prompt, DOM terminal renderer so its text is readable); the browser
  logs in inside the IDE tab with the password the UI shows, opens the file, edits and
  saves it (the test reads the saved file in the pod), runs a command in the integrated
  terminal and sees its output. Then the lifecycle: the saved file is on the workspace's
  home volume (a PersistentVolumeClaim) and the test finds it in every new pod after it
  deletes the pod, after a stop and a start from the UI's buttons and after an env change
  from the UI's Change form; the IDE of the last pod, logged in with the same password,
  shows it. The browser deletes the workspace from the UI (the test sees the pod,
  Deployment, Service, Secret and home volume gone).
* JupyterLab: the preset launched from the UI, opened in a new tab under its canonical
  ``/proxy/server/{id}/`` URL, logged in with the token the UI shows; a new notebook, once
  its kernel is attached and idle, runs ``1+1`` and shows ``2`` with the kernel idle. The
  page's kernel messages and REST calls (``<prefix>-trace.jsonl``), Jupyter's server log and
  the Host App's log are kept beside the screenshots.

Console errors fail the run except those listed, with their reason, in the script.
Screenshots: ``test-output/screenshots/real-*.png``.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from guildnet.operator import constants as C
from tests.harness.hostapp import HostApp
from tests.realnode.helpers import (
    pod_exec,
    preset_image,
    running_pod,
    wait_for,
    workspace_pods,
)

REPO = Path(__file__).resolve().parents[2]
UI_DIR = REPO / "ui"
SCRIPT = Path(__file__).with_name("real_ide.e2e.mjs")
CHROMIUM = Path(os.environ.get("GUILDNET_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO / "test-output" / "screenshots"
FLOW_TIMEOUT = 480.0

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _need(condition: bool, message: str) -> None:
    if not condition:
        pytest.fail(message, pytrace=False)


def run_flow(
    flow: str,
    workspace: str,
    app: HostApp,
    tmp: Path,
    handlers: dict[str, Handler],
    diagnose: Callable[[], str] | None = None,
    ws_url: str | None = None,
    shots: str | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Run one browser flow, answering its checkpoints with ``handlers``; returns its report.

    ``diagnose`` adds what the workspace itself said (its log) to a failure's message.
    ``ws_url`` is the workspace's public URL when it is not ``/proxy/server/<id>/`` on the
    Host App's origin (subdomain mode); ``shots`` the screenshots' name prefix;
    ``base_url`` the URL the UI is opened at (default ``app.url``)."""
    node = shutil.which("node")
    _need(node is not None, "node is not installed (the machine's Node.js 20 is needed)")
    _need(CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium")
    _need(
        (UI_DIR / "node_modules" / "playwright-core").is_dir(),
        "ui/node_modules is missing: run `make ui` (cd ui && npm ci)",
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = shots or f"real-{flow}"
    for old in SCREENSHOTS.glob(f"{shots}-*.png"):
        old.unlink()
    handshake = tmp / f"handshake-{flow}"
    handshake.mkdir()
    result = tmp / f"result-{flow}.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "GUILDNET_URL": base_url or app.url,
        "GUILDNET_FLOW": flow,
        "GUILDNET_WORKSPACE": workspace,
        "GUILDNET_CHROMIUM": str(CHROMIUM),
        "GUILDNET_SCREENSHOTS": str(SCREENSHOTS),
        "GUILDNET_RESULT": str(result),
        "GUILDNET_PROFILE_DIR": str(tmp / f"profile-{flow}"),
        "GUILDNET_HANDSHAKE": str(handshake),
        "GUILDNET_SPKI": app.spki(),
        "GUILDNET_WS_URL": ws_url or f"{app.url}/proxy/server/{workspace}/",
        "GUILDNET_SHOT_PREFIX": shots,
    }
    proc = subprocess.Popen(
        [str(node), str(SCRIPT)],
        cwd=UI_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, name=f"browser-{flow}", daemon=True)
    reader.start()
    output: list[str] = []
    deadline = time.monotonic() + FLOW_TIMEOUT
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                msg = f"the browser flow timed out after {FLOW_TIMEOUT:.0f}s"
                raise AssertionError(msg) from None
            if line is None:
                break
            output.append(line)
            print(line, end="")
            if line.startswith("@@checkpoint "):
                _, name, data = line.rstrip("\n").split(" ", 2)
                try:
                    reply = {"ok": True, **handlers[name](json.loads(data))}
                except Exception as e:  # the script fails with the reason; so does the test
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                tmp_file = handshake / f".{name}.tmp"
                tmp_file.write_text(json.dumps(reply))
                tmp_file.rename(handshake / f"{name}.json")
                if not reply["ok"]:
                    print(f"checkpoint {name} failed: {reply['error']}")
        proc.wait(30)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    finally:
        reader.join(5)
    report: dict[str, Any] = json.loads(result.read_text()) if result.exists() else {}
    if proc.returncode != 0 or not report.get("ok"):
        extra = diagnose() if diagnose else ""
        pytest.fail(
            f"browser flow {flow} failed (exit {proc.returncode}): {report.get('failure')}\n"
            f"{''.join(output)[-6000:]}\n{extra[-6000:]}\n"
            f"--- Host App log ---\n{app.output()[-6000:]}",
            pytrace=False,
        )
    for allowed in report.get("expectedErrors") or []:
        print(f"allowed console error ({allowed['reason']}): {allowed['text'][:200]}")
    if report["consoleErrors"]:
        extra = diagnose() if diagnose else ""
        pytest.fail(
            f"console errors in {flow}: {json.dumps(report['consoleErrors'], indent=2)}\n"
            f"{extra}\n--- Host App log ---\n{app.output()[-6000:]}",
            pytrace=False,
        )
    return report


def assert_hardened(pod: Any) -> None:
    """The operator's security settings, as the API server has them on the real Pod."""
    spec = pod.spec
    psc = spec.security_context
    assert psc.run_as_non_root is True
    assert psc.run_as_user == 1000
    assert psc.seccomp_profile.type == "RuntimeDefault"
    assert spec.automount_service_account_token is False
    (container,) = [c for c in spec.containers if c.name == C.CONTAINER_NAME]
    csc = container.security_context
    assert csc.allow_privilege_escalation is False
    assert csc.capabilities.drop == ["ALL"]
    assert not csc.capabilities.add
    assert csc.run_as_non_root is True
    assert csc.seccomp_profile.type == "RuntimeDefault"
    assert csc.privileged in (None, False)
    assert container.readiness_probe is not None and container.liveness_probe is not None
    (status,) = [s for s in pod.status.container_statuses if s.name == C.CONTAINER_NAME]
    assert status.ready and status.state.running is not None, status


def assert_hardened_inside(core: Any, namespace: str, pod: str) -> None:
    """What the kernel says about the container's process: uid 1000, no capabilities,
    no_new_privs, seccomp filter mode."""
    ids = pod_exec(core, namespace, pod, ["id", "-u"]).strip()
    assert ids == "1000", ids
    status = pod_exec(core, namespace, pod, ["cat", "/proc/self/status"])
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in status.splitlines())
    )
    assert fields["CapEff"] == "0000000000000000", fields["CapEff"]
    assert fields["CapBnd"] == "0000000000000000", fields["CapBnd"]
    assert fields["NoNewPrivs"] == "1", fields["NoNewPrivs"]
    assert fields["Seccomp"] == "2", fields["Seccomp"]  # 2 = filter (RuntimeDefault)


def _write_in_pod(core: Any, namespace: str, pod: str, path: str, content: str) -> None:
    b64 = base64.b64encode(content.encode()).decode()
    directory = path.rsplit("/", 1)[0]
    pod_exec(
        core,
        namespace,
        pod,
        ["sh", "-c", f"mkdir -p '{directory}' && echo {b64} | base64 -d > '{path}'"],
    )


CODE_SERVER_SETTINGS = {
    # No "Do you trust the authors" modal for the home folder, no welcome page.
    "security.workspace.trust.enabled": False,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    # xterm's DOM renderer, so the terminal's text is in the page for the test to read.
    "terminal.integrated.gpuAcceleration": "off",
    "extensions.ignoreRecommendations": True,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    # Saving is the user's Ctrl+S, not a timer; no AI chat panel (nothing to sign in to).
    "files.autoSave": "off",
    "chat.disableAIFeatures": True,
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
}


@attrs.frozen
class Ide:
    """A Host App, its namespace and how it addresses workspaces (``WORKSPACE_ORIGIN``)."""

    mode: str
    app: HostApp
    namespace: str

    def name(self, base: str) -> str:
        return base if self.mode == "single" else f"{base}-sub"

    def url(self, name: str) -> str | None:
        """The workspace's URL in subdomain mode (None: the default path URL)."""
        if self.mode == "single":
            return None
        return f"https://{name}--default.ws.localhost:{self.app.port}/"

    @property
    def base_url(self) -> str:
        """Where the UI is opened: in subdomain mode the domain itself (same site)."""
        return self.app.url if self.mode == "single" else f"https://ws.localhost:{self.app.port}"

    def shots(self, flow: str) -> str:
        return f"real-{flow}" if self.mode == "single" else f"real-{flow}-subdomain"


@pytest.fixture(params=["single", "subdomain"])
def ide(request: pytest.FixtureRequest) -> Ide:
    """Each flow in both isolation modes: under ``/proxy/server/<id>/`` of the Host App's
    origin, and at the root of the workspace's own origin (``<id>--default.ws.localhost``)."""
    if request.param == "single":
        app = request.getfixturevalue("ide_app")
        namespace = request.getfixturevalue("ide_namespace")
    else:
        app, namespace = request.getfixturevalue("ide_subdomain")
    return Ide(request.param, app, namespace)


def test_code_server_through_the_ui(ide: Ide, real_kube_api: Any, tmp_path: Path) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    apps: Any = k8s_client.AppsV1Api(real_kube_api)
    ide_app, ide_namespace = ide.app, ide.namespace
    name = ide.name("real-code")
    home = "/home/coder"
    path = f"{home}/hello-from-guildnet.txt"
    content = "hello from the pod"
    edit = "edited in the browser through GuildNet"
    state: dict[str, Any] = {}

    def running(_: dict[str, Any]) -> dict[str, Any]:
        pod = running_pod(core, ide_namespace, name)
        assert_hardened(pod)
        assert_hardened_inside(core, ide_namespace, pod.metadata.name)
        assert pod.spec.containers[0].image == preset_image("code-server")
        _write_in_pod(core, ide_namespace, pod.metadata.name, path, content + "\n")
        settings = f"{home}/.local/share/code-server/User/settings.json"
        _write_in_pod(
            core, ide_namespace, pod.metadata.name, settings, json.dumps(CODE_SERVER_SETTINGS)
        )
        state["pod"] = pod.metadata.name
        return {"pod": pod.metadata.name, "path": path, "content": content, "edit": edit}

    def saved(_: dict[str, Any]) -> dict[str, Any]:
        text = pod_exec(core, ide_namespace, state["pod"], ["cat", path])
        assert text.splitlines() == [content, edit], text
        # It is on the home volume: a PersistentVolumeClaim the harness bound to a hostPath.
        claim = core.read_namespaced_persistent_volume_claim(C.home_claim_name(name), ide_namespace)
        assert claim.status.phase == "Bound", claim.status
        mounts = pod_exec(core, ide_namespace, state["pod"], ["cat", "/proc/self/mountinfo"])
        assert any(line.split()[4] == home for line in mounts.splitlines()), mounts
        return {}

    def file_in_new_pod(what: str, env: dict[str, str] | None = None) -> str:
        """The workspace's new Running pod (not ``state["pod"]``) still has the saved file."""

        def fresh() -> Any:
            pod = running_pod(core, ide_namespace, name, timeout=180)
            if pod.metadata.name == state["pod"]:
                return None
            have = {e.name: e.value for e in pod.spec.containers[0].env or []}
            if env and any(have.get(k) != v for k, v in env.items()):
                return None
            return pod

        pod = wait_for(f"a new pod after {what}", fresh, 180)
        text = pod_exec(core, ide_namespace, pod.metadata.name, ["cat", path])
        assert text.splitlines() == [content, edit], f"after {what}: {text!r}"
        state["pod"] = pod.metadata.name
        return str(pod.metadata.name)

    def pod_deleted(_: dict[str, Any]) -> dict[str, Any]:
        core.delete_namespaced_pod(state["pod"], ide_namespace)
        return {"pod": file_in_new_pod("deleting the pod")}

    def stopped(_: dict[str, Any]) -> dict[str, Any]:
        wait_for(f"{name}'s pods to go", lambda: not workspace_pods(core, ide_namespace, name), 90)
        assert apps.read_namespaced_deployment(name, ide_namespace).spec.replicas == 0
        core.read_namespaced_persistent_volume_claim(C.home_claim_name(name), ide_namespace)
        core.read_namespaced_secret(C.password_secret_name(name), ide_namespace)
        return {}

    def started(_: dict[str, Any]) -> dict[str, Any]:
        return {"pod": file_in_new_pod("a stop and start")}

    def changed(_: dict[str, Any]) -> dict[str, Any]:
        pod = file_in_new_pod("an env change", {"GUILDNET_LIFECYCLE": "changed"})
        wait_for(
            f"{name} Running after the change",
            lambda: (
                json.loads(ide_app.request("GET", f"/api/servers/{name}")[2])["phase"] == "Running"
            ),
            120,
        )
        return {"pod": pod}

    def deleted(_: dict[str, Any]) -> dict[str, Any]:
        wait_for(
            f"the pods of {name} to be gone",
            lambda: not workspace_pods(core, ide_namespace, name),
            90,
        )
        for read in (
            lambda: apps.read_namespaced_deployment(name, ide_namespace),
            lambda: core.read_namespaced_service(name, ide_namespace),
            lambda: core.read_namespaced_secret(C.password_secret_name(name), ide_namespace),
            lambda: core.read_namespaced_persistent_volume_claim(
                C.home_claim_name(name), ide_namespace
            ),
        ):
            wait_for(f"the objects of {name} to be gone", lambda r=read: _gone(r), 60)  # type: ignore[misc]
        return {}

    report = run_flow(
        "code-server",
        name,
        ide_app,
        tmp_path,
        {
            "running": running,
            "saved": saved,
            "pod-deleted": pod_deleted,
            "stopped": stopped,
            "started": started,
            "changed": changed,
            "deleted": deleted,
        },
        ws_url=ide.url(name),
        shots=ide.shots("code-server"),
        base_url=ide.base_url,
    )
    print(json.dumps(report["steps"], indent=1))


def test_jupyterlab_through_the_ui(ide: Ide, real_kube_api: Any, tmp_path: Path) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    ide_app, ide_namespace = ide.app, ide.namespace
    name = ide.name("real-lab")

    def running(_: dict[str, Any]) -> dict[str, Any]:
        pod = running_pod(core, ide_namespace, name)
        assert_hardened(pod)
        assert pod.spec.containers[0].image == preset_image("jupyter")
        return {"pod": pod.metadata.name}

    try:
        report = run_flow(
            "jupyter",
            name,
            ide_app,
            tmp_path,
            {"running": running},
            lambda: _pod_logs(core, name),
            ws_url=ide.url(name),
            shots=ide.shots("jupyter"),
            base_url=ide.base_url,
        )
        print(json.dumps(report["steps"], indent=1))
    finally:
        _keep_logs(ide.shots("jupyter"), core, name, ide_app)
        ide_app.request("DELETE", f"/api/servers/{name}")


def _keep_logs(prefix: str, core: Any, name: str, app: HostApp) -> None:
    """Beside the screenshots and the browser's trace (``<prefix>-trace.jsonl``): what
    Jupyter's server and the Host App (access and proxy log) saw, for a later diagnosis."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        pod_log = _pod_logs(core, name)
    except ApiException as e:  # best effort: never hide the test's own outcome
        pod_log = f"(no pod log: {e.status})"
    (SCREENSHOTS / f"{prefix}-jupyter-server.log").write_text(pod_log)
    (SCREENSHOTS / f"{prefix}-hostapp.log").write_text(app.output())


def _pod_logs(core: Any, name: str) -> str:
    """The workspace container's log, for a failure message (best effort)."""
    ns = ide_namespace_of(core, name)
    out = []
    for pod in workspace_pods(core, ns, name) if ns else []:
        try:
            text = core.read_namespaced_pod_log(pod.metadata.name, ns, container=C.CONTAINER_NAME)
        except ApiException as e:
            text = f"(no log: {e.status})"
        out.append(f"--- log of {pod.metadata.name} ---\n{text[-6000:]}")
    return "\n".join(out)


def ide_namespace_of(core: Any, name: str) -> str | None:
    sel = f"{C.LABEL_WORKSPACE}={name}"
    pods = core.list_pod_for_all_namespaces(label_selector=sel).items
    return str(pods[0].metadata.namespace) if pods else None


def _gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False
