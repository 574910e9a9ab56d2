"""setup.py's UI-build decisions: when a wheel build must build the UI, and what it needs.

setup.py is loaded under another name, so its ``setup()`` call does not run. The end-to-end
proof (a wheel that serves the UI) is tests/functional/test_wheel.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guildnet_setup", REPO / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup_py = load_setup()


def test_build_reason_names_the_missing_build_or_the_newer_source() -> None:
    src = Path("ui/src/App.tsx")
    assert setup_py.build_reason(None, []) == "guildnet/web/index.html is missing"
    assert setup_py.build_reason(100.0, [(src, 50.0), (Path("ui/package.json"), 100.0)]) is None
    reason = setup_py.build_reason(100.0, [(Path("ui/index.html"), 1.0), (src, 100.5)])
    assert reason == "ui/src/App.tsx is newer than guildnet/web/index.html"


def test_ui_sources_are_the_checkout_config_and_src_files_only() -> None:
    sources = {p.relative_to(REPO).as_posix() for p in setup_py.ui_sources(REPO / "ui")}
    assert {"ui/package-lock.json", "ui/vite.config.ts", "ui/index.html", "ui/docs.html"} <= sources
    assert "ui/src/main.tsx" in sources
    assert not any("node_modules" in s for s in sources)


def test_minimum_node_comes_from_package_json_engines() -> None:
    assert setup_py.minimum_node({"engines": {"node": ">=20.19"}}) == (20, 19)
    assert setup_py.minimum_node({"engines": {"node": " >= v22.1.3 "}}) == (22, 1, 3)
    for bad in ({}, {"engines": {"node": "^20"}}, {"engines": "20"}):
        with pytest.raises(setup_py.SetupError, match=r"engines\.node"):
            setup_py.minimum_node(bad)


def test_the_repository_asks_for_the_node_the_readme_names() -> None:
    package = json.loads((REPO / "ui" / "package.json").read_text())
    assert setup_py.minimum_node(package) == (20, 19)


@pytest.mark.parametrize(
    ("text", "version"),
    [("v20.20.2\n", (20, 20, 2)), ("20.19.0-nightly", (20, 19, 0)), ("v22", (22,))],
)
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert setup_py.parse_version(text) == version


def fake_which(found: dict[str, str]):
    return found.get


def test_check_tools_names_what_is_missing_or_too_old() -> None:
    both = {"node": "/x/node", "npm": "/x/npm"}
    ok = setup_py.check_tools((20, 19), fake_which(both), lambda argv: "v20.19.0\n")
    assert ok == ("/x/node", "/x/npm")
    with pytest.raises(setup_py.PlatformError, match=r"Node\.js 20\.19\+ .*`node` is not on PATH"):
        setup_py.check_tools((20, 19), fake_which({}), lambda argv: "")
    with pytest.raises(setup_py.PlatformError, match=r"/x/node is 'v18\.19\.0'"):
        setup_py.check_tools((20, 19), fake_which(both), lambda argv: "v18.19.0\n")
    with pytest.raises(setup_py.PlatformError, match=r"/x/node is 'weird'"):
        setup_py.check_tools((20, 19), fake_which(both), lambda argv: "weird")
    with pytest.raises(setup_py.PlatformError, match=r"`npm` is not on PATH"):
        setup_py.check_tools((20, 19), fake_which({"node": "/x/node"}), lambda argv: "v20.20.2")


def test_check_tools_runs_the_real_node_when_there_is_one() -> None:
    """The machine's own node (CI installs Node 20): found, version read, accepted."""
    node, npm = setup_py.check_tools((20, 19))
    assert os.access(node, os.X_OK) and os.access(npm, os.X_OK)


def test_ensure_ui_accepts_a_tree_with_only_the_build(tmp_path: Path) -> None:
    web = tmp_path / "guildnet" / "web"
    web.mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html>")
    setup_py.ensure_ui(tmp_path / "ui", web)  # no ui/: the shipped build is used as it is


def test_ensure_ui_refuses_a_tree_with_neither_sources_nor_build(tmp_path: Path) -> None:
    with pytest.raises(setup_py.SetupError, match="neither the UI sources"):
        setup_py.ensure_ui(tmp_path / "ui", tmp_path / "guildnet" / "web")


def test_ensure_ui_leaves_an_up_to_date_build_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No node is asked for (PATH is empty) while the build is newer than every source."""
    ui, web = tmp_path / "ui", tmp_path / "guildnet" / "web"
    (ui / "src").mkdir(parents=True)
    web.mkdir(parents=True)
    (ui / "package.json").write_text('{"engines": {"node": ">=20.19"}}')
    (ui / "src" / "main.tsx").write_text("")
    index = web / "index.html"
    index.write_text("<!doctype html>")
    for path in (ui / "package.json", ui / "src" / "main.tsx"):
        os.utime(path, (1000, 1000))
    os.utime(index, (2000, 2000))
    monkeypatch.setenv("PATH", "")
    setup_py.ensure_ui(ui, web)
    os.utime(ui / "src" / "main.tsx", (3000, 3000))
    with pytest.raises(setup_py.PlatformError, match="`node` is not on PATH"):
        setup_py.ensure_ui(ui, web)
