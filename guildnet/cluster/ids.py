"""Cluster ids are lower-case DNS labels: they name directories and URL parts."""

from __future__ import annotations

import re

DEFAULT_CLUSTER_ID = "default"
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class InvalidClusterId(ValueError):
    pass


def validate_cluster_id(value: object) -> str:
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise InvalidClusterId(
            "cluster id must be a lower-case DNS label (a-z, 0-9 and '-', 1-63 characters, "
            "starting and ending with a letter or digit)"
        )
    return value
