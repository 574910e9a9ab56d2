"""parse_spec mirrors the CRD schema; WorkspaceSpec round-trips; names are valid labels.

The hypothesis strategies here (``valid_specs``) are shared by the desired/CRD tests.
"""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.operator import spec as S
from guildnet.operator.spec import SpecError, generate_name, parse_quantity, parse_spec

# --- strategies -------------------------------------------------------------------------

KNOWN_IMAGES = [
    "codercom/code-server:4.139.1",
    "lscr.io/linuxserver/code-server:latest",
    "quay.io/jupyter/base-notebook:lab-4.6.6",
    "jupyter/scipy-notebook",
    "nginx",
    "registry.example.com:5000/team/app@sha256:" + "a" * 64,
    "traefik/whoami:v1.10.3",
]


def _regex(pattern: str) -> st.SearchStrategy[str]:
    """Bounded generators (fast); parse_spec checks their output against the real patterns."""
    return st.from_regex(pattern, fullmatch=True)


images = st.one_of(
    st.sampled_from(KNOWN_IMAGES),
    _regex(r"[a-z0-9][a-z0-9._/-]{0,20}(:[A-Za-z0-9._-]{1,10})?"),
)
env_names = _regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}")
dns_labels = _regex(r"[a-z0-9]([-a-z0-9]{0,6}[a-z0-9])?")
dns_names = st.lists(dns_labels, min_size=1, max_size=3).map(".".join)
secret_refs = st.fixed_dictionaries(
    {"name": dns_names, "key": _regex(r"([-_a-zA-Z0-9]|\.[-_a-zA-Z0-9])[-._a-zA-Z0-9]{0,10}")},
    optional={"optional": st.booleans()},
)
env_values = st.one_of(
    st.fixed_dictionaries({}, optional={"value": st.text(max_size=30)}),
    st.fixed_dictionaries({"valueFrom": st.fixed_dictionaries({"secretKeyRef": secret_refs})}),
)


@st.composite
def env_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(env_names, max_size=6, unique=True))
    return [{"name": n, **draw(env_values)} for n in names]


port_names = _regex(r"([a-z0-9]{1,3}-)?[0-9]{0,2}[a-z][a-z0-9]{0,3}(-[a-z0-9]{1,3})?")


@st.composite
def port_lists(draw: st.DrawFn, min_size: int = 0) -> list[dict[str, Any]]:
    keys = draw(
        st.lists(
            st.tuples(st.integers(1, 65535), st.sampled_from((*S.PROTOCOLS, None))),
            min_size=min_size,
            max_size=5,
            unique_by=lambda t: (t[0], t[1] or "TCP"),
        )
    )
    names = draw(st.lists(port_names, min_size=len(keys), max_size=len(keys), unique=True))
    out = []
    for (number, proto), name in zip(keys, names, strict=True):
        port: dict[str, Any] = {"containerPort": number}
        if proto is not None:
            port["protocol"] = proto
        if draw(st.booleans()):
            port["name"] = name
        out.append(port)
    return out


quantities = st.one_of(
    st.integers(0, 10**6),
    st.sampled_from(["100m", "0.5", "1", "2", "512Mi", "1Gi", "1.5G", "250k", "1e3", ".5", "3"]),
)
resource_names = st.sampled_from(
    ["cpu", "memory", "ephemeral-storage", "nvidia.com/gpu", "example.com/foo"]
)


@st.composite
def resource_specs(draw: st.DrawFn) -> dict[str, Any]:
    requests: dict[str, Any] = draw(st.dictionaries(resource_names, quantities, max_size=4))
    limits: dict[str, Any] = draw(st.dictionaries(resource_names, quantities, max_size=4))
    for key in list(requests) + list(limits):  # the pod rules, as parse_spec enforces them
        for amounts in (requests, limits):
            value = amounts.get(key)
            if key != "cpu" and isinstance(value, str):
                amounts[key] = value if re.fullmatch(S.WHOLE_QUANTITY_PATTERN, value) else "1Gi"
        if "/" in key and key in requests:
            limits[key] = requests[key]
    for key in set(requests) & set(limits):
        if parse_quantity(requests[key]) > parse_quantity(limits[key]):
            requests[key], limits[key] = limits[key], requests[key]
    out: dict[str, Any] = {}
    keep_empty: bool = draw(st.booleans())  # "requests: {}" is valid and means nothing
    if requests or keep_empty:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


