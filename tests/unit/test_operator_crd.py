"""The CRD declares every field GuildNet writes (nothing pruned) and agrees with parse_spec."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings

from guildnet.operator import constants as C
from guildnet.operator import spec as S
from guildnet.operator.status import compute_status
from tests.unit.test_operator_spec import valid_spec_dicts
from tests.unit.test_operator_status import CASES

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "workspaces.guildnet.io.yaml"
CRD = yaml.safe_load(CRD_PATH.read_text())
(VERSION,) = CRD["spec"]["versions"]
ROOT = VERSION["schema"]["openAPIV3Schema"]
SPEC = ROOT["properties"]["spec"]
STATUS = ROOT["properties"]["status"]


def assert_declared(value: Any, schema: dict[str, Any], path: str) -> None:
    """Every key in ``value`` is declared (so survives pruning) and its type fits."""
    assert "x-kubernetes-preserve-unknown-fields" not in schema, path
    if schema.get("x-kubernetes-int-or-string"):
        assert isinstance(value, int | str) and not isinstance(value, bool), path
        return
    kind = schema.get("type")
    if isinstance(value, dict):
        assert kind == "object", path
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                assert_declared(item, props[key], f"{path}.{key}")
            else:
                assert isinstance(extra, dict), f"{path}.{key} is not declared: it would be pruned"
                assert_declared(item, extra, f"{path}.{key}")
        for key in schema.get("required", []):
            assert key in value, f"{path}.{key} is required by the CRD"
    elif isinstance(value, list):
        assert kind == "array", path
        for i, item in enumerate(value):
            assert_declared(item, schema["items"], f"{path}[{i}]")
    elif isinstance(value, bool):
        assert kind == "boolean", path
    elif isinstance(value, int):
        assert kind == "integer", path
    else:
        assert isinstance(value, str) and kind == "string", path
        if "enum" in schema:
            assert value in schema["enum"], path


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for key, sub in (schema.get("properties") or {}).items():
        out += walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        out += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += walk(schema["additionalProperties"], f"{path}{{}}")
    return out


def test_names_and_version() -> None:
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["metadata"]["name"] == C.CRD_NAME == "workspaces.guildnet.io"
    spec = CRD["spec"]
    assert spec["group"] == C.GROUP and spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (C.KIND, C.PLURAL, C.SINGULAR)
    assert names["shortNames"] == ["ws"]
    assert VERSION["name"] == C.VERSION and VERSION["served"] and VERSION["storage"]
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = {c["name"]: (c["jsonPath"], c["type"]) for c in VERSION["additionalPrinterColumns"]}
    assert columns == {
        "Phase": (".status.phase", "string"),
        "Image": (".spec.image", "string"),
        "Ready": (".status.readyReplicas", "integer"),
        "URL": (".status.url", "string"),
        "Age": (".metadata.creationTimestamp", "date"),
    }


def test_nothing_preserves_unknown_fields() -> None:
    for path, schema in walk(ROOT):
        assert "x-kubernetes-preserve-unknown-fields" not in schema, path
        if schema.get("type") == "object" and path not in ("", ".metadata"):
            assert "properties" in schema or "additionalProperties" in schema, path


@given(valid_spec_dicts())
@settings(max_examples=150, deadline=None)
def test_every_spec_field_is_declared(data: dict[str, Any]) -> None:
    assert_declared(S.parse_spec(data).to_dict(), SPEC, "spec")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_status_field_is_declared(case: tuple[Any, ...]) -> None:
    _id, ws, dep, pods, events, *_ = case
    status = compute_status(ws, dep, pods, events, datetime(2025, 1, 1, tzinfo=UTC))
    assert_declared(status, STATUS, "status")
    assert set(STATUS["properties"]["phase"]["enum"]) == {
        "Pending", "Starting", "Running", "Stopped", "Failed", "Terminating"
    }  # fmt: skip


def prop(path: str) -> dict[str, Any]:
    node = SPEC
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def test_limits_and_patterns_match_parse_spec() -> None:
    """The numbers and regexes in spec.py are the CRD's, so the API's 400s match the server's."""
    expected = {
        "image": (S.IMAGE_PATTERN, S.IMAGE_MAX_LEN),
        "env.[].name": (S.ENV_NAME_PATTERN, S.ENV_NAME_MAX_LEN),
        "env.[].valueFrom.secretKeyRef.name": (S.DNS_SUBDOMAIN_PATTERN, S.SECRET_NAME_MAX_LEN),
        "env.[].valueFrom.secretKeyRef.key": (S.SECRET_KEY_PATTERN, S.SECRET_KEY_MAX_LEN),
        "ports.[].name": (S.PORT_NAME_PATTERN, S.PORT_NAME_MAX_LEN),
        "exposure.host": (S.DNS_SUBDOMAIN_PATTERN, S.HOST_MAX_LEN),
    }
    for path, (pattern, max_len) in expected.items():
        node = prop(path)
        assert node["pattern"] == pattern, path
        assert node["maxLength"] == max_len, path
    assert prop("image")["minLength"] == 1
    assert SPEC["required"] == ["image"]
    assert prop("env")["maxItems"] == S.ENV_MAX_ITEMS
    assert prop("env")["x-kubernetes-list-map-keys"] == ["name"]
    assert prop("ports")["maxItems"] == S.PORTS_MAX_ITEMS
    assert prop("ports")["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    port = prop("ports.[].containerPort")
    assert (port["minimum"], port["maximum"]) == (1, 65535)
    assert prop("ports.[].protocol")["enum"] == list(S.PROTOCOLS)
    assert prop("ports.[].protocol")["default"] == "TCP"
    assert prop("args")["maxItems"] == prop("command")["maxItems"] == S.ARGS_MAX_ITEMS
    assert prop("exposure.type")["enum"] == list(S.EXPOSURE_TYPES)
    assert prop("proxy.pathMode")["enum"] == list(S.PATH_MODES)
    idle = prop("idleTimeoutSeconds")
    assert (idle["minimum"], idle["maximum"]) == (0, S.IDLE_TIMEOUT_MAX)
    labels = prop("labels")
    assert labels["maxProperties"] == S.LABELS_MAX_PROPERTIES
    value = labels["additionalProperties"]
    assert (value["pattern"], value["maxLength"]) == (S.LABEL_VALUE_PATTERN, S.LABEL_VALUE_MAX_LEN)
    label_rules = " ".join(r["rule"] for r in labels["x-kubernetes-validations"])
    assert S.LABEL_KEY_PATTERN.replace("\\", "\\\\") in label_rules
    assert f"k.size() <= {S.LABEL_KEY_MAX_LEN}" in label_rules
    assert f"k.indexOf('/') <= {S.LABEL_PREFIX_MAX_LEN}" in label_rules
    assert f"startsWith('{S.RESERVED_LABEL_PREFIX}')" in label_rules
    for key in S.RESERVED_LABEL_KEYS:
        assert f"k != '{key}'" in label_rules
    for which in ("requests", "limits"):
        amounts = prop(f"resources.{which}")
        assert amounts["maxProperties"] == S.RESOURCES_MAX_PROPERTIES
        value = amounts["additionalProperties"]
        assert value["x-kubernetes-int-or-string"] is True
        assert (value["pattern"], value["maxLength"]) == (S.QUANTITY_PATTERN, S.QUANTITY_MAX_LEN)
        assert value["minimum"] == 0
        rules = " ".join(r["rule"] for r in amounts["x-kubernetes-validations"])
        assert S.RESOURCE_NAME_PATTERN in rules
        assert S.WHOLE_QUANTITY_PATTERN in rules
        assert f"k.size() <= {S.RESOURCE_NAME_MAX_LEN}" in rules


def test_name_rule_matches_validate_name() -> None:
    (rule,) = ROOT["x-kubernetes-validations"]
    assert S.NAME_PATTERN in rule["rule"]
    assert f"size() <= {S.MAX_NAME_LEN}" in rule["rule"]


def test_patterns_are_anchored_and_compile() -> None:
    for path, schema in walk(ROOT):
        if "pattern" in schema:
            assert schema["pattern"].startswith("^") and schema["pattern"].endswith("$"), path
            re.compile(schema["pattern"])


def test_storage_rules_match_parse_spec() -> None:
    storage = SPEC["properties"]["storage"]["properties"]
    assert storage["size"]["pattern"] == S.SIZE_PATTERN
    assert storage["mountPath"]["pattern"] == S.MOUNT_PATH_PATTERN
    assert storage["mountPath"]["maxLength"] == S.MOUNT_PATH_MAX_LEN
    assert storage["storageClassName"]["pattern"] == S.DNS_SUBDOMAIN_PATTERN
    assert SPEC["properties"]["stopped"]["type"] == "boolean"
