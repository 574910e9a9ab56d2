"""A hostile workspace page against the Host App, in each isolation mode, in Chromium.

One workspace (a code-server image, so it has a generated password) runs on the test
cluster; kwok runs no container, so this test serves the "IDE" itself on the pod's address:
a page whose script tries to act as the user who opened it (see ``HOSTILE_PAGE``). Two real
Host Apps share the cluster, one per ``WORKSPACE_ORIGIN``; Chromium opens each one's UI on
the workspace's IDE tab, where the page runs inside the UI's iframe.

* ``single`` (the default): the page runs with the Host App's origin. Its script reads the
  server list and the workspace's password, its POST reaches the API, and it reads the
  Host App page around it: what the README's "Isolation modes" warns of.
* ``subdomain``: the page runs on ``https://<id>--default.ws.localhost:<port>``, the UI on
  ``https://ws.localhost:<port>`` (same site, other origin: the README's local layout). The API
  refuses its requests (403, seen in the Host App's access log, so not merely hidden from
  the script by CORS), the script reads nothing, and the parent page is out of reach. The
  UI still frames the workspace (CSP frame-src and the workspace's frame-ancestors).

Traffic stays on 127.0.0.1, ``*.localhost`` (Chromium resolves those to loopback itself)
and the pod address inside the test network namespace. Needs what ``test_ui_e2e`` needs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from tests.harness.hostapp import HostApp

REPO = Path(__file__).resolve().parents[2]
UI_DIR = REPO / "ui"
WEB_INDEX = REPO / "guildnet" / "web" / "index.html"
SCRIPT = Path(__file__).with_name("origins.e2e.mjs")
CHROMIUM = Path(os.environ.get("GUILDNET_CHROMIUM", "/usr/bin/chromium"))
WS = "hostile"
PORT = 8080
RUN_TIMEOUT = 180.0
#: The layout the README recommends for local use: the UI at https://ws.localhost:<port>,
#: workspaces at https://<id>--<cluster>.ws.localhost:<port>, all one site (a cross-site
#: frame gets no storage in Chromium), each its own origin.
DOMAIN = "ws.localhost"

pytestmark = pytest.mark.integration

#: What a malicious workspace image could serve. ``attack`` resolves to what each attempt got.
HOSTILE_PAGE = """<!doctype html>
<html><head><title>hostile workspace</title></head><body><p>hostile</p><script>
window.attack = (async () => {
  const ws = "%(ws)s";
  // Single mode: the Host App is this page's own origin. Subdomain mode: the page is on
  // <id>--default.ws.localhost:<port>, the Host App on ws.localhost at the same port.
  const host = location.hostname.includes("--")
    ? "https://" + location.hostname.split(".").slice(1).join(".") + ":" + location.port
    : location.origin;
  const out = {origin: location.origin, host};
  async function attempt(name, path, init) {
    try {
      const r = await fetch(host + path, {credentials: "include", ...init});
      out[name] = {status: r.status, type: r.type,
                   body: r.type === "opaque" ? null : (await r.text()).slice(0, 2000)};
    } catch (e) {
      out[name] = {error: String(e)};
    }
  }
  await attempt("servers", "/api/servers");
  await attempt("password", "/api/servers/" + ws + "/password");
  // A "simple" POST is sent without a preflight: only the server can stop it.
  await attempt("post", "/api/jobs", {method: "POST", mode: "no-cors",
                headers: {"content-type": "text/plain"}, body: "{}"});
  try {
    out.parentTitle = window.parent === window ? null : window.parent.document.title;
  } catch (e) {
    out.parentTitle = "blocked: " + e.name;
  }
  return out;
})();
</script></body></html>
"""


class HostileHandler(BaseHTTPRequestHandler):
    """Serves ``HOSTILE_PAGE`` for every GET, as the workspace's upstream."""

    server_version = "hostile"

    def do_GET(self) -> None:
        body = (HOSTILE_PAGE % {"ws": WS}).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HostileUpstream:
    """An HTTP server on the workspace pod's address (kwok runs no container there)."""

    def __init__(self, address: str) -> None:
        self.server = ThreadingHTTPServer((address, PORT), HostileHandler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="hostile")
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _start(tmp_path: Path, name: str, env: dict[str, str], frontend: str | None = None) -> HostApp:
    app = HostApp(tmp_path, env, name=name)
    if frontend is not None:  # the URL people open, which needs the port just chosen
        app.env["FRONTEND_ORIGIN"] = frontend.format(port=app.port)
    return app.start()


@pytest.fixture
def host_apps(kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[dict[str, HostApp]]:
    """Two Host Apps on the test cluster: single and subdomain mode (one runs the operator)."""
    base = {"KUBECONFIG": kubeconfig, "K8S_NAMESPACE": namespace}
    apps: dict[str, HostApp] = {}
    try:
        apps["single"] = _start(tmp_path, "single", base)
        apps["subdomain"] = _start(
            tmp_path,
            "subdomain",
            {
                **base,
                "HOSTAPP_EMBED_OPERATOR": "false",
                "WORKSPACE_ORIGIN": "subdomain",
                "WORKSPACE_ORIGIN_DOMAIN": DOMAIN,
            },
            frontend=f"https://{DOMAIN}:{{port}}",
        )
        yield apps
    finally:
        for app in apps.values():
            app.stop()


def _pod_ip(kube_api: Any, namespace: str, deadline: float) -> str:
    core: Any = k8s_client.CoreV1Api(kube_api)
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace, label_selector=f"guildnet.io/workspace={WS}")
        for pod in pods.items:
            if pod.status and pod.status.pod_ip:
                return str(pod.status.pod_ip)
        time.sleep(0.3)
    pytest.fail("the workspace's pod got no IP", pytrace=False)