label_keys = _regex(
    r"([a-z0-9]{1,5}(\.[a-z0-9]{1,5})?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?"
).filter(lambda k: not k.startswith(S.RESERVED_LABEL_PREFIX) and k not in S.RESERVED_LABEL_KEYS)
label_values = _regex(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,8})?[A-Za-z0-9])?")
exposures = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["ClusterIP", "LoadBalancer", "Ingress"])}),
    st.fixed_dictionaries({"type": st.just("Ingress"), "host": dns_names}),
)
strings = st.lists(st.text(max_size=20), max_size=4)
mount_paths = (
    st.lists(
        st.text(
            alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=12
        ).filter(lambda p: p not in (".", "..")),
        min_size=1,
        max_size=3,
    )
    .map(lambda parts: "/" + "/".join(parts))
    .filter(lambda p: p != "/tmp")
)
storages = st.one_of(
    st.just("none"),
    st.just({"ephemeral": True}),
    st.fixed_dictionaries(
        {},
        optional={
            "size": st.sampled_from(["1Gi", "10Gi", "500Mi", "2G"]),
            "storageClassName": st.sampled_from(["standard", "local-path", "fast.ssd"]),
            "mountPath": mount_paths,
        },
    ),
)
proxies = st.fixed_dictionaries({"pathMode": st.sampled_from(S.PATH_MODES)})


@st.composite
def valid_spec_dicts(draw: st.DrawFn, min_ports: int = 0) -> dict[str, Any]:
    optional = {
        "env": env_lists(),
        "ports": port_lists(min_size=min_ports),
        "args": strings,
        "command": strings,
        "resources": resource_specs(),
        "labels": st.dictionaries(label_keys, label_values, max_size=4),
        "exposure": exposures,
        "proxy": proxies,
        "stopped": st.booleans(),
        "storage": storages,
        "idleTimeoutSeconds": st.integers(0, S.IDLE_TIMEOUT_MAX),
    }
    spec = draw(st.fixed_dictionaries({"image": images}, optional=optional))
    if min_ports and "ports" not in spec:
        spec["ports"] = draw(port_lists(min_size=min_ports))
    return spec


valid_specs = valid_spec_dicts().map(parse_spec)

# --- properties ---------------------------------------------------------------------------


@given(valid_spec_dicts())
@settings(max_examples=100, deadline=None)
def test_valid_specs_parse_and_round_trip(data: dict[str, Any]) -> None:
    spec = parse_spec(data)
    assert parse_spec(spec.to_dict()) == spec
    assert spec.to_dict() == parse_spec(spec.to_dict()).to_dict()


@given(valid_spec_dicts())
def test_to_dict_is_what_the_api_server_stores(data: dict[str, Any]) -> None:
    """Defaults applied (protocol TCP), empty collections dropped, everything else kept."""
    out = parse_spec(data).to_dict()
    assert out["image"] == data["image"]
    for i, port in enumerate(out.get("ports", [])):
        assert port["protocol"] == data["ports"][i].get("protocol", "TCP")
        assert port["containerPort"] == data["ports"][i]["containerPort"]
    assert out.get("env", []) == data.get("env", [])
    assert out.get("args", []) == data.get("args", [])
    assert out.get("labels", {}) == data.get("labels", {})


def test_stopped_is_a_boolean_omitted_when_false() -> None:
    assert parse_spec({"image": "nginx", "stopped": True}).to_dict() == {
        "image": "nginx",
        "stopped": True,
    }
    assert parse_spec({"image": "nginx", "stopped": False}).to_dict() == {"image": "nginx"}
    with pytest.raises(SpecError) as e:
        parse_spec({"image": "nginx", "stopped": "yes"})
    assert e.value.field == "stopped"


def test_nulls_mean_absent() -> None:
    spec = parse_spec({"image": "nginx", "env": None, "ports": None, "exposure": None})
    assert spec.to_dict() == {"image": "nginx"}


def test_proxy_path_mode_round_trips() -> None:
    spec = parse_spec({"image": "nginx", "proxy": {"pathMode": "preserve"}})
    assert spec.proxy is not None and spec.proxy.path_mode == "preserve"
    assert spec.to_dict() == {"image": "nginx", "proxy": {"pathMode": "preserve"}}
    # An empty object means "the image kind decides", like an absent one.
    assert parse_spec({"image": "nginx", "proxy": {}}).to_dict() == {"image": "nginx"}


