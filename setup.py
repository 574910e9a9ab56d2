"""Packaging hook: every wheel carries the browser UI built from ``ui/``.

Metadata lives in setup.cfg; this file only adds the UI build to ``build_py``. A wheel build
(``pip install .``, ``pip wheel .``, ``python -m build``) runs ``npm ci`` and ``npm run build``
in ``ui/`` when ``guildnet/web/index.html`` is missing or older than a UI source, and stops
with a message naming what is missing (Node.js, npm, their version) rather than produce a
wheel without its UI. The sdist carries ``ui/`` sources, not the build, so a wheel built from
it builds the UI too (MANIFEST.in).

Editable installs (``make`` runs ``pip install -e``) serve ``guildnet/web/`` straight from the
checkout: they leave the UI to ``make ui`` and never touch ``ui/node_modules``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import ExecError, PlatformError, SetupError

ROOT = Path(__file__).resolve().parent
UI = ROOT / "ui"
WEB = ROOT / "guildnet" / "web"
UI_CONFIG_FILES = (
    "index.html",
    "docs.html",  # the /api/docs page (Swagger UI)
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
    "tsconfig.node.json",
)
UI_SOURCE_DIRS = ("src", "public")


def ui_sources(ui: Path) -> list[Path]:
    """The files whose change changes the UI build (configuration, sources, public files)."""
    found = [ui / name for name in UI_CONFIG_FILES if (ui / name).is_file()]
    for name in UI_SOURCE_DIRS:
        found.extend(p for p in sorted((ui / name).rglob("*")) if p.is_file())
    return found


def build_reason(index_mtime: float | None, sources: Iterable[tuple[Path, float]]) -> str | None:
    """Why the UI must be built (None: the build in guildnet/web/ is up to date)."""
    if index_mtime is None:
        return "guildnet/web/index.html is missing"
    newer = [path for path, mtime in sources if mtime > index_mtime]
    if newer:
        return f"{newer[0]} is newer than guildnet/web/index.html"
    return None


def minimum_node(package_json: dict[str, object]) -> tuple[int, ...]:
    """The Node.js version ``engines.node`` in ui/package.json asks for (``>=X.Y[.Z]``)."""
    engines = package_json.get("engines")
    spec = engines.get("node", "") if isinstance(engines, dict) else ""
    match = re.fullmatch(r"\s*>=\s*v?(\d+(?:\.\d+)*)\s*", str(spec))
    if match is None:
        raise SetupError(f'ui/package.json: engines.node must read ">=X.Y", not {spec!r}')
    return parse_version(match.group(1))


def parse_version(text: str) -> tuple[int, ...]:
    """``v20.19.1`` -> ``(20, 19, 1)``; a pre-release or build suffix is ignored."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if match is None:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def shown(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def check_tools(
    required: tuple[int, ...],
    which: Callable[[str], str | None] = shutil.which,
    output: Callable[[list[str]], str] | None = None,
) -> tuple[str, str]:
    """Paths of node and npm, or a PlatformError saying which is missing or too old."""
    run = output or _output
    wanted = f"Node.js {shown(required)}+ with npm"
    node = which("node")
    if node is None:
        raise PlatformError(f"building the GuildNet UI needs {wanted}: `node` is not on PATH")
    have = run([node, "--version"]).strip()
    try:
        too_old = parse_version(have) < required
    except ValueError:
        too_old = True
    if too_old:
        raise PlatformError(f"building the GuildNet UI needs {wanted}: {node} is {have!r}")
    npm = which("npm")
    if npm is None:
        raise PlatformError(f"building the GuildNet UI needs {wanted}: `npm` is not on PATH")
    return node, npm


def _output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise PlatformError(f"{' '.join(argv)} failed: {e}") from e


def ensure_ui(ui: Path = UI, web: Path = WEB) -> None:
    """Build the UI into ``web`` unless its build is newer than every source."""
    index = web / "index.html"
    if not ui.is_dir():
        if index.is_file():
            return  # a tree that carries only the build
        raise SetupError(f"neither the UI sources ({ui}) nor a UI build ({index}) are here")
    sources = [(p.relative_to(ui.parent), p.stat().st_mtime) for p in ui_sources(ui)]
    reason = build_reason(index.stat().st_mtime if index.is_file() else None, sources)
    if reason is None:
        return
    required = minimum_node(json.loads((ui / "package.json").read_text()))
    _, npm = check_tools(required)
    print(f"guildnet: building the UI ({reason})", file=sys.stderr, flush=True)
    for argv in ([npm, "ci", "--no-audit", "--no-fund"], [npm, "run", "build"]):
        # npm's output goes to the build log; pip shows it when the build fails.
        if subprocess.run(argv, cwd=ui, stdout=sys.stderr).returncode != 0:
            raise ExecError(f"building the GuildNet UI: `{' '.join(argv[1:])}` in {ui} failed")
    if not index.is_file():
        raise ExecError(f"building the GuildNet UI: the build wrote no {index}")


class BuildPyWithUI(build_py):  # type: ignore[misc]
    """``build_py`` that builds the UI first and refuses a wheel without it."""

    def run(self) -> None:
        if self.editable_mode:
            print(
                "guildnet: editable install serves guildnet/web/ from the checkout; "
                "build the UI with `make ui`",
                file=sys.stderr,
            )
            super().run()
            return
        ensure_ui()
        # Assets are content-hashed: drop the previous build's copies so none linger in build/.
        shutil.rmtree(Path(self.build_lib, "guildnet", "web"), ignore_errors=True)
        self.__dict__.pop("data_files", None)  # listed before the UI build: list again
        super().run()
        built = Path(self.build_lib, "guildnet", "web", "index.html")
        if not built.is_file():
            raise SetupError(f"{built} was not copied: check package_data in setup.cfg")


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithUI})
