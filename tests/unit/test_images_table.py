"""The locally built images' table agrees with the operator's presets and with the build script.

A drift here would mean `make images` builds an image under a name no Workspace uses (the pod
would try a registry pull and fail), so both sides are checked, not copied.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import pytest

from guildnet.operator.images import PRESETS, RETHINKDB_IMAGE
from tests.harness import images


def test_every_preset_image_is_built_locally() -> None:
    built = {i.reference for i in images.IMAGES.values()}
    for preset in PRESETS:
        assert preset.image in built, preset.id
        assert images.IMAGES[preset.id].reference == preset.image


def test_rethinkdb_and_pause_references() -> None:
    assert images.IMAGES["rethinkdb"].reference == RETHINKDB_IMAGE == "rethinkdb:2.4.4"
    assert images.IMAGES["pause"].reference == "localhost/pause:3.10"


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("rethinkdb:2.4.4", "docker.io/library/rethinkdb:2.4.4"),
        ("codercom/code-server:4.139.1", "docker.io/codercom/code-server:4.139.1"),
        ("quay.io/jupyter/base-notebook:lab-4.6.6", "quay.io/jupyter/base-notebook:lab-4.6.6"),
        ("localhost/pause:3.10", "localhost/pause:3.10"),
        ("registry:5000/x/y:1", "registry:5000/x/y:1"),
    ],
)
def test_full_reference(short: str, full: str) -> None:
    assert images.full_reference(short) == full


def test_no_reference_is_latest_or_untagged() -> None:
    # `:latest` (or no tag) makes Kubernetes default imagePullPolicy to Always: a pull with
    # no registry fails even though the image was imported.
    for image in images.IMAGES.values():
        tail = image.reference.rsplit("/", 1)[-1]
        assert ":" in tail, image.reference
        assert not tail.endswith(":latest"), image.reference
        assert image.version in image.reference, image.reference


def test_build_script_table_matches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GUILDNET_IMAGE_CACHE", str(tmp_path))
    out = subprocess.run(
        ["bash", str(images.BUILD_SCRIPT), "paths"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    rows = [line.split() for line in out.splitlines()]
    script = {name: (ref, Path(path)) for name, ref, path in rows}
    assert set(script) == set(images.IMAGES)
    for name, image in images.IMAGES.items():
        assert script[name] == (image.reference, tmp_path / image.filename), name


def test_archive_missing_names_make_images(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GUILDNET_IMAGE_CACHE", str(tmp_path))
    with pytest.raises(images.ImageArchiveMissing, match="make images"):
        images.archive("pause")
    with pytest.raises(KeyError, match="unknown image"):
        images.archive("nope")
    (tmp_path / images.IMAGES["pause"].filename).write_bytes(b"x")
    assert images.archive("pause") == tmp_path / "pause-3.10-r1.tar"
    with pytest.raises(images.ImageArchiveMissing, match="code-server"):
        images.all_archives()
    for image in images.IMAGES.values():
        (tmp_path / image.filename).write_bytes(b"x")
    assert images.all_archives() == {
        i.reference: tmp_path / i.filename for i in images.IMAGES.values()
    }


def _start_notebook() -> Any:
    path = images.BUILD_SCRIPT.parent / "start_notebook.py"
    spec = importlib.util.spec_from_file_location("start_notebook", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_start_notebook_command_follows_docker_stacks() -> None:
    command = _start_notebook().command
    base = ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]
    assert command({}, []) == base
    env = {"NOTEBOOK_ARGS": "--ServerApp.base_url='/proxy/a b/' --debug"}
    words = ["--ServerApp.base_url=/proxy/a b/", "--debug"]
    assert command(env, ["--x=1"]) == [*base, *words, "--x=1"]
    assert command({"DOCKER_STACKS_JUPYTER_CMD": "server", "JUPYTER_PORT": "9999"}, [])[:4] == [
        "jupyter",
        "server",
        "--ip=0.0.0.0",
        "--port=9999",
    ]