def test_quantity_parsing() -> None:
    assert parse_quantity("500m") == parse_quantity("0.5")
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("1e3") == parse_quantity("1k") == 1000
    assert parse_quantity(2) == 2


# --- invalid inputs name the right field --------------------------------------------------

INVALID: list[tuple[dict[str, Any], str]] = [
    ({}, "image"),
    ({"image": ""}, "image"),
    ({"image": "bad image"}, "image"),
    ({"image": 5}, "image"),
    ({"image": "x" * 513}, "image"),
    ({"image": "nginx", "bogus": 1}, "bogus"),
    ({"image": "nginx", "env": {}}, "env"),
    ({"image": "nginx", "env": [{"value": "x"}]}, "env[0].name"),
    ({"image": "nginx", "env": [{"name": "1X"}]}, "env[0].name"),
    ({"image": "nginx", "env": [{"name": "A-B"}]}, "env[0].name"),
    ({"image": "nginx", "env": [{"name": "A"}, {"name": "A"}]}, "env[1].name"),
    ({"image": "nginx", "env": [{"name": "A", "value": 3}]}, "env[0].value"),
    ({"image": "nginx", "env": [{"name": "A", "extra": 3}]}, "env[0].extra"),
    (
        {"image": "nginx", "env": [{"name": "A", "value": "v", "valueFrom": {"secretKeyRef": {}}}]},
        "env[0].valueFrom",
    ),
    ({"image": "nginx", "env": [{"name": "A", "valueFrom": {}}]}, "env[0].valueFrom.secretKeyRef"),
    (
        {"image": "nginx", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
        "env[0].valueFrom.secretKeyRef.key",
    ),
    (
        {
            "image": "nginx",
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "S!", "key": "k"}}}],
        },
        "env[0].valueFrom.secretKeyRef.name",
    ),
    (
        {
            "image": "nginx",
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "."}}}],
        },
        "env[0].valueFrom.secretKeyRef.key",
    ),
    (
        {
            "image": "nginx",
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "..k"}}}],
        },
        "env[0].valueFrom.secretKeyRef.key",
    ),
    ({"image": "nginx", "env": [{"name": f"V{i}"} for i in range(201)]}, "env"),
    ({"image": "nginx", "ports": [{}]}, "ports[0].containerPort"),
    ({"image": "nginx", "ports": [{"containerPort": 0}]}, "ports[0].containerPort"),
    ({"image": "nginx", "ports": [{"containerPort": 65536}]}, "ports[0].containerPort"),
    ({"image": "nginx", "ports": [{"containerPort": "80"}]}, "ports[0].containerPort"),
    ({"image": "nginx", "ports": [{"containerPort": True}]}, "ports[0].containerPort"),
    (
        {"image": "nginx", "ports": [{"containerPort": 80}, {"containerPort": 80}]},
        "ports[1].containerPort",
    ),
    ({"image": "nginx", "ports": [{"containerPort": 80, "protocol": "tcp"}]}, "ports[0].protocol"),
    ({"image": "nginx", "ports": [{"containerPort": 80, "name": "HTTP"}]}, "ports[0].name"),
    ({"image": "nginx", "ports": [{"containerPort": 80, "name": "8080"}]}, "ports[0].name"),
    ({"image": "nginx", "ports": [{"containerPort": 80, "name": "a--b"}]}, "ports[0].name"),
    ({"image": "nginx", "ports": [{"containerPort": 80, "name": "a" * 16}]}, "ports[0].name"),
    (
        {
            "image": "nginx",
            "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}],
        },
        "ports[1].name",
    ),
    ({"image": "nginx", "ports": [{"containerPort": 1000 + i} for i in range(21)]}, "ports"),
    ({"image": "nginx", "args": "--x"}, "args"),
    ({"image": "nginx", "args": [1]}, "args[0]"),
    ({"image": "nginx", "command": ["a", None]}, "command[1]"),
    ({"image": "nginx", "resources": {"cpus": {}}}, "resources.cpus"),
    ({"image": "nginx", "resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu"),
    ({"image": "nginx", "resources": {"requests": {"cpu": -1}}}, "resources.requests.cpu"),
    ({"image": "nginx", "resources": {"requests": {"cpu": 0.5}}}, "resources.requests.cpu"),
    ({"image": "nginx", "resources": {"limits": {"gpu": 1}}}, "resources.limits.gpu"),
    (
        {"image": "nginx", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}},
        "resources.requests.cpu",
    ),
    (
        {"image": "nginx", "resources": {"limits": {"kubernetes.io/x": 1}}},
        "resources.limits.kubernetes.io/x",
    ),
    (
        {"image": "nginx", "resources": {"limits": {"hugepages-2Mi": "2Mi"}}},
        "resources.limits.hugepages-2Mi",
    ),
    ({"image": "nginx", "resources": {"requests": {"a.io/gpu": 1}}}, "resources.limits.a.io/gpu"),
    (
        {"image": "nginx", "resources": {"requests": {"a.io/gpu": 1}, "limits": {"a.io/gpu": 2}}},
        "resources.requests.a.io/gpu",
    ),
    (
        {"image": "nginx", "resources": {"limits": {"a.io/gpu": "500m"}}},
        "resources.limits.a.io/gpu",
    ),
    ({"image": "nginx", "resources": {"requests": {"memory": "0.5"}}}, "resources.requests.memory"),
    ({"image": "nginx", "resources": {"limits": {"memory": "1.5Gi"}}}, "resources.limits.memory"),
    ({"image": "nginx", "labels": {"a": 1}}, "labels.a"),
    ({"image": "nginx", "labels": {"a": "-x"}}, "labels.a"),
    ({"image": "nginx", "labels": {"-a": "x"}}, "labels.-a"),
    ({"image": "nginx", "labels": {"a" * 64: "x"}}, "labels." + "a" * 64),
    ({"image": "nginx", "labels": {"guildnet.io/workspace": "x"}}, "labels.guildnet.io/workspace"),
    (
        {"image": "nginx", "labels": {"app.kubernetes.io/managed-by": "me"}},
        "labels.app.kubernetes.io/managed-by",
    ),
    ({"image": "nginx", "exposure": {}}, "exposure.type"),
    ({"image": "nginx", "proxy": "strip"}, "proxy"),
    ({"image": "nginx", "proxy": {"pathMode": "keep"}}, "proxy.pathMode"),
    ({"image": "nginx", "proxy": {"pathMode": 1}}, "proxy.pathMode"),
    ({"image": "nginx", "proxy": {"mode": "strip"}}, "proxy.mode"),
    ({"image": "nginx", "idleTimeoutSeconds": -1}, "idleTimeoutSeconds"),
    ({"image": "nginx", "idleTimeoutSeconds": 2592001}, "idleTimeoutSeconds"),
    ({"image": "nginx", "idleTimeoutSeconds": "30m"}, "idleTimeoutSeconds"),
    ({"image": "nginx", "idleTimeoutSeconds": True}, "idleTimeoutSeconds"),
    ({"image": "nginx", "exposure": {"type": "NodePort"}}, "exposure.type"),
    ({"image": "nginx", "exposure": {"type": "Ingress", "host": "Bad_Host"}}, "exposure.host"),
    ({"image": "nginx", "exposure": {"type": "ClusterIP", "host": "a.b"}}, "exposure.host"),
]


