"""``/proxy/server/{id}/`` through each route, against the real test cluster.

A Workspace object and a pod labelled as its pod are created in a fresh namespace (the
operator does not run here: the route logic only reads Workspace, Service and Pod
objects). kwok makes the pod Running with a pod IP in 198.18.16.0/20; inside the test
network namespace that IP is local, so the code-server-like test backend listens on it,
exactly where kube-apiserver's pod proxy and kwok's port-forward connect. Each route is
forced by configuration and checked by ``X-GuildNet-Route``, a login redirect and a
WebSocket echo:

* ``agent``: the workspace's AGENT_HOST names a backend at 198.18.0.50:8080;
* ``podproxy``: no AGENT_HOST, the Service DNS name does not resolve, so the API
  server's ``pods/<pod>:8080/proxy/`` is used (with the Instance's credentials);
* ``portforward``: the API server pod proxy is disabled and port-forwarding enabled;
  kwok's PortForward object sends the pod's port 8080 to the backend.

Path modes: a preserve-mode workspace (a Jupyter image by default, or any image with
``spec.proxy.pathMode: preserve``, which must survive the API server's pruning) gets
the full public path; a strip-mode one the path below its prefix; the per-cluster
spelling of a default-cluster workspace redirects to its canonical URL.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from guildnet.cluster.kubeclient import ClusterSource
from guildnet.cluster.registry import Registry
from guildnet.config import load_settings
from guildnet.http.site import GuildNetSite, HttpPolicy
from guildnet.http.tlstransport import LeanTLSFactory
from guildnet.operator import constants as C
from guildnet.operator.desired import OperatorConfig
from guildnet.proxy.engine import ProxyConfig, ProxyEngine
from guildnet.proxy.routes import RouteOptions, ServerRoutes
from guildnet.tls import find_certificate, server_context_factory
from guildnet.workspaces.crd import install_crd
from guildnet.workspaces.service import attach
from tests.backend import ws
from tests.backend.server import BackendFactory
from tests.integration.test_cluster_smoke import create_kwok_object
from tests.unit.test_proxy_engine import RawClient

pytestmark = pytest.mark.integration
reactor: Any = _reactor
PORT = 8080
AGENT_IP = "198.18.0.50"
FRONTEND = "https://hostapp.example.test"


class ProxyRouteTests(TestCase):
    timeout = 120

    @pytest.fixture(autouse=True)
    def _cluster(self, kubeconfig: str, namespace: str, kube_api: Any) -> None:
        self.kubeconfig = kubeconfig
        self.ns = namespace
        self.kube_api = kube_api

    async def start(
        self,
        *,
        agent: bool,
        podproxy: bool,
        portforward: bool,
        kwok_forward: bool = False,
        extra_port: int | None = None,
    ) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="guildnet-proxy-routes-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        self.clients: list[RawClient] = []
        self.backends: list[tuple[Any, BackendFactory]] = []
        self.addCleanup(self._stop)

        settings = load_settings(
            {
                "K8S_NAMESPACE": self.ns,
                "GUILDNET_STATE_DIR": str(tmp / "state"),
                "HOSTAPP_EMBED_OPERATOR": "false",
            }
        )
        source = ClusterSource("kubeconfig", kubeconfig=Path(self.kubeconfig))
        self.registry = Registry(tmp / "clusters", source, {}, reactor)
        self.registry.startService()
        instance = self.registry.get("default")
        await instance.ready()
        assert instance.rest is not None
        await instance.call(install_crd, instance.rest)

        name = "ide"
        spec: dict[str, Any] = {"image": "example/ide:1", "ports": [{"containerPort": PORT}]}
        if extra_port is not None:  # a second port (a dev server): no route of its own
            spec["ports"].append({"containerPort": extra_port})
        if agent:
            spec["env"] = [{"name": "AGENT_HOST", "value": f"{AGENT_IP}:{PORT}"}]
            self.serve(AGENT_IP, PORT)
        custom: Any = k8s_client.CustomObjectsApi(self.kube_api)
        custom.create_namespaced_custom_object(
            C.GROUP,
            C.VERSION,
            self.ns,
            C.PLURAL,
            {"apiVersion": C.API_VERSION, "kind": C.KIND, "metadata": {"name": name}, "spec": spec},
        )
        pod_ip = await self.create_pod(name)
        if podproxy:
            self.serve(pod_ip, PORT)
        if extra_port is not None:
            self.serve(pod_ip, extra_port)
        if portforward or kwok_forward:
            if portforward:
                backend = self.serve("127.0.0.1", 0)
                target = {"address": "127.0.0.1", "port": backend.getHost().port}
            else:
                target = {"address": pod_ip, "port": PORT}
            create_kwok_object(
                self.kube_api,
                self.ns,
                "portforwards",
                "PortForward",
                f"{name}-pod",
                {"forwards": [{"ports": [PORT], "target": target}]},
            )

        cfg = OperatorConfig.from_settings(settings)
        self.engine = ProxyEngine(reactor, ProxyConfig(frontend_origin=FRONTEND))
        self.engine.servers = ServerRoutes(
            self.registry,
            lambda inst: attach(inst, cfg, False, reactor),
            self.engine.pool,
            reactor,
            RouteOptions(disable_api_proxy=not podproxy, use_port_forward=portforward),
            self.engine.config.allowlist,
        )
        cert = find_certificate(tmp, tmp / "certs")
        site = GuildNetSite(Resource(), HttpPolicy(FRONTEND), interceptor=self.engine)
        self.wrapper = WrappingFactory(site)
        self.wrapper.noisy = False
        # The Host App's own TLS stack (guildnet.app): TCP plus LeanTLSFactory.
        self.listener = reactor.listenTCP(
            0, LeanTLSFactory(server_context_factory(cert), self.wrapper), interface="127.0.0.1"
        )

    def serve(self, host: str, port: int, base_path: str = "") -> Any:
        factory = BackendFactory(reactor, base_path)
        listener = reactor.listenTCP(port, factory, interface=host)
        self.backends.append((listener, factory))
        return listener

    async def create_pod(self, name: str) -> str:
        core: Any = k8s_client.CoreV1Api(self.kube_api)
        core.create_namespaced_pod(
            self.ns,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{name}-pod", "labels": {C.LABEL_WORKSPACE: name}},
                "spec": {
                    "containers": [
                        {
                            "name": "ide",
                            "image": "example/ide:1",
                            "ports": [{"containerPort": PORT}],
                        }
                    ]
                },
            },
        )
        deadline = time.monotonic() + 60
        while True:
            pod = core.read_namespaced_pod(f"{name}-pod", self.ns)
            ready = any(
                c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
            )
            if pod.status.phase == "Running" and ready and pod.status.pod_ip:
                return str(pod.status.pod_ip)
            if time.monotonic() > deadline:
                raise AssertionError(f"pod not Running+Ready: {pod.status}")
            await deferLater(reactor, 0.2, lambda: None)

    async def _stop(self) -> None:
        for c in self.clients:
            if not c.gone:
                c.transport.abortConnection()
        if hasattr(self, "engine"):
            await self.engine.close()
            await self.listener.stopListening()
            for proto in list(self.wrapper.protocols):
                proto.transport.abortConnection()  # type: ignore[union-attr]
        for listener, factory in self.backends:
            await listener.stopListening()
            factory.close_all()
        await self.registry.stopService()
        deadline = time.monotonic() + 5
        while any(not c.gone for c in self.clients) or (
            hasattr(self, "wrapper") and self.wrapper.protocols
        ):
            if time.monotonic() > deadline:
                raise AssertionError("connections did not close")
            await deferLater(reactor, 0.01, lambda: None)

    async def connect(self) -> RawClient:
        port = self.listener.getHost().port
        endpoint = wrapClientTLS(
            CertificateOptions(verify=False), TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        )
        client = RawClient()
        await connectProtocol(endpoint, client)
        self.clients.append(client)
        return client

    async def check_route(self, route: str, ws_query_route: str | None = None) -> None:
        client = await self.connect()
        # The first request may wait for the informers' first sync.
        login = await client.request("GET", "/proxy/server/ide/login")
        self.assertEqual(login.status, 302, login.body)
        self.assertEqual(login.header("x-guildnet-route"), route)
        self.assertEqual(login.header("location"), "/proxy/server/ide/?folder=x")
        self.assertIn("Path=/proxy/server/ide/", login.header("set-cookie") or "")
        page = await client.request(
            "GET", "/proxy/server/ide/?folder=x", headers={"Cookie": "session=s3cr3t"}
        )
        self.assertEqual(page.status, 200)
        self.assertIn(b"folder=x", page.body)
        self.assertEqual(page.header("x-guildnet-route"), route)
        download = await client.request("GET", "/proxy/server/ide/download?size=3000000")
        self.assertEqual(download.size, 3000000)

        wsc = await self.connect()
        head = await wsc.upgrade("/proxy/server/ide/ws")
        self.assertIn(b" 101 ", head.split(b"\r\n")[0])
        self.assertIn(f"x-guildnet-route: {route}".encode(), head.lower())
        wsc.send_ws(ws.OP_TEXT, b"echo me")
        self.assertEqual(await wsc.next_ws(), (ws.OP_TEXT, b"echo me"))
        payload = bytes(range(256)) * 1024
        wsc.send_ws(ws.OP_BINARY, payload)
        self.assertEqual(await wsc.next_ws(), (ws.OP_BINARY, payload))

        # A WebSocket URL with a query string (code-server's carries a token).
        wsq = await self.connect()
        head = await wsq.upgrade("/proxy/server/ide/ws?hello=1")
        self.assertIn(b" 101 ", head.split(b"\r\n")[0])
        self.assertIn(f"x-guildnet-route: {ws_query_route or route}".encode(), head.lower())
        self.assertEqual(await wsq.next_ws(), (ws.OP_TEXT, b"hello"), "the query arrived")
        wsq.send_ws(ws.OP_TEXT, b"again")
        self.assertEqual(await wsq.next_ws(), (ws.OP_TEXT, b"again"))

    async def test_agent_host_direct(self) -> None:
        await self.start(agent=True, podproxy=False, portforward=False)
        await self.check_route("agent")

    async def test_api_server_pod_proxy(self) -> None:
        # kube-apiserver drops the query of upgraded pod-proxy requests (kubernetes#77142),
        # so a WebSocket with a query goes through a port-forward to the same pod.
        await self.start(agent=False, podproxy=True, portforward=False, kwok_forward=True)
        await self.check_route("podproxy", ws_query_route="portforward")

    async def test_port_forward(self) -> None:
        await self.start(agent=False, podproxy=False, portforward=True)
        await self.check_route("portforward")

    async def test_address_target_reaches_only_managed_workspaces(self) -> None:
        """``/proxy/{ip:port}/``: a workspace pod's address is reachable without any
        allowlist (the Host App wires ``managed`` and ``owner`` this way); the address of
        its HTTP port redirects to its canonical URL; another address in the same pod
        network is refused."""
        await self.start(agent=False, podproxy=True, portforward=False, extra_port=3000)
        assert self.engine.servers is not None
        servers: Any = self.engine.servers
        self.engine.managed = servers.managed
        self.engine.owner = servers.owner
        core: Any = k8s_client.CoreV1Api(self.kube_api)
        pod_ip = str(core.read_namespaced_pod("ide-pod", self.ns).status.pod_ip)
        deadline = time.monotonic() + 30
        while (pod_ip, PORT) not in servers.managed():
            if time.monotonic() > deadline:
                raise AssertionError(f"{pod_ip}:{PORT} never became a managed target")
            await deferLater(reactor, 0.1, lambda: None)
        client = await self.connect()
        moved = await client.request("GET", f"/proxy/{pod_ip}:{PORT}/login?x=1")
        self.assertEqual(moved.status, 307, moved.body)
        self.assertEqual(moved.header("location"), "/proxy/server/ide/login?x=1")
        login = await client.request("GET", f"/proxy/{pod_ip}:3000/login")
        self.assertEqual(login.status, 302, login.body)
        self.assertEqual(login.header("x-guildnet-route"), "direct")
        self.assertEqual(login.header("location"), f"/proxy/{pod_ip}:3000/?folder=x")
        other = "198.18.31.250" if pod_ip != "198.18.31.250" else "198.18.31.251"
        refused = await client.request("GET", f"/proxy/{other}:{PORT}/")
        self.assertEqual(refused.status, 403, refused.body)
        self.assertEqual(json.loads(refused.body)["error"], "proxy_target_refused")

    def create_workspace(self, name: str, spec: dict[str, Any]) -> None:
        custom: Any = k8s_client.CustomObjectsApi(self.kube_api)
        custom.create_namespaced_custom_object(
            C.GROUP,
            C.VERSION,
            self.ns,
            C.PLURAL,
            {"apiVersion": C.API_VERSION, "kind": C.KIND, "metadata": {"name": name}, "spec": spec},
        )

    async def test_path_modes_and_canonical_urls(self) -> None:
        await self.start(agent=True, podproxy=False, portforward=False)  # "ide": strip mode
        # A Jupyter image preserves by default; any image can ask for it in its spec.
        nb_ip, app_ip = "198.18.0.51", "198.18.0.52"
        self.create_workspace(
            "nb",
            {
                "image": "quay.io/jupyter/base-notebook:lab-4.6.6",
                "env": [{"name": "AGENT_HOST", "value": f"{nb_ip}:8888"}],
            },
        )
        self.serve(nb_ip, 8888, base_path="/proxy/server/nb")
        self.create_workspace(
            "app",
            {
                "image": "example/app:1",
                "ports": [{"containerPort": PORT}],
                "env": [{"name": "AGENT_HOST", "value": f"{app_ip}:{PORT}"}],
                "proxy": {"pathMode": "preserve"},
            },
        )
        self.serve(app_ip, PORT, base_path="/proxy/server/app")
        custom: Any = k8s_client.CustomObjectsApi(self.kube_api)
        stored = custom.get_namespaced_custom_object(C.GROUP, C.VERSION, self.ns, C.PLURAL, "app")
        self.assertEqual(stored["spec"]["proxy"], {"pathMode": "preserve"}, "pruned by the CRD")

        client = await self.connect()
        for name in ("nb", "app"):
            echo = await client.request("GET", f"/proxy/server/{name}/api/../echo?a=%2F")
            self.assertEqual(echo.status, 307, echo.body)  # dot segments: canonical first
            echo = await client.request("GET", f"/proxy/server/{name}/echo?a=%2F")
            self.assertEqual(echo.status, 200, echo.body)
            self.assertEqual(json.loads(echo.body)["target"], f"/proxy/server/{name}/echo?a=%2F")
            self.assertEqual(echo.header("x-guildnet-route"), "agent")
            login = await client.request("GET", f"/proxy/server/{name}/login")
            self.assertEqual(login.header("location"), f"/proxy/server/{name}/?folder=x")
            wsc = await self.connect()
            head = await wsc.upgrade(f"/proxy/server/{name}/ws?hello=1")
            self.assertIn(b" 101 ", head.split(b"\r\n")[0])
            self.assertEqual(await wsc.next_ws(), (ws.OP_TEXT, b"hello"))
        # Strip mode: the upstream sees the path below the prefix.
        echo = await client.request("GET", "/proxy/server/ide/echo?a=1")
        self.assertEqual(json.loads(echo.body)["target"], "/echo?a=1")
        # One canonical URL: the per-cluster spelling of a default-cluster workspace redirects.
        for name in ("nb", "ide"):
            moved = await client.request("GET", f"/api/cluster/default/proxy/server/{name}/x?y=1")
            self.assertEqual(moved.status, 307, moved.body)
            self.assertEqual(moved.header("location"), f"/proxy/server/{name}/x?y=1")
