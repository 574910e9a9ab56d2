"""``GET /api/docs`` in Debian's Chromium: the API reference renders from this origin.

A real Host App (twistd, no cluster needed) serves the page built by ``make ui``
(Swagger UI from swagger-ui-dist, bundled by Vite) and ``/api/openapi.json``;
``docs.e2e.mjs`` (playwright-core) loads the page and checks that the operations of the
description render, an operation opens with its responses, the browser console has no
errors (a CSP violation would be one) and no request leaves the origin (no CDN, no
validator badge). The screenshot lands in ``test-output/api-docs/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.hostapp import HostApp

REPO = Path(__file__).resolve().parents[2]
UI_DIR = REPO / "ui"
DOCS_PAGE = REPO / "guildnet" / "web" / "docs.html"
SCRIPT = Path(__file__).with_name("docs.e2e.mjs")
CHROMIUM = Path(os.environ.get("GUILDNET_CHROMIUM", "/usr/bin/chromium"))
SHOT = REPO / "test-output" / "api-docs" / "api-docs.png"
TIMEOUT = 120.0

pytestmark = pytest.mark.integration


def _need(condition: bool, message: str) -> None:
    if not condition:
        pytest.fail(message, pytrace=False)


@pytest.fixture
def docs_app(tmp_path: Path) -> Iterator[HostApp]:
    app = HostApp(tmp_path, {"KUBECONFIG": str(tmp_path / "no-cluster")})
    with app.running(clean_log=False):
        yield app


def test_api_docs_page_renders_the_description(docs_app: HostApp, tmp_path: Path) -> None:
    node = shutil.which("node")
    _need(node is not None, "node is not installed (the machine's Node.js 20 is needed)")
    _need(CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium")
    _need(
        (UI_DIR / "node_modules" / "playwright-core").is_dir() and DOCS_PAGE.is_file(),
        "the UI is not built: run `make ui` (cd ui && npm ci && npm run build)",
    )
    status, _, raw = docs_app.request("GET", "/api/openapi.json")
    assert status == 200
    doc = json.loads(raw)
    result_file = tmp_path / "docs-result.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "GUILDNET_URL": docs_app.url,
        "GUILDNET_CHROMIUM": str(CHROMIUM),
        "GUILDNET_SCREENSHOT": str(SHOT),
        "GUILDNET_RESULT": str(result_file),
        "GUILDNET_PROFILE_DIR": str(tmp_path / "chromium-profile"),
    }
    proc = subprocess.run(
        [str(node), str(SCRIPT)],
        cwd=UI_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    report = json.loads(result_file.read_text()) if result_file.exists() else {}
    print({k: v for k, v in report.items() if k != "paths"})
    if proc.returncode != 0 or not report.get("ok"):
        pytest.fail(
            f"browser run failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n"
            f"{proc.stderr[-3000:]}\n--- Host App log ---\n{docs_app.output()[-4000:]}",
            pytrace=False,
        )
    assert report["status"] == 200
    assert report["consoleErrors"] == [], report["consoleErrors"]
    assert report["foreignRequests"] == [], report["foreignRequests"]
    assert report["title"].startswith(doc["info"]["title"]), report["title"]
    # Every operation of the document is on the page (one block per method and path).
    operations = sum(
        1 for item in doc["paths"].values() for method in item if method != "parameters"
    )
    assert report["operations"] == operations, (report["operations"], operations)
    shown = {p.replace("\u200b", "") for p in report["paths"]}
    assert {"/api/servers/{server_id}", "/sse/servers", "/proxy/{proxy_path}"} <= shown
    assert {"200", "404", "500"} <= set(report["openResponses"]), report["openResponses"]
    tags = {t.split("\n")[0].strip() for t in report["tags"]}
    assert {"workspaces", "db", "clusters", "proxy"} <= tags, tags
