"""Roles and ownership end to end, on the loopback listener, against the test cluster.

Two real ``twistd -n guildnet`` processes share one namespace (the embedded operators
elect one leader): one with ``LOCAL_ROLE=admin`` (the default) and one with
``LOCAL_ROLE=user``. Both attribute every request to the local user ``local``, so
"someone else's" workspaces are made the way another person's would exist: Workspace
objects whose ``guildnet.io/owner`` annotation names another login, created through the
API server (as the Host App itself does on a tailnet user's behalf), plus one with no
owner (made outside GuildNet, or before owners were recorded). Tailnet identities are
covered with constructed identities in tests/unit/test_access_http.py and over a real
tailnet by the tailnet tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from guildnet.operator import constants as C
from tests.integration.hostproc import SSE, HostProc, cluster_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

IMAGE = "codercom/code-server:4.139.1"  # never pulled: kwok runs no containers
OWNER = "guildnet.io/owner"


class Client(HostProc):
    """The Host App, answers as (status, JSON or text), request headers on each call."""

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        status, parsed, _ = self.request(method, path, body, headers=headers)
        return status, parsed


def _start(kubeconfig: str, ns: str, work: Path, env: dict[str, str]) -> Iterator[Client]:
    with Client(work, {**cluster_env(kubeconfig, ns), **env}).running() as host:
        yield host


@pytest.fixture(scope="module")
def admin(kubeconfig: str, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    yield from _start(kubeconfig, ns, tmp_path_factory.mktemp("admin"), {})


@pytest.fixture(scope="module")
def user(kubeconfig: str, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    yield from _start(kubeconfig, ns, tmp_path_factory.mktemp("user"), {"LOCAL_ROLE": "user"})


@pytest.fixture(scope="module")
def custom(kube_api: Any) -> Any:
    return k8s_client.CustomObjectsApi(kube_api)


def make_workspace(custom: Any, ns: str, name: str, owner: str | None) -> None:
    """A Workspace as GuildNet makes them (managed label), owned by ``owner``."""
    meta: dict[str, Any] = {"name": name, "labels": {C.LABEL_MANAGED_BY: C.MANAGED_BY}}
    if owner is not None:
        meta["annotations"] = {OWNER: owner}
    custom.create_namespaced_custom_object(
        C.GROUP,
        C.VERSION,
        ns,
        C.PLURAL,
        {"apiVersion": C.API_VERSION, "kind": C.KIND, "metadata": meta, "spec": {"image": IMAGE}},
    )


def ids(app: Client, prefix: str = "") -> set[str]:
    status, body = app.call("GET", f"/api{prefix}/servers")
    assert status == 200, body
    return {s["id"] for s in body}


def forbidden(reply: tuple[int, Any], reason: str, required: str | None = None) -> None:
    status, body = reply
    assert status == 403, reply
    assert body["error"] == "forbidden" and body["reason"] == reason, body
    if required is not None:
        assert body["required"] == required, body


# --- tests (module order matters: they share the processes and namespace) -------------


def test_whoami_reports_local_role(admin: Client, user: Client) -> None:
    assert admin.call("GET", "/api/whoami") == (
        200,
        {
            "login": "local",
            "displayName": "Local user",
            "node": "",
            "tags": [],
            "source": "local",
            "role": "admin",
        },
    )
    status, body = user.call("GET", "/api/whoami")
    assert status == 200 and body["role"] == "user" and body["login"] == "local"
    for app in (admin, user):
        assert app.call("GET", "/healthz")[0] == 200


def test_create_records_the_owner(user: Client, custom: Any, ns: str) -> None:
    status, body = user.call("POST", "/api/jobs", {"image": IMAGE, "name": "mine"})
    assert status == 202, body
    obj = custom.get_namespaced_custom_object(C.GROUP, C.VERSION, ns, C.PLURAL, "mine")
    assert obj["metadata"]["annotations"][OWNER] == "local"
    assert obj["metadata"]["labels"][OWNER] == "local"
    status, listing = user.call("GET", "/api/servers")
    assert status == 200, listing
    (item,) = [s for s in listing if s["id"] == "mine"]
    assert item["owner"] == "local"


def test_user_sees_and_acts_only_on_own_workspaces(
    admin: Client, user: Client, custom: Any, ns: str
) -> None:
    make_workspace(custom, ns, "bobs", "bob@example.test")
    make_workspace(custom, ns, "nobodys", None)
    wait_for("the admin to see all three", lambda: ids(admin) >= {"mine", "bobs", "nobodys"})
    wait_for(
        "mine Running", lambda: user.call("GET", "/api/servers/mine")[1].get("phase") == "Running"
    )
    assert ids(user) == {"mine"}
    assert ids(user, "/cluster/default") == {"mine"}

    # Own: detail, password, logs.
    assert user.call("GET", "/api/servers/mine")[0] == 200
    pw = wait_for("the password", lambda: user.call("GET", "/api/servers/mine/password")[1])
    assert pw["password"]
    assert user.call("GET", "/api/servers/mine/logs")[0] == 200

    # Others': every owner route is 403, in both spellings, and nothing happens.
    for name in ("bobs", "nobodys"):
        for prefix in ("", "/cluster/default"):
            for method, path in [
                ("GET", f"/api{prefix}/servers/{name}"),
                ("GET", f"/api{prefix}/servers/{name}/password"),
                ("GET", f"/api{prefix}/servers/{name}/logs"),
                ("GET", f"/sse{prefix}/logs?server={name}"),
                ("DELETE", f"/api{prefix}/servers/{name}"),
            ]:
                forbidden(user.call(method, path), "owner", "owner")
        # The proxy too: never dialed, whatever the route would be.
        status, body = user.call("GET", f"/proxy/server/{name}/")
        assert status == 403 and body["reason"] == "owner", body
    assert user.call("GET", "/api/servers/ghost")[0] == 404
    assert {"bobs", "nobodys"} <= ids(admin)

    # The admin reads anyone's.
    assert admin.call("GET", "/api/servers/bobs")[0] == 200
    assert admin.call("GET", "/api/servers/bobs")[1]["owner"] == "bob@example.test"


def test_server_stream_is_filtered(user: Client, admin: Client, custom: Any, ns: str) -> None:
    stream = SSE(user, "/sse/servers")
    try:
        snapshot = stream.next()
        assert snapshot["event"] == "snapshot"
        assert {s["id"] for s in snapshot["data"]["servers"]} == {"mine"}
        make_workspace(custom, ns, "carols", "carol@example.test")
        status, _ = user.call("POST", "/api/jobs", {"image": IMAGE, "name": "mine-two"})
        assert status == 202
        created, before = stream.until(lambda e: e["event"] == "created")
        assert created["data"]["id"] == "mine-two"
        # Updates to the others' workspaces (carols is brought up meanwhile) never show.
        wait_for("carols seen by the admin", lambda: "carols" in ids(admin))
        _, seen = stream.until(
            lambda e: e["data"].get("id") == "mine-two" and e["data"].get("phase") == "Running"
        )
        for event in [*before, *seen]:
            named = event["data"].get("id") or event["data"].get("server")
            assert named in ("mine", "mine-two"), event
    finally:
        stream.close()


def test_user_is_refused_admin_actions(user: Client, admin: Client) -> None:
    for method, path in [
        ("POST", "/api/admin/stop-all"),
        ("POST", "/api/cluster/default/admin/stop-all"),
        ("POST", "/api/clusters"),
        ("DELETE", "/api/clusters/default"),
        ("DELETE", "/api/db/test"),
        ("POST", "/api/db/deploy"),
    ]:
        forbidden(user.call(method, path, {}), "role", "admin")
    assert {"bobs", "nobodys", "carols"} <= ids(admin)


def test_cross_site_requests_are_refused_but_scripts_and_same_origin_pass(
    user: Client, admin: Client, custom: Any, ns: str
) -> None:
    own = f"https://127.0.0.1:{admin.port}"
    evil = {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}
    forbidden(admin.call("POST", "/api/admin/stop-all", headers=evil), "cross_origin")
    forbidden(admin.call("DELETE", "/api/servers/bobs", headers=evil), "cross_origin")
    forbidden(
        admin.call("DELETE", "/api/servers/bobs", headers={"origin": "https://evil.example"}),
        "cross_origin",
    )
    assert "bobs" in ids(admin)
    # The UI (same origin) and a script (neither header) may.
    status, body = admin.call(
        "DELETE", "/api/servers/bobs", headers={"origin": own, "sec-fetch-site": "same-origin"}
    )
    assert status == 200, body
    status, body = user.call("DELETE", "/api/servers/mine-two")
    assert status == 200, body


def test_admin_stops_everyone(admin: Client, user: Client, custom: Any, ns: str) -> None:
    status, body = admin.call("POST", "/api/admin/stop-all")
    assert status == 200, body
    assert {"mine", "nobodys", "carols"} <= set(body["deleted"])

    def gone() -> bool:
        try:
            items = custom.list_namespaced_custom_object(C.GROUP, C.VERSION, ns, C.PLURAL)["items"]
        except ApiException:
            return False
        return not items

    wait_for("every Workspace to go", gone, timeout=90)
