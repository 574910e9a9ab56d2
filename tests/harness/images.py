"""Locally built workspace images (``make images``): where each archive is and what it is named.

`tests/harness/images/build-images.sh` builds, without any registry, a docker-archive tarball
per image whose embedded reference is exactly the one GuildNet uses (a preset's image, the
pause image containerd's CRI config names, the RethinkDB image). A real kubelet+containerd
tier imports them with ``ctr -n k8s.io images import`` and runs them with no pull. This table
and the script's must agree: ``tests/unit/test_images_table.py`` checks it through
``build-images.sh paths``, and that the references equal the operator's presets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from guildnet.operator.images import PRESETS, RETHINKDB_IMAGE

BUILD_SCRIPT: Final = Path(__file__).resolve().parent / "images" / "build-images.sh"

#: The sandbox image containerd's CRI config names (``sandbox_image``).
PAUSE_IMAGE: Final = "localhost/pause:3.10"


def cache_dir() -> Path:
    """Where the archives live: ``$GUILDNET_IMAGE_CACHE`` or ``~/.cache/guildnet/images``."""
    override = os.environ.get("GUILDNET_IMAGE_CACHE")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "guildnet" / "images"


def full_reference(reference: str) -> str:
    """Docker's normalised name (``rethinkdb:2.4.4`` -> ``docker.io/library/rethinkdb:2.4.4``).

    skopeo writes this form into the archive's ``RepoTags``; containerd stores and CRI looks
    up images by it, so a pod naming the short form finds the imported image.
    """
    first, sep, _rest = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return reference
    if not sep:
        return f"docker.io/library/{reference}"
    return f"docker.io/{reference}"


def _preset_image(preset_id: str) -> str:
    for preset in PRESETS:
        if preset.id == preset_id:
            return preset.image
    raise KeyError(preset_id)


@dataclass(frozen=True)
class LocalImage:
    """One image: its reference (as GuildNet names it), version, and archive file name.

    The ``-rN`` in the file name is the recipe revision: bumping it (here and in the script)
    makes a changed recipe rebuild instead of reusing a stale cached archive.
    """

    name: str
    reference: str
    version: str
    filename: str

    @property
    def full_reference(self) -> str:
        """The name in the archive and in containerd's image store."""
        return full_reference(self.reference)

    @property
    def path(self) -> Path:
        return cache_dir() / self.filename


IMAGES: Final[dict[str, LocalImage]] = {
    i.name: i
    for i in (
        LocalImage("pause", PAUSE_IMAGE, "3.10", "pause-3.10-r1.tar"),
        LocalImage(
            "code-server",
            _preset_image("code-server"),
            "4.139.1",
            "code-server-4.139.1-r1.tar",
        ),
        LocalImage("jupyter", _preset_image("jupyter"), "4.6.6", "jupyter-lab-4.6.6-r1.tar"),
        LocalImage("web-app", _preset_image("web-app"), "2.26.0", "go-httpbin-2.26.0-r1.tar"),
        LocalImage("rethinkdb", RETHINKDB_IMAGE, "2.4.4", "rethinkdb-2.4.4-r1.tar"),
    )
}


class ImageArchiveMissing(FileNotFoundError):
    """An image archive has not been built: the message says how to build it."""


def archive(name: str) -> Path:
    """The archive of image ``name``; raises `ImageArchiveMissing` naming ``make images``."""
    try:
        image = IMAGES[name]
    except KeyError:
        raise KeyError(f"unknown image {name!r}; known: {', '.join(IMAGES)}") from None
    path = image.path
    if not path.is_file():
        raise ImageArchiveMissing(
            f"image archive for {image.reference} not found at {path}: run `make images` "
            f"(or tests/harness/images/build-images.sh {name})"
        )
    return path


def all_archives() -> dict[str, Path]:
    """Every image's archive by reference (for ``ctr images import``); raises if any is missing."""
    return {image.reference: archive(name) for name, image in IMAGES.items()}
