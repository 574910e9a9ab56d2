"""Cross-site request forgery in a real browser: a page on another origin cannot make the
user's browser stop or delete workspaces, while the UI and a script can.

The browser run is ``csrf.e2e.mjs`` (see it for the steps); this side starts the Host
App with the test cluster as its default cluster, launches the workspaces, and checks
afterwards, from the Host App's access log, that the forged requests did reach it and
were refused (403) rather than merely lost, and that a script (no Origin, no
Sec-Fetch-Site) can still launch and delete.

Needs what tests/e2e/test_ui_e2e.py needs (``make ui``, Debian's ``chromium``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_ui_e2e import CHROMIUM, SCREENSHOTS, UI_DIR, WEB_INDEX, _need
from tests.harness.hostapp import HostApp

SCRIPT = Path(__file__).with_name("csrf.e2e.mjs")
WORKSPACES = ("csrf-victim", "csrf-two", "csrf-three")

pytestmark = pytest.mark.integration


@pytest.fixture
def host_app(namespace: str, kubeconfig: str, tmp_path: Path) -> Iterator[HostApp]:
    app = HostApp(tmp_path, {"KUBECONFIG": kubeconfig, "K8S_NAMESPACE": namespace})
    with app.running(clean_log=False):
        yield app


def refused(log: str, method: str, path: str) -> int:
    return len(re.findall(rf"method={method} path={re.escape(path)} status=403 ", log))


def test_cross_site_pages_cannot_act_as_the_user(host_app: HostApp, tmp_path: Path) -> None:
    node = shutil.which("node")
    _need(node is not None, "node is not installed (the machine's Node.js 20 is needed)")
    _need(CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium")
    _need(
        (UI_DIR / "node_modules" / "playwright-core").is_dir() and WEB_INDEX.is_file(),
        "the UI is not built: run `make ui` (cd ui && npm ci && npm run build)",
    )
    for name in WORKSPACES:
        status, body = host_app.json("POST", "/api/jobs", {"image": "nginx:1.27", "name": name})
        assert status == 202, body
    result_file = tmp_path / "csrf-result.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "GUILDNET_URL": host_app.url,
        "GUILDNET_CHROMIUM": str(CHROMIUM),
        "GUILDNET_RESULT": str(result_file),
        "GUILDNET_PROFILE_DIR": str(tmp_path / "chromium-profile"),
        "GUILDNET_SCREENSHOTS": str(SCREENSHOTS),
        "GUILDNET_WORKSPACES": ",".join(WORKSPACES),
    }
    proc = subprocess.run(
        [str(node), str(SCRIPT)], cwd=UI_DIR, env=env, capture_output=True, text=True, timeout=240
    )
    print(proc.stdout)
    report = json.loads(result_file.read_text()) if result_file.exists() else {}
    assert proc.returncode == 0 and report.get("ok"), (
        f"browser run failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n"
        f"{proc.stderr[-3000:]}\n--- Host App log ---\n{host_app.output()[-6000:]}"
    )
    assert report["whoami"].split()[-3:] == ["Local", "user", "admin"], report

    log = host_app.output()
    # The form POST and the no-cors fetch reached the Host App and were refused; the
    # DELETE never left the browser (its CORS preflight was refused).
    assert refused(log, "POST", "/api/admin/stop-all") == 2, log[-4000:]
    assert refused(log, "POST", "/api/jobs") == 1, log[-4000:]
    assert re.search(r"method=OPTIONS path=/api/servers/csrf-victim status=403 ", log)
    assert not re.search(r"method=DELETE path=/api/servers/csrf-victim status=403 ", log)
    # The UI's own requests passed: one DELETE and one stop-all, both 200.
    assert re.search(r"method=DELETE path=/api/servers/csrf-victim status=200 ", log)
    assert re.search(r"method=POST path=/api/admin/stop-all status=200 ", log)

    # A script (neither header) may launch and delete.
    status, body = host_app.json("POST", "/api/jobs", {"image": "nginx:1.27", "name": "by-script"})
    assert status == 202, body
    status, body = host_app.json("DELETE", "/api/servers/by-script")
    assert status == 200, body