@pytest.mark.parametrize(("data", "field"), INVALID)
def test_invalid_specs_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)


def test_spec_must_be_an_object() -> None:
    with pytest.raises(SpecError):
        parse_spec([])  # type: ignore[arg-type]


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "code-server-7f3k2", "a" * 53, "x1-2"])
def test_valid_names(name: str) -> None:
    assert S.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "1abc", "a_b", "a-", "-a", "a" * 54, None, 3, "a.b"])
def test_invalid_names(name: Any) -> None:
    with pytest.raises(SpecError) as info:
        S.validate_name(name)
    assert info.value.field == "name"


@given(st.one_of(images, st.text(max_size=80)))
def test_generated_names_are_valid(image: str) -> None:
    name = generate_name(image)
    assert S.validate_name(name) == name
    assert re.fullmatch(r".*-[a-z0-9]{5}", name)


@pytest.mark.parametrize(
    ("image", "base"),
    [
        ("codercom/code-server:4.139.1", "code-server"),
        ("quay.io/jupyter/base-notebook:lab-4.6.6", "base-notebook"),
        ("registry:5000/My_App@sha256:abc", "my-app"),
        ("9gag", "ws-9gag"),
        ("", "workspace"),
    ],
)
def test_generated_name_base(image: str, base: str) -> None:
    assert generate_name(image, suffix="7f3k2") == f"{base}-7f3k2"


def test_generated_names_differ() -> None:
    assert len({generate_name("nginx") for _ in range(20)}) > 15
