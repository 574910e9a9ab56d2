"""The UI's Data section end to end: real Host App, real test cluster, a REAL RethinkDB server,
Debian's Chromium.

Flow (driven by ``data.e2e.mjs`` with playwright-core): see the DB health ready, create a
database and a table, insert a row (and get the editor's JSON validation), edit it, see the
live grid update from writes made OUTSIDE the UI (the driver, through this test's control
endpoint), delete a row, import a small CSV after a dry run showing its errors, export CSV and
JSON, run a query built in the form; then the RethinkDB server is killed mid-stream: the
browser shows the feed's ``resync`` and the not-ready health with its reason; the server is
restarted and the grid recovers (and shows a write made after the restart). Finally the
table and database are dropped with typed confirmations. Screenshots land in
``test-output/screenshots/data/``; console errors fail the run, except the ones the outage
itself causes (listed in the script: the health route's 503 while the server is down).

The browser script asks this test to act on the database through a small HTTP control
endpoint on 127.0.0.1 (inside the test network namespace): ``/insert`` (a driver write),
``/kill`` and ``/start``.

A second, short run has no RethinkDB at all: the health shows ``not_found`` with the deploy
offer, and the UI's "Deploy RethinkDB" applies the StatefulSet and Service to the test cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from tests.e2e.test_ui_e2e import CHROMIUM, REPO, UI_DIR, WEB_INDEX, _need
from tests.harness.rethinkdb import RethinkServer
from tests.integration.hostproc import HostProc

SCRIPT = Path(__file__).with_name("data.e2e.mjs")
SCREENSHOTS = REPO / "test-output" / "screenshots" / "data"
E2E_TIMEOUT = 300.0

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


class Control:
    """The browser script's handle on the database: driver writes, kill and restart."""

    def __init__(self, server: RethinkServer) -> None:
        self.server = server
        self.log: list[str] = []
        control = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                try:
                    result = control.act(self.path, body)
                    status, payload = 200, {"ok": True, "result": result}
                except Exception as e:  # reported to the script, which fails the run
                    status, payload = 500, {"ok": False, "error": repr(e)}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        # One thread serves every request: a server (re)started from a short-lived handler
        # thread would die with it (the harness sets PR_SET_PDEATHSIG, which is per thread).
        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="e2e-control")

    def act(self, path: str, body: dict[str, Any]) -> Any:
        self.log.append(path)
        if path == "/insert":
            db, table, doc = body["db"], body["table"], body["doc"]
            return self.server.run(lambda r: r.db(db).table(table).insert(doc))
        if path == "/kill":
            self.server.kill()
            return None
        if path == "/start":
            self.server.start()
            return None
        raise ValueError(f"no control action {path}")

    def __enter__(self) -> Control:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def rethink() -> Iterator[RethinkServer]:
    server = RethinkServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def data_host(
    rethink: RethinkServer, kubeconfig: str, namespace: str, tmp_path: Path
) -> Iterator[HostProc]:
    """The Host App with the test cluster as its default cluster and RETHINKDB_ADDR set."""
    work = tmp_path / "hostapp"
    work.mkdir()
    host = HostProc(
        work,
        {
            "KUBECONFIG": kubeconfig,
            "K8S_NAMESPACE": namespace,
            "HOSTAPP_EMBED_OPERATOR": "true",  # installs the Workspace CRD the UI's lists need
            "RETHINKDB_ADDR": rethink.addr,
            "RETHINKDB_PING_INTERVAL": "1",
            "PYTHONPATH": str(REPO),
        },
    )
    try:
        yield host
    finally:
        host.stop()


def _need_browser() -> None:
    node = shutil.which("node")
    _need(node is not None, "node is not installed (the machine's Node.js 20 is needed)")
    _need(CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium")
    _need(
        (UI_DIR / "node_modules" / "playwright-core").is_dir() and WEB_INDEX.is_file(),
        "the UI is not built: run `make ui` (cd ui && npm ci && npm run build)",
    )


def _browse(host: HostProc, tmp_path: Path, extra: dict[str, str]) -> dict[str, Any]:
    """Runs data.e2e.mjs against ``host``; fails the test with both sides' logs."""
    result_file = tmp_path / "data-e2e-result.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "GUILDNET_URL": f"https://127.0.0.1:{host.port}",
        "GUILDNET_CHROMIUM": str(CHROMIUM),
        "GUILDNET_SCREENSHOTS": str(SCREENSHOTS),
        "GUILDNET_RESULT": str(result_file),
        "GUILDNET_PROFILE_DIR": str(tmp_path / "chromium-profile"),
        **extra,
    }
    try:
        proc = subprocess.run(
            [str(shutil.which("node")), str(SCRIPT)],
            cwd=UI_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=E2E_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        pytest.fail(
            f"the browser run timed out after {E2E_TIMEOUT}s\n{out or ''}\n"
            f"--- Host App log ---\n{host.log_tail(120)}",
            pytrace=False,
        )
    print(proc.stdout)
    report: dict[str, Any] = json.loads(result_file.read_text()) if result_file.exists() else {}
    if proc.returncode != 0:
        pytest.fail(
            f"browser run failed (exit {proc.returncode}):\n{proc.stdout[-8000:]}\n"
            f"{proc.stderr[-4000:]}\n--- Host App log ---\n{host.log_tail(120)}",
            pytrace=False,
        )
    assert report.get("ok") is True, report
    assert report["consoleErrors"] == [], report["consoleErrors"]
    return report


def test_data_ui_end_to_end(data_host: HostProc, rethink: RethinkServer, tmp_path: Path) -> None:
    _need_browser()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    with Control(rethink) as control:
        _browse(data_host, tmp_path, {"GUILDNET_CONTROL_URL": control.url})
    assert control.log.count("/kill") == 1 and control.log.count("/start") == 1, control.log
    assert control.log.count("/insert") >= 2, control.log
    shots = sorted(p.name for p in SCREENSHOTS.glob("*.png"))
    assert len(shots) >= 10, shots
    log = data_host.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 2000 :][:6000]


def test_data_ui_offers_the_deploy(
    kubeconfig: str, namespace: str, kube_api: Any, tmp_path: Path
) -> None:
    """No RETHINKDB_ADDR and no Service: not_found, and the UI's deploy applies etc/k8s's."""
    _need_browser()
    shots = SCREENSHOTS / "deploy"
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    work = tmp_path / "hostapp"
    work.mkdir()
    host = HostProc(
        work,
        {
            "KUBECONFIG": kubeconfig,
            "K8S_NAMESPACE": namespace,
            "RETHINKDB_NAMESPACE": namespace,
            "RETHINKDB_ADDR": "",
            "HOSTAPP_EMBED_OPERATOR": "true",
            "PYTHONPATH": str(REPO),
        },
    )
    try:
        _browse(
            host,
            tmp_path,
            {
                "GUILDNET_DATA_FLOW": "deploy",
                "GUILDNET_SCREENSHOTS": str(shots),
            },
        )
    finally:
        host.stop()
    apps: Any = k8s_client.AppsV1Api(kube_api)
    core: Any = k8s_client.CoreV1Api(kube_api)
    sts = apps.read_namespaced_stateful_set("rethinkdb", namespace)
    svc = core.read_namespaced_service("rethinkdb", namespace)
    assert sts.spec.template.spec.containers[0].image
    assert any(p.port == 28015 for p in svc.spec.ports)
    assert len(list(shots.glob("*.png"))) == 2
