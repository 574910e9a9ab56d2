"""The locally built images' table agrees with the operator's presets and with the build script.

A drift here would mean `make images` builds an image under a name no Workspace uses (the pod
would try a registry pull and fail), so both sides are checked, not copied.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

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
