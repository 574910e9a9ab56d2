"""The apply-patch body encoder: YAML-safe for any JSON string."""

from __future__ import annotations

import json

import yaml
from hypothesis import given
from hypothesis import strategies as st

from guildnet.cluster.rest import apply_body


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5))
def test_apply_body_is_yaml_that_means_the_same(obj: dict[str, str]) -> None:
    raw = apply_body(obj)
    assert yaml.safe_load(raw.decode()) == obj
    assert json.loads(raw) == obj


def test_astral_characters_stay_raw() -> None:
    assert apply_body({"a": "\U0001f600"}) == '{"a":"\U0001f600"}'.encode()