def _wait_running(app: HostApp, deadline: float) -> dict[str, Any]:
    detail: Any = None
    while time.monotonic() < deadline:
        status, detail = app.json("GET", f"/api/servers/{WS}")
        if status == 200 and detail["phase"] == "Running":
            return dict(detail)
        time.sleep(0.3)
    pytest.fail(f"{WS} did not reach Running: {detail}", pytrace=False)


def test_a_workspace_page_can_act_as_the_user_only_in_single_origin_mode(
    host_apps: dict[str, HostApp], kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed (the machine's Node.js 20 is needed)"
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    assert (UI_DIR / "node_modules" / "playwright-core").is_dir() and WEB_INDEX.is_file(), (
        "the UI is not built: run `make ui`"
    )
    single, subdomain = host_apps["single"], host_apps["subdomain"]
    # A workspace that could have no origin is refused before anything is created.
    job = {"name": WS, "image": "codercom/code-server:4.139.1"}
    status, refused = subdomain.json("POST", "/api/cluster/two--parts/jobs", job)
    assert status == 400 and refused["field"] == "clusterId", refused
    status, refused = subdomain.json(
        "POST", f"/api/cluster/{'c' * 20}/jobs", {**job, "name": "n" * 50}
    )
    assert status == 400 and refused["field"] == "name", refused
    status, created = single.json(
        "POST", "/api/jobs", {"name": WS, "image": "codercom/code-server:4.139.1"}
    )
    assert status == 202, created
    deadline = time.monotonic() + 120
    upstream = HostileUpstream(_pod_ip(kube_api, namespace, deadline))
    try:
        _wait_running(single, deadline)
        detail = _wait_running(subdomain, deadline)
        ws_origin = f"https://{WS}--default.{DOMAIN}:{subdomain.port}"
        ui = f"https://{DOMAIN}:{subdomain.port}"
        assert detail["proxyUrl"] == ws_origin + "/"
        assert detail["url"] == ws_origin + "/"
        status, secret = single.json("GET", f"/api/servers/{WS}/password")
        assert status == 200, secret
        password = secret["password"]

        cases = [
            {
                "mode": "single",
                "ui": f"{single.url}/#/c/default/servers/{WS}/ide",
                "frame": f"{single.url}/proxy/server/{WS}/",
            },
            {
                "mode": "subdomain",
                "ui": f"{ui}/#/c/default/servers/{WS}/ide",
                "frame": ws_origin + "/",
            },
        ]
        result_file = tmp_path / "origins-result.json"
        env = {
            **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
            "GUILDNET_CASES": json.dumps(cases),
            "GUILDNET_CHROMIUM": str(CHROMIUM),
            "GUILDNET_RESULT": str(result_file),
            "GUILDNET_PROFILE_DIR": str(tmp_path / "chromium-profile"),
        }
        proc = subprocess.run(
            [node, str(SCRIPT)],
            cwd=UI_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    finally:
        upstream.close()
    print(proc.stdout)
    report = json.loads(result_file.read_text()) if result_file.exists() else {}
    logs = "\n".join(f"--- {m} ---\n{a.output()[-3000:]}" for m, a in host_apps.items())
    assert proc.returncode == 0 and report.get("ok"), (
        f"{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}\n{logs}"
    )
    by_mode = {c["mode"]: c for c in report["cases"]}

    # Single origin: the workspace page is the Host App, as far as the browser knows.
    hit = by_mode["single"]["attack"]
    assert hit["origin"] == single.url
    assert hit["servers"]["status"] == 200
    assert WS in hit["servers"]["body"]
    assert hit["password"]["status"] == 200
    assert json.loads(hit["password"]["body"]) == {"password": password}
    assert hit["post"]["status"] in (400, 415), hit["post"]  # the API read the body
    assert hit["parentTitle"] and not hit["parentTitle"].startswith("blocked")

    # Subdomain: the page is framed from its own origin and gets nothing.
    own = by_mode["subdomain"]
    assert own["iframeSrc"] == ws_origin + "/"
    miss = own["attack"]
    assert miss["origin"] == ws_origin
    assert miss["host"] == ui
    for name in ("servers", "password"):
        assert "error" in miss[name] and "Failed to fetch" in miss[name]["error"], miss[name]
        assert password not in json.dumps(miss[name])
    assert miss["post"] == {"status": 0, "type": "opaque", "body": None}
    assert miss["parentTitle"] == "blocked: SecurityError"
    # The Host App refused them itself (CORS alone would have answered and hidden it).
    access = subdomain.output()
    for method, path in (
        ("GET", "/api/servers"),
        ("GET", f"/api/servers/{WS}/password"),
        ("POST", "/api/jobs"),
    ):
        codes = re.findall(rf"method={method} path={re.escape(path)} status=(\d+)", access)
        assert "403" in codes, (method, path, codes)
