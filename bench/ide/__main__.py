"""IDE benchmark: time to a usable code-server and JupyterLab, GuildNet vs direct vs CHP.

    tests/harness/netns-run.sh .venv/bin/python -m bench.ide [--runs 5] [--only code-server,jupyter]

On the real-node test cluster (real kubelet, containerd, the locally built images) it launches
the code-server and JupyterLab presets through a real ``twistd guildnet``, then, in Debian's
Chromium (``ide_load.mjs``, playwright-core from ``ui/node_modules``), measures per run:

* code-server: from navigation (already logged in) until the workbench's explorer lists a
  file and the editor area is rendered;
* JupyterLab: from navigation to a notebook until its kernel reports idle (a new kernel
  each run).

Targets: ``direct`` (plain HTTP to the pod IP, treated as a secure context), ``guildnet``
(``/proxy/server/{id}/`` on the Host App, TLS) and ``chp`` (configurable-http-proxy, JupyterHub's
proxy, from ``bench/proxy/node_modules``, TLS with the same kind of self-signed certificate;
skipped when not installed: ``cd bench/proxy && npm ci``). Every run uses a fresh browser
context (cold cache), the targets interleaved so machine noise hits them alike. Prints the
median per target and its ratio to direct; the goal is GuildNet within 1.2x of direct.

Not a test: it asserts nothing. Traffic stays on loopback and inside the network namespace.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from bench.proxy.__main__ import CHP_BIN, Procs, free_port, wait_http
from guildnet.tls import write_self_signed
from tests.harness.cluster import netns_prepared
from tests.harness.hostapp import HostApp
from tests.harness.realnode import RealNodeCluster
from tests.realnode.helpers import pod_exec, preset_image, running_pod, wait_phase

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCRIPT = HERE / "ide_load.mjs"
NAMESPACE = "bench-ide"
GOAL = 1.2

CODE_SETTINGS = {
    "security.workspace.trust.enabled": False,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "extensions.ignoreRecommendations": True,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "chat.disableAIFeatures": True,
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
}
NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
         "outputs": [], "source": ["1+1"]}
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip


def _write(core: Any, pod: str, path: str, text: str) -> None:
    b64 = base64.b64encode(text.encode()).decode()
    directory = path.rsplit("/", 1)[0]
    cmd = f"mkdir -p '{directory}' && echo {b64} | base64 -d > '{path}'"
    pod_exec(core, NAMESPACE, pod, ["sh", "-c", cmd])


def _launch(app: HostApp, name: str, preset: str) -> str | None:
    """Launch the preset; returns the token set for Jupyter (code-server's password is the
    generated one, read back through the API)."""
    body: dict[str, Any] = {"name": name, "image": preset_image(preset)}
    token = None
    if preset == "jupyter":
        token = secrets.token_hex(16)
        body["env"] = [{"name": "JUPYTER_TOKEN", "value": token}]
    status, reply = app.json("POST", "/api/jobs", body)
    if status != 202:
        raise RuntimeError(f"launching {name}: {status} {reply}")
    return token


def _secret(app: HostApp, name: str) -> str:
    status, reply = app.json("GET", f"/api/servers/{name}/password")
    if status != 200:
        raise RuntimeError(f"password of {name}: {status} {reply}")
    return str(reply["password"])


def _chp(procs: Procs, tmp: Path, name: str, target: str) -> str | None:
    """A configurable-http-proxy with TLS sending everything to ``target``; its base URL."""
    if not CHP_BIN.exists() or not shutil.which("node"):
        print(f"chp: not installed, skipped (cd bench/proxy && npm ci) [{name}]")
        return None
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    write_self_signed(cert, key, "localhost")
    port, api = free_port(), free_port()
    argv = [str(CHP_BIN), "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1"]
    argv += ["--api-port", str(api), "--default-target", target]
    argv += ["--ssl-cert", str(cert), "--ssl-key", str(key), "--log-level", "warn"]
    procs.start(f"chp-{name}", argv, tmp / f"chp-{name}.log")
    wait_http(f"https://127.0.0.1:{port}/", timeout=30)
    return f"https://127.0.0.1:{port}"


def _spki(base_url: str) -> str:
    """base64 SHA-256 of the public key served at ``https://127.0.0.1:<port>``."""
    port = int(base_url.rsplit(":", 1)[1])
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _median_table(results: list[dict[str, Any]], errors: list[dict[str, Any]]) -> int:
    by: dict[tuple[str, str], list[int]] = {}
    for r in results:
        by.setdefault((r["ide"], r["target"]), []).append(int(r["ms"]))
    worst = 0.0
    print()
    print(f"{'IDE':<12} {'target':<9} {'median ms':>10} {'ratio':>7}   runs (ms)")
    for ide in ("code-server", "jupyter"):
        direct = by.get((ide, "direct"))
        base = statistics.median(direct) if direct else None
        for target in ("direct", "guildnet", "chp"):
            values = by.get((ide, target))
            if not values:
                continue
            med = statistics.median(values)
            ratio = med / base if base else float("nan")
            if target == "guildnet":
                worst = max(worst, ratio)
            print(f"{ide:<12} {target:<9} {med:>10.0f} {ratio:>6.2f}x   {values}")
    for e in errors:
        print(f"error: {e}")
    verdict = "met" if worst and worst <= GOAL else "NOT met"
    print(f"\ngoal GuildNet <= {GOAL}x direct: {verdict} (worst {worst:.2f}x)")
    return 0 if not errors else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="code-server,jupyter", help="code-server,jupyter")
    parser.add_argument("--targets", default="direct,guildnet,chp")
    args = parser.parse_args(argv)
    if not netns_prepared():
        print(
            "run inside the test network namespace: tests/harness/netns-run.sh "
            ".venv/bin/python -m bench.ide",
            file=sys.stderr,
        )
        return 2
    node = shutil.which("node")
    if node is None or not (ROOT / "ui" / "node_modules" / "playwright-core").is_dir():
        print("needs node and ui/node_modules (make ui)", file=sys.stderr)
        return 2
    ides = [i for i in args.only.split(",") if i]
    targets = set(args.targets.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="guildnet-bench-ide-"))
    procs = Procs()
    presets = {"code-server": "code-server", "jupyter": "jupyter"}
    names = {"code-server": "bench-code", "jupyter": "bench-lab"}
    t0 = time.monotonic()
    cluster = RealNodeCluster(images=["pause", *ides])
    cluster.start()
    try:
        print(f"real-node cluster up in {time.monotonic() - t0:.1f}s")
        new_client: Any = k8s_config.new_client_from_config
        api = new_client(config_file=str(cluster.kubeconfig_path))
        core: Any = k8s_client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        env = {"KUBECONFIG": str(cluster.kubeconfig_path), "K8S_NAMESPACE": NAMESPACE}
        with HostApp(tmp, env) as app:
            tokens = {ide: _launch(app, names[ide], presets[ide]) for ide in ides}
            cases: list[dict[str, Any]] = []
            insecure: list[str] = []
            chp_urls: list[str] = []
            for ide in ides:
                name = names[ide]
                wait_phase(app, name, "Running", 180)
                pod = running_pod(core, NAMESPACE, name)
                ip = pod.status.pod_ip
                secret = tokens[ide] or _secret(app, name)
                if ide == "code-server":
                    home = "/home/coder"
                    _write(core, pod.metadata.name, f"{home}/bench.txt", "bench\n")
                    settings = f"{home}/.local/share/code-server/User/settings.json"
                    _write(core, pod.metadata.name, settings, json.dumps(CODE_SETTINGS))
                    direct, path = f"http://{ip}:8080", "/"
                else:
                    _write(
                        core, pod.metadata.name, "/home/jovyan/bench.ipynb", json.dumps(NOTEBOOK)
                    )
                    direct, path = f"http://{ip}:8888", f"/proxy/server/{name}/"
                insecure.append(direct)
                urls = {"direct": direct + path, "guildnet": f"{app.url}/proxy/server/{name}/"}
                if "chp" in targets:
                    chp = _chp(procs, tmp, name, direct)
                    if chp:
                        urls["chp"] = chp + path
                        chp_urls.append(chp)
                for target, url in urls.items():
                    if target in targets:
                        cases.append({"ide": ide, "target": target, "url": url, "secret": secret})
            spki = [app.spki(), *(_spki(u) for u in chp_urls)]
            plan = {"runs": args.runs, "cases": cases, "insecureOrigins": insecure, "spki": spki}
            print(f"measuring {len(cases)} cases x {args.runs} runs")
            proc = subprocess.run(
                [node, str(SCRIPT)],
                cwd=ROOT / "ui",
                env={"PATH": "/usr/bin:/bin", "GUILDNET_BENCH_PLAN": json.dumps(plan)},
                capture_output=True,
                text=True,
                timeout=3600,
            )
            results, errors = [], []
            for line in proc.stdout.splitlines():
                if line.startswith("@@result "):
                    results.append(json.loads(line.split(" ", 1)[1]))
                elif line.startswith("@@error "):
                    errors.append(json.loads(line.split(" ", 1)[1]))
            if proc.returncode not in (0, 1) or (not results and not errors):
                print(proc.stdout[-4000:], proc.stderr[-4000:], file=sys.stderr)
            return _median_table(results, errors)
    finally:
        procs.stop()
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
