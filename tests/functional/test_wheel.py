"""The wheel built from this checkout carries the UI, and a Host App installed from it serves it.

What a user of the README's systemd section does: build the wheel (``pip wheel .``, which runs
the UI build of setup.py when ``guildnet/web/`` is missing or stale, as ``make ui`` would),
``pip install`` it into a fresh venv (dependencies from the registry, through pip's cache), and
start that venv's ``twistd guildnet`` with no cluster. Slow (minutes on a cold pip cache), so
it is one test; ``make unit`` runs it.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.functional.test_twistd import Daemons, tls_context

REPO = Path(__file__).resolve().parents[2]
STEP_TIMEOUT = 900


def run(argv: list[str | Path], cwd: Path) -> str:
    """Run one build/install step; its output is the failure message."""
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout[-6000:]}"
    return result.stdout


def https_get(port: int, path: str, cafile: Path) -> tuple[int, str, bytes]:
    """Status, content type and body of GET ``path``, verified against the daemon's certificate."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tls_context(cafile))
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.timeout(3 * STEP_TIMEOUT)
def test_wheel_installed_into_a_fresh_venv_serves_the_ui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)  # nothing but the new venv may supply guildnet
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, REPO], tmp_path)
    (wheel,) = dist.glob("guildnet-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "guildnet/web/index.html" in names
        index = zf.read("guildnet/web/index.html")
        assets = re.findall(r'(?:src|href)="/(assets/[^"]+)"', index.decode())
        script = next(a for a in assets if a.endswith(".js"))
        script_body = zf.read(f"guildnet/web/{script}")
        docs_page = zf.read("guildnet/web/docs.html")  # /api/docs (Swagger UI)
    assert {f"guildnet/web/{a}" for a in assets} <= names, (assets, sorted(names))
    # Exactly the build the wheel step made: no earlier build's assets, no .gitignore/.gitkeep.
    web = REPO / "guildnet" / "web"
    built = {
        f"guildnet/web/{p.relative_to(web).as_posix()}"
        for p in web.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    assert {n for n in names if n.startswith("guildnet/web/")} == built

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", wheel], tmp_path)
    where = run([python, "-c", "import guildnet; print(guildnet.__file__)"], tmp_path)
    assert Path(where.strip()).is_relative_to(venv), where

    daemons = Daemons(tmp_path, twistd=venv / "bin" / "twistd")
    try:
        daemon = daemons.start()
        crt = tmp_path / "state" / "certs" / "selfsigned.crt"
        status, ctype, body = https_get(daemon.port, "/", crt)
        assert (status, ctype, body) == (200, "text/html; charset=utf-8", index)
        assert b'<div id="root">' in body
        status, ctype, body = https_get(daemon.port, f"/{script}", crt)
        assert (status, ctype) == (200, "text/javascript; charset=utf-8")
        assert body == script_body
        status, ctype, body = https_get(daemon.port, "/api/docs", crt)
        assert (status, ctype, body) == (200, "text/html; charset=utf-8", docs_page)
        assert b'id="swagger-ui"' in body
    finally:
        daemons.close()
    assert "Traceback" not in daemon.output(), daemon.output()
