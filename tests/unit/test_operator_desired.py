"""desired_objects: any valid Workspace gives hardened, labelled, owned, hash-stamped manifests."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.operator import constants as C
from guildnet.operator.desired import (
    Desired,
    DesiredError,
    OperatorConfig,
    desired_objects,
    first_port,
    manifest_hash,
    password_env,
    password_required,
    path_mode,
    proxy_url,
    secret_password,
    service_dns,
)
from guildnet.operator.images import image_defaults, image_kind
from guildnet.operator.spec import SpecError, parse_spec
from guildnet.operator.status import compute_status
from guildnet.proxy.origins import WorkspaceOrigins
from guildnet.proxy.paths import workspace_prefix
from tests.unit.test_operator_spec import dns_names, valid_spec_dicts

NAMES = st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
configs = st.builds(
    OperatorConfig,
    namespace=st.sampled_from(["default", "team-a"]),
    cluster_id=st.sampled_from(["default", "prod"]),
    workspace_lb=st.booleans(),
    workspace_lb_pool=st.one_of(st.none(), st.just("pool-a")),
    workspace_domain=st.one_of(st.none(), dns_names),
    ingress_class_name=st.one_of(st.none(), st.just("nginx")),
    cert_manager_issuer=st.one_of(st.none(), st.just("letsencrypt")),
)


def workspace(name: str, spec: dict[str, Any], *, ns: str | None = "ns1", gen: int = 1) -> dict:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "generation": gen}
    if ns:
        meta["namespace"] = ns
    return {
        "apiVersion": "guildnet.io/v1alpha1",
        "kind": "Workspace",
        "metadata": meta,
        "spec": spec,
    }


def build(ws: dict, cfg: OperatorConfig) -> Desired:
    """desired_objects, skipping the (documented) Ingress-without-host error."""
    try:
        return desired_objects(ws, cfg, "s3cret-pw")
    except DesiredError as e:
        assert "Ingress" in str(e)
        spec = parse_spec(ws["spec"])
        assert spec.exposure is not None and spec.exposure.type == "Ingress"
        assert spec.exposure.host is None and not cfg.workspace_domain
        raise


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


@given(NAMES, valid_spec_dicts(), configs)
@settings(max_examples=100, deadline=None)
def test_any_valid_workspace_gives_a_hardened_deployment(name, spec_dict, cfg) -> None:
    ws = workspace(name, spec_dict)
    try:
        d = build(ws, cfg)
    except DesiredError:
        return
    spec = parse_spec(spec_dict)
    dep = d.deployment
    assert dep["apiVersion"] == "apps/v1" and dep["kind"] == "Deployment"
    assert dep["metadata"]["name"] == name and dep["metadata"]["namespace"] == "ns1"
    assert dep["spec"]["replicas"] == (0 if spec.stopped else 1)
    assert dep["spec"]["selector"] == {"matchLabels": {C.LABEL_WORKSPACE: name}}
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for key, value in spec.labels:
        assert labels[key] == value
    assert labels[C.LABEL_WORKSPACE] == name
    assert labels[C.LABEL_MANAGED_BY] == "guildnet"
    assert labels[C.LABEL_NAME] == "workspace"
    ps = pod["spec"]
    assert ps["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert ps["automountServiceAccountToken"] is False
    assert ps["enableServiceLinks"] is False
    taints = {(t["key"], t["effect"], t["operator"]) for t in ps["tolerations"]}
    assert ("node-role.kubernetes.io/control-plane", "NoSchedule", "Exists") in taints
    assert ("node-role.kubernetes.io/master", "NoSchedule", "Exists") in taints
    (c,) = ps["containers"]
    assert c["image"] == spec.image
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    assert "privileged" not in sc and "startupProbe" not in c

    ports = c["ports"]
    if spec.ports:
        assert [(p["containerPort"], p["protocol"]) for p in ports] == [
            (p.container_port, p.protocol) for p in spec.ports
        ]
        for mine, theirs in zip(ports, spec.ports, strict=True):
            if theirs.name:
                assert mine["name"] == theirs.name
    names = [p["name"] for p in ports]
    assert len(set(names)) == len(names) and all(0 < len(n) <= 15 for n in names)
    port = first_port(ws)
    tcp = [p["containerPort"] for p in ports if p["protocol"] == "TCP"]
    assert port == (tcp[0] if tcp else ports[0]["containerPort"])
    preserve = path_mode(spec) == "preserve"
    base = workspace_prefix(cfg.cluster_id, name) if preserve else ""
    if tcp:
        probe_path = base + image_defaults(spec.image).probe_path
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": probe_path, "port": port, "scheme": "HTTP"}
        assert c["livenessProbe"]["initialDelaySeconds"] >= 30
        assert c["readinessProbe"]["failureThreshold"] >= 3

    env = env_of(c)
    assert len(env) == len(c["env"]), "no duplicate env names"
    own_args = spec.env_value("NOTEBOOK_ARGS")
    if own_args is not None:
        assert env["NOTEBOOK_ARGS"] == own_args.to_dict()
    elif preserve and image_kind(spec.image) == "jupyter":
        assert f"--ServerApp.base_url={base}/" in env["NOTEBOOK_ARGS"]["value"].split()
    else:
        assert "NOTEBOOK_ARGS" not in env
    user_port = spec.env_value("PORT")
    if user_port is None:
        assert env["PORT"] == {"name": "PORT", "value": str(port)}
    else:
        assert env["PORT"] == user_port.to_dict()
    for var in spec.env:
        assert env[var.name] == var.to_dict()

    pw = password_env(spec)
    if pw is not None:
        assert env[pw]["valueFrom"] == {
            "secretKeyRef": {"name": f"{name}-password", "key": "password"}
        }
        assert d.secret is not None and secret_password(d.secret) == "s3cret-pw"
    else:
        assert d.secret is None
    if image_kind(spec.image) == "code-server":
        assert "PASSWORD" in env
        assert env["PASSWORD"].get("value") != "changeme"

    assert c.get("args", []) == list(spec.args)
    assert c.get("command", []) == list(spec.command)
    if spec.resources is not None:
        assert c["resources"] == spec.resources.to_dict()
    else:
        assert "resources" not in c

    svc = d.service
    assert svc["metadata"]["name"] == name
    assert svc["spec"]["selector"] == {C.LABEL_WORKSPACE: name}
    assert [
        (p["port"], p["targetPort"], p["protocol"], p["name"]) for p in svc["spec"]["ports"]
    ] == [(p["containerPort"], p["containerPort"], p["protocol"], p["name"]) for p in ports]
    etype = spec.exposure.type if spec.exposure else None
    want_lb = etype == "LoadBalancer" or (etype is None and cfg.workspace_lb)
    assert svc["spec"]["type"] == ("LoadBalancer" if want_lb else "ClusterIP")
    pool = (svc["metadata"].get("annotations") or {}).get("metallb.universe.tf/address-pool")
    assert pool == (cfg.workspace_lb_pool if want_lb else None)
    want_ingress = etype == "Ingress" or (
        etype is None and not cfg.workspace_lb and cfg.workspace_domain
    )
    assert (d.ingress is not None) == bool(want_ingress)

    for obj in d.objects():
        meta = obj["metadata"]
        assert meta["namespace"] == "ns1"
        assert meta["labels"][C.LABEL_MANAGED_BY] == "guildnet"
        assert meta["labels"][C.LABEL_WORKSPACE] == name
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "guildnet.io/v1alpha1",
                "kind": "Workspace",
                "name": name,
                "uid": f"uid-{name}",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["annotations"][C.ANNOTATION_DESIRED_HASH] == manifest_hash(obj)


@given(NAMES, valid_spec_dicts(), configs)
@settings(max_examples=50, deadline=None)
def test_hash_is_stable_and_tracks_changes(name, spec_dict, cfg) -> None:
    ws = workspace(name, spec_dict)
    try:
        a = build(ws, cfg)
    except DesiredError:
        return
    b = build(copy.deepcopy(ws), cfg)
    assert a == b
    key = C.ANNOTATION_DESIRED_HASH
    for x, y in zip(a.objects(), b.objects(), strict=True):
        assert x["metadata"]["annotations"][key] == y["metadata"]["annotations"][key]
    changed = copy.deepcopy(ws)
    changed["spec"]["image"] = spec_dict["image"] + "-v2"
    changed["metadata"]["generation"] = 2
    c = build(changed, cfg)
    assert (
        c.deployment["metadata"]["annotations"][key] != a.deployment["metadata"]["annotations"][key]
    )
    assert c.deployment["spec"]["template"] != a.deployment["spec"]["template"]


def test_hash_ignores_its_own_annotation_and_key_order() -> None:
    m = {"metadata": {"name": "a", "annotations": {C.ANNOTATION_DESIRED_HASH: "x"}}, "b": [1, 2]}
    n = {"b": [1, 2], "metadata": {"name": "a"}}
    assert manifest_hash(m) == manifest_hash(n)
    assert manifest_hash(n) != manifest_hash({"b": [2, 1], "metadata": {"name": "a"}})


CFG = OperatorConfig(namespace="default")


def test_code_server_defaults() -> None:
    d = desired_objects(workspace("ide", {"image": "codercom/code-server:4.139.1"}), CFG, "pw")
    (c,) = d.deployment["spec"]["template"]["spec"]["containers"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    env = env_of(c)
    assert env["PORT"]["value"] == "8080"
    assert env["PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "ide-password",
        "key": "password",
    }
    assert d.secret is not None
    assert d.secret["metadata"]["name"] == "ide-password"
    assert d.secret["data"] == {"password": base64.b64encode(b"pw").decode()}
    assert password_required(workspace("ide", {"image": "codercom/code-server"}))


def test_code_server_without_password_is_refused() -> None:
    with pytest.raises(ValueError, match="password"):
        desired_objects(workspace("ide", {"image": "codercom/code-server"}), CFG, None)


def test_user_password_means_no_secret() -> None:
    spec = {"image": "codercom/code-server", "env": [{"name": "PASSWORD", "value": "mine"}]}
    d = desired_objects(workspace("ide", spec), CFG, None)
    assert d.secret is None
    (c,) = d.deployment["spec"]["template"]["spec"]["containers"]
    assert env_of(c)["PASSWORD"] == {"name": "PASSWORD", "value": "mine"}


def test_port_follows_the_chosen_port() -> None:
    spec = {"image": "codercom/code-server", "ports": [{"name": "web", "containerPort": 9000}]}
    d = desired_objects(workspace("ide", spec), CFG, "pw")
    (c,) = d.deployment["spec"]["template"]["spec"]["containers"]
    assert env_of(c)["PORT"]["value"] == "9000"
    assert c["readinessProbe"]["httpGet"]["port"] == 9000


def test_jupyter_defaults_and_optional_token() -> None:
    ws = workspace("nb", {"image": "quay.io/jupyter/base-notebook:lab-4.6.6"})
    d = desired_objects(ws, CFG, None)
    (c,) = d.deployment["spec"]["template"]["spec"]["containers"]
    assert c["ports"][0]["containerPort"] == 8888
    assert "JUPYTER_TOKEN" not in env_of(c) and d.secret is None
    assert "args" not in c and "command" not in c
    d = desired_objects(ws, CFG, "tok")
    (c,) = d.deployment["spec"]["template"]["spec"]["containers"]
    assert env_of(c)["JUPYTER_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "nb-password"
    assert d.secret is not None


def test_jupyter_is_told_its_canonical_prefix() -> None:
    """Preserve mode: Jupyter serves under /proxy/server/<name>/ and probes its /api there."""
    ws = workspace("nb", {"image": "quay.io/jupyter/base-notebook:lab-4.6.6"})
    assert path_mode(ws) == "preserve"
    d = desired_objects(ws, CFG, "tok")
    (c,) = d.deployment["spec"]["template"]["spec"]["containers"]
    env = env_of(c)
    assert env["NOTEBOOK_ARGS"] == {
        "name": "NOTEBOOK_ARGS",
        "value": "--ServerApp.base_url=/proxy/server/nb/ --ServerApp.trust_xheaders=True",
    }
    assert "allow_origin" not in env["NOTEBOOK_ARGS"]["value"]
    assert env["JUPYTER_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "nb-password"
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {
            "path": "/proxy/server/nb/api",
            "port": 8888,
            "scheme": "HTTP",
        }
    # Another cluster: the per-cluster canonical prefix.
    d = desired_objects(ws, OperatorConfig(cluster_id="prod"), "tok")
    (c,) = d.deployment["spec"]["template"]["spec"]["containers"]
    base = "/api/cluster/prod/proxy/server/nb/"
    assert f"--ServerApp.base_url={base}" in env_of(c)["NOTEBOOK_ARGS"]["value"]
    assert c["readinessProbe"]["httpGet"]["path"] == base + "api"


def test_on_its_own_origin_jupyter_serves_at_the_root() -> None:
    """Subdomain mode: the workspace is the root of its origin, so preserve mode has no
    base to tell (and the status URL is that origin)."""
    ws = workspace("nb", {"image": "quay.io/jupyter/base-notebook:lab-4.6.6"})
    origins = WorkspaceOrigins("subdomain", "localhost", "https://127.0.0.1:8090")
    d = desired_objects(ws, OperatorConfig(cluster_id="prod", origins=origins), "tok")
    (c,) = d.deployment["spec"]["template"]["spec"]["containers"]
    assert "NOTEBOOK_ARGS" not in env_of(c)
    assert c["readinessProbe"]["httpGet"]["path"] == "/api"
    status = compute_status(ws, None, [], [], datetime.now(UTC), cluster_id="prod", origins=origins)
    assert status["url"] == "https://nb--prod.localhost:8090/"


def test_path_mode_from_the_spec_wins() -> None:
    strip = {"image": "quay.io/jupyter/base-notebook", "proxy": {"pathMode": "strip"}}
    assert path_mode(strip) == "strip"
    (c,) = desired_objects(workspace("nb", strip), CFG, None).deployment["spec"]["template"][
        "spec"
    ]["containers"]
    assert "NOTEBOOK_ARGS" not in env_of(c)
    assert c["readinessProbe"]["httpGet"]["path"] == "/api"
    # The user's own NOTEBOOK_ARGS is theirs to get right.
    own = {
        "image": "quay.io/jupyter/base-notebook",
        "env": [{"name": "NOTEBOOK_ARGS", "value": "-y"}],
    }
    (c,) = desired_objects(workspace("nb", own), CFG, None).deployment["spec"]["template"]["spec"][
        "containers"
    ]
    assert env_of(c)["NOTEBOOK_ARGS"] == {"name": "NOTEBOOK_ARGS", "value": "-y"}
    # Any app told its base URL: preserve mode probes under the prefix, no Jupyter args.
    app = {"image": "example/app:1", "proxy": {"pathMode": "preserve"}}
    assert path_mode(app) == "preserve" and path_mode({"image": "example/app:1"}) == "strip"
    (c,) = desired_objects(workspace("app", app), CFG, None).deployment["spec"]["template"]["spec"][
        "containers"
    ]
    assert "NOTEBOOK_ARGS" not in env_of(c)
    assert c["readinessProbe"]["httpGet"]["path"] == "/proxy/server/app/"
    assert path_mode({"image": "codercom/code-server:4.139.1"}) == "strip"


def test_generic_image_exposes_8080_and_8443() -> None:
    d = desired_objects(workspace("app", {"image": "nginx"}), CFG, None)
    assert [(p["name"], p["port"]) for p in d.service["spec"]["ports"]] == [
        ("http", 8080),
        ("https", 8443),
    ]
    assert d.secret is None and d.ingress is None
    assert d.service["spec"]["type"] == "ClusterIP"


def test_user_labels_never_override_guildnet_keys() -> None:
    # parse_spec rejects reserved keys; even a spec that bypassed it cannot win.
    with pytest.raises(SpecError):
        desired_objects(
            workspace("a", {"image": "nginx", "labels": {C.LABEL_WORKSPACE: "b"}}), CFG, None
        )
    d = desired_objects(workspace("a", {"image": "nginx", "labels": {"team": "x"}}), CFG, None)
    assert d.deployment["spec"]["template"]["metadata"]["labels"] == {
        "team": "x",
        **C.managed_labels("a"),
    }


def test_unnamed_ports_get_unique_names() -> None:
    spec = {
        "image": "nginx",
        "ports": [
            {"containerPort": 80},
            {"containerPort": 80, "protocol": "UDP"},
            {"containerPort": 81, "name": "tcp-82"},
            {"containerPort": 82},
        ],
    }
    d = desired_objects(workspace("a", spec), CFG, None)
    names = [p["name"] for p in d.service["spec"]["ports"]]
    assert names == ["tcp-80", "udp-80", "tcp-82", "p-82"]


def test_load_balancer_with_pool() -> None:
    cfg = OperatorConfig(workspace_lb=True, workspace_lb_pool="lan", workspace_domain="ws.example")
    d = desired_objects(workspace("a", {"image": "nginx"}), cfg, None)
    assert d.service["spec"]["type"] == "LoadBalancer"
    assert d.service["metadata"]["annotations"]["metallb.universe.tf/address-pool"] == "lan"
    assert d.ingress is None


def test_ingress_from_domain_with_tls_and_long_timeouts() -> None:
    cfg = OperatorConfig(
        workspace_domain="ws.example.com", ingress_class_name="nginx", cert_manager_issuer="le"
    )
    d = desired_objects(workspace("ide", {"image": "codercom/code-server"}), cfg, "pw")
    ing = d.ingress
    assert ing is not None and ing["apiVersion"] == "networking.k8s.io/v1"
    assert d.service["spec"]["type"] == "ClusterIP"
    assert ing["spec"]["ingressClassName"] == "nginx"
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "ide.ws.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"] == {"service": {"name": "ide", "port": {"number": 8080}}}
    assert ing["spec"]["tls"] == [{"hosts": ["ide.ws.example.com"], "secretName": "ide-tls"}]
    ann = ing["metadata"]["annotations"]
    assert ann["cert-manager.io/cluster-issuer"] == "le"
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(ann["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600


def test_explicit_exposure_wins() -> None:
    cfg = OperatorConfig(workspace_lb=True)
    spec = {"image": "nginx", "exposure": {"type": "Ingress", "host": "my.example.org"}}
    d = desired_objects(workspace("a", spec), cfg, None)
    assert d.service["spec"]["type"] == "ClusterIP"
    assert d.ingress is not None and d.ingress["spec"]["rules"][0]["host"] == "my.example.org"
    assert "tls" not in d.ingress["spec"]
    d = desired_objects(
        workspace("a", {"image": "nginx", "exposure": {"type": "ClusterIP"}}), cfg, None
    )
    assert d.service["spec"]["type"] == "ClusterIP" and d.ingress is None


def test_ingress_without_any_host_is_an_error() -> None:
    with pytest.raises(DesiredError, match="host"):
        desired_objects(
            workspace("a", {"image": "nginx", "exposure": {"type": "Ingress"}}), CFG, None
        )


def test_workspace_must_have_uid_and_valid_name() -> None:
    ws = workspace("a", {"image": "nginx"})
    del ws["metadata"]["uid"]
    with pytest.raises(ValueError, match="uid"):
        desired_objects(ws, CFG, None)
    with pytest.raises(SpecError):
        desired_objects(workspace("Bad", {"image": "nginx"}), CFG, None)


def test_namespace_falls_back_to_config() -> None:
    d = desired_objects(workspace("a", {"image": "nginx"}, ns=None), OperatorConfig("team"), None)
    assert {o["metadata"]["namespace"] for o in d.objects()} == {"team"}


def test_generation_annotation_does_not_touch_the_pod_template() -> None:
    a = desired_objects(workspace("a", {"image": "nginx"}, gen=1), CFG, None)
    b = desired_objects(workspace("a", {"image": "nginx"}, gen=2), CFG, None)
    assert a.deployment["spec"] == b.deployment["spec"]
    assert a.deployment["metadata"]["annotations"][C.ANNOTATION_GENERATION] == "1"
    assert b.deployment["metadata"]["annotations"][C.ANNOTATION_GENERATION] == "2"


def test_helpers() -> None:
    ws = workspace("ide", {"image": "codercom/code-server"})
    assert service_dns(ws) == "ide.ns1.svc.cluster.local"
    assert proxy_url("ide") == "/proxy/server/ide/"
    assert proxy_url("ide", "default") == "/proxy/server/ide/"
    assert proxy_url("ide", "prod") == "/api/cluster/prod/proxy/server/ide/"
    assert first_port(ws) == first_port(ws["spec"]) == first_port(parse_spec(ws["spec"])) == 8080
    assert secret_password({"stringData": {"password": "x"}}) == "x"
    assert secret_password(None) is None


def test_from_settings() -> None:
    from guildnet.config import load_settings

    settings = load_settings(
        {"WORKSPACE_LB": "true", "WORKSPACE_LB_POOL": "p", "K8S_NAMESPACE": "ns"}
    )
    cfg = OperatorConfig.from_settings(settings)
    assert cfg == OperatorConfig(namespace="ns", workspace_lb=True, workspace_lb_pool="p")


# --- image heuristics and presets ----------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "kind", "port"),
    [
        ("codercom/code-server:4.139.1", "code-server", 8080),
        ("codercom/code-server", "code-server", 8080),
        ("docker.io/codercom/code-server@sha256:" + "a" * 64, "code-server", 8080),
        ("lscr.io/linuxserver/code-server:latest", "code-server", 8443),
        ("registry.local:5000/me/code-server:1", "code-server", 8080),
        ("quay.io/jupyter/base-notebook:lab-4.6.6", "jupyter", 8888),
        ("jupyter/scipy-notebook", "jupyter", 8888),
        ("ghcr.io/me/jupyterlab:3", "jupyter", 8888),
        ("me/my-notebook", "jupyter", 8888),
        ("nginx", "generic", 8080),
        ("registry.local:5000/jupyter-tools/app:1", "generic", 8080),
        ("traefik/whoami:v1.10.3", "generic", 8080),
    ],
)
def test_image_kind_and_defaults(image: str, kind: str, port: int) -> None:
    from guildnet.operator.images import image_defaults

    assert image_kind(image) == kind
    defaults = image_defaults(image)
    assert defaults.kind == kind
    assert defaults.ports[0].container_port == port
    assert dict(defaults.env)["PORT"] == str(port)
    assert (
        defaults.password_env
        == {
            "code-server": "PASSWORD",
            "jupyter": "JUPYTER_TOKEN",
            "generic": None,
        }[kind]
    )
    if kind == "generic":
        assert [p.container_port for p in defaults.ports] == [8080, 8443]


def test_presets_and_defaults_are_json() -> None:
    import json

    from guildnet.operator.images import defaults_json, preset_json

    presets = preset_json()
    ids = {p["id"] for p in presets}
    assert {"code-server", "jupyter"} <= ids
    for p in presets:
        assert p["name"] and p["image"] and p["description"]
        parse_spec({"image": p["image"], **{k: p[k] for k in ("ports", "args") if k in p}})
    assert {p["id"]: p["kind"] for p in presets}["jupyter"] == "jupyter"
    body = defaults_json("codercom/code-server:4.139.1")
    assert body["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert body["env"] == [{"name": "PORT", "value": "8080"}]
    assert body["passwordEnv"] == "PASSWORD" and body["args"] == []
    json.dumps(presets), json.dumps(body)
