"""Proxy benchmark: direct vs GuildNet vs nginx vs configurable-http-proxy, on loopback.

    python -m bench.proxy [--runs 5] [--seconds 3] [--download-mb 1024] [--only NAMES]

One backend (``tests.backend``, code-server-like) serves every case. In front of it:

* ``direct``: the backend itself, plain HTTP (the baseline);
* ``guildnet``: ``twistd -n guildnet`` with the backend in HOSTAPP_PROXY_ALLOWLIST,
  requests to ``/proxy/127.0.0.1:<port>/...``;
* ``nginx``: Debian's nginx (one worker: GuildNet and CHP use one core each);
* ``chp``: configurable-http-proxy (JupyterHub's proxy) from ``bench/proxy/node_modules``.

GuildNet terminates TLS, so nginx and CHP terminate TLS too (the same self-signed
certificate); ``direct`` is plain HTTP. Figures: small GETs at concurrency 1 and 50
(requests/s, added latency p50/p99 over direct), 1 GiB download throughput, WebSocket
echo messages/s. Each is the median of ``--runs`` short runs, the targets interleaved
so that machine noise hits them alike. Load comes from ``wrk`` (Debian package) when
installed, else from an asyncio client (``bench.proxy.load``; slower, so rates are
lower for every target); downloads use curl; WebSocket echo uses ``bench/proxy/wsload.js``
(node, which CHP needs anyway), else ``bench.proxy.load``.

Nothing is installed by this script. Missing tools are reported and their cases
skipped: ``apt-get install -y wrk nginx-light curl`` and ``(cd bench/proxy && npm ci)``.
Traffic stays on 127.0.0.1, every run is bounded in time, and every process started
here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from guildnet.tls import write_self_signed
from tests.harness.hostapp import HostProcess, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHP_BIN = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
PYTHON = sys.executable


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Until ``url`` answers (any status), or fail naming it."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn: http.client.HTTPConnection
            if parts.scheme == "https":
                ctx = ssl._create_unverified_context()
                conn = http.client.HTTPSConnection(host, parts.port, context=ctx, timeout=2)
            else:
                conn = http.client.HTTPConnection(host, parts.port, timeout=2)
            conn.request("GET", parts.path or "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up in {timeout}s") from None
            time.sleep(0.1)


@dataclass
class Target:
    name: str
    base: str  # URL prefix the backend's paths are appended to
    ws_base: str
    pid: int = 0  # the process whose CPU (with its children) is the target's cost


@dataclass
class Procs:
    items: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], log: Path, **kw: object) -> int:
        out = open(log, "wb")  # noqa: SIM115 - kept open for the process's life
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]
        self.items.append((name, proc))
        return int(proc.pid)

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Stop ``proc`` with the others."""
        self.items.append((name, proc))

    def stop(self) -> None:
        for _, proc in reversed(self.items):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.items):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                print(f"  {name} did not stop; killing it", file=sys.stderr)
                proc.kill()
                proc.wait()


def nginx_conf(tmp: Path, port: int, backend: int, cert: Path, key: Path) -> Path:
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""
    )
    return conf


# --- measurements --------------------------------------------------------------------------


_WRK_LAT = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def http_load(url: str, connections: int, seconds: float) -> dict[str, float]:
    """requests/s and latency p50/p99 (ms) of GETs on keep-alive connections."""
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        lat = {p: float(v) * _UNIT[u] for p, v, u in _WRK_LAT.findall(out)}
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            raise RuntimeError(f"{url}: {errors.group(1)} error responses")
        count = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        return {"rate": rate, "p50_ms": lat["50"], "p99_ms": lat["99"], "count": count}
    return _load("http", url, connections, seconds)


WS_LOAD_JS = HERE / "wsload.js"


def ws_loader() -> str:
    return "node" if shutil.which("node") and WS_LOAD_JS.exists() else "asyncio"


def ws_load(url: str, connections: int, seconds: float) -> dict[str, float]:
    """Echo messages/s over ``connections`` WebSockets (node's client when there is node:
    it needs less CPU per message than the proxies measured, so they decide the figure)."""
    if ws_loader() == "node":
        out = subprocess.run(
            ["node", str(WS_LOAD_JS), url, str(connections), str(seconds)],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout  # fmt: skip
        return dict(json.loads(out.strip().splitlines()[-1]))
    return _load("ws", url, connections, seconds)


def _load(kind: str, url: str, connections: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [PYTHON, "-m", "bench.proxy.load", kind, url, "--connections", str(connections),
         "--seconds", str(seconds)],
        capture_output=True, text=True, timeout=seconds + 60, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    return dict(json.loads(out.strip().splitlines()[-1]))


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += used.get(p, 0.0)
        todo += [c for c, parent in parents.items() if parent == p]
    return total


def download(url: str, size: int, timeout: float) -> float:
    """MB/s (10^6 bytes) of one download of ``size`` bytes."""
    start = time.monotonic()
    out = subprocess.run(
        ["curl", "-sk", "-o", "/dev/null", "-w", "%{size_download}", url],
        capture_output=True, text=True, timeout=timeout, check=True,
    ).stdout  # fmt: skip
    elapsed = time.monotonic() - start
    if int(out.strip() or 0) != size:
        raise RuntimeError(f"{url}: got {out.strip()} bytes, expected {size}")
    return size / elapsed / 1e6


# --- the run -------------------------------------------------------------------------------------


@contextlib.contextmanager
def environment(args: argparse.Namespace) -> Iterator[list[Target]]:
    tmp = Path(tempfile.mkdtemp(prefix="guildnet-bench-proxy-"))
    procs = Procs()
    try:
        certs = tmp / "certs"
        cert, key = certs / "server.crt", certs / "server.key"
        write_self_signed(cert, key, "localhost")
        backend = free_port()
        backend_pid = procs.start(
            "backend",
            [PYTHON, "-m", "tests.backend", "--host", "127.0.0.1", "--port", str(backend)],
            tmp / "backend.log",
            cwd=ROOT,
        )
        wait_http(f"http://127.0.0.1:{backend}/healthz")
        targets = [
            Target(
                "direct", f"http://127.0.0.1:{backend}", f"ws://127.0.0.1:{backend}", backend_pid
            )
        ]
        wanted = set(args.only.split(",")) if args.only else None

        def want(name: str) -> bool:
            return wanted is None or name in wanted

        if want("guildnet"):
            app = HostProcess(
                tmp,  # its cwd: finds ./certs/server.crt, the certificate nginx and chp serve
                {
                    "HOSTAPP_PROXY_ALLOWLIST": f"127.0.0.1:{backend}",
                    "HOSTAPP_EMBED_OPERATOR": "false",
                    "KUBECONFIG": str(tmp / "no-kubeconfig"),
                },
                "guildnet",
                start_timeout=60,
            )
            app.start()
            assert app.proc is not None
            procs.adopt("guildnet", app.proc)
            port, pid = app.port, app.pid
            prefix = f"/proxy/127.0.0.1:{backend}"
            wait_http(f"https://127.0.0.1:{port}{prefix}/healthz", timeout=60)
            targets.append(
                Target(
                    "guildnet",
                    f"https://127.0.0.1:{port}{prefix}",
                    f"wss://127.0.0.1:{port}{prefix}",
                    pid,
                )
            )
        if want("nginx"):
            nginx = shutil.which("nginx") or (
                "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
            )
            if nginx is None:
                print("nginx: not installed, skipped (apt-get install -y nginx-light)")
            else:
                port = free_port()
                conf = nginx_conf(tmp, port, backend, cert, key)
                pid = procs.start(
                    "nginx",
                    [nginx, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
                    tmp / "nginx.out",
                )
                wait_http(f"https://127.0.0.1:{port}/healthz")
                targets.append(
                    Target("nginx", f"https://127.0.0.1:{port}", f"wss://127.0.0.1:{port}", pid)
                )
        if want("chp"):
            if not CHP_BIN.exists() or not shutil.which("node"):
                print(
                    "chp: configurable-http-proxy not installed, skipped (cd bench/proxy && npm ci)"
                )
            else:
                port = free_port()
                pid = procs.start(
                    "chp",
                    [str(CHP_BIN), "--ip", "127.0.0.1", "--port", str(port),
                     "--api-ip", "127.0.0.1", "--api-port", str(free_port()),
                     "--default-target", f"http://127.0.0.1:{backend}",
                     "--ssl-key", str(key), "--ssl-cert", str(cert), "--log-level", "warn"],
                    tmp / "chp.log",
                    env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": "bench"},
                )  # fmt: skip
                wait_http(f"https://127.0.0.1:{port}/healthz")
                targets.append(
                    Target("chp", f"https://127.0.0.1:{port}", f"wss://127.0.0.1:{port}", pid)
                )
        yield targets
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


Metric = tuple[str, str, Callable[[Target], dict[str, float]], bool]  # name, unit, fn, higher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per load run")
    parser.add_argument("--download-mb", type=int, default=1024, help="download size, MiB")
    parser.add_argument("--only", help="comma-separated subset of guildnet,nginx,chp")
    parser.add_argument(
        "--figures", help="comma-separated subset of get1,get50,ws,download (default: all)"
    )
    args = parser.parse_args(argv)
    size = args.download_mb * 1024 * 1024
    started = time.monotonic()
    loader = "wrk" if shutil.which("wrk") else "asyncio"
    print(
        f"bench.proxy: {os.cpu_count()} CPUs, HTTP load from {loader}, "
        f"WebSocket load from {ws_loader()}"
    )
    print("TLS: guildnet, nginx and chp terminate TLS (self-signed); direct is plain HTTP.")
    with environment(args) as targets:
        names = [t.name for t in targets]
        print("targets:", ", ".join(names))
        results: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}

        figures = set(args.figures.split(",")) if args.figures else None

        def want_figure(name: str) -> bool:
            return figures is None or name in figures

        def record(t: Target, key: str, value: float) -> None:
            results[t.name].setdefault(key, []).append(value)

        def measured(
            t: Target, key: str, fn: Callable[..., dict[str, float]], *fn_args: object
        ) -> dict[str, float]:
            """Run ``fn``; for a proxy, also record its CPU per operation as ``key``."""
            before = tree_cpu(t.pid) if t.name != "direct" else 0.0
            r = fn(*fn_args)
            if t.name != "direct" and r.get("count"):
                record(t, key, (tree_cpu(t.pid) - before) / r["count"] * 1e6)
            return r

        def download_figure(url: str) -> dict[str, float]:
            # "count" makes the recorded CPU per operation seconds per GiB.
            return {"rate": download(url, size, 600), "count": size / 1024**3 * 1e6}

        for run in range(args.runs):
            for t in targets:
                if want_figure("get1"):
                    r = http_load(t.base + "/small", 1, args.seconds)
                    record(t, "get1_rate", r["rate"])
                    record(t, "get1_p50", r["p50_ms"])
                    record(t, "get1_p99", r["p99_ms"])
                if want_figure("get50"):
                    r = measured(t, "get50_cpu", http_load, t.base + "/small", 50, args.seconds)
                    record(t, "get50_rate", r["rate"])
                    record(t, "get50_p50", r["p50_ms"])
                    record(t, "get50_p99", r["p99_ms"])
                if want_figure("ws"):
                    r = measured(t, "ws_cpu", ws_load, t.ws_base + "/ws", 10, args.seconds)
                    record(t, "ws_rate", r["rate"])
                if want_figure("download"):
                    url = f"{t.base}/download?size={size}"
                    r = measured(t, "download_cpu", download_figure, url)
                    record(t, "download", r["rate"])
            print(f"  run {run + 1}/{args.runs} done ({time.monotonic() - started:.0f}s)")

    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in results.items()}
    for n in names:  # latency added over direct
        for k in ("get1_p50", "get1_p99", "get50_p50", "get50_p99"):
            if k in med[n]:
                med[n][k + "_added"] = med[n][k] - med["direct"][k]
    rows = [
        ("GET c=1 req/s", "get1_rate", True),
        ("GET c=1 added p50 ms", "get1_p50_added", False),
        ("GET c=1 added p99 ms", "get1_p99_added", False),
        ("GET c=50 req/s", "get50_rate", True),
        ("GET c=50 added p50 ms", "get50_p50_added", False),
        ("GET c=50 added p99 ms", "get50_p99_added", False),
        (f"download {args.download_mb} MiB MB/s", "download", True),
        ("WebSocket echo msg/s (10 conns)", "ws_rate", True),
        ("proxy CPU us/req (GET c=50)", "get50_cpu", False),
        ("proxy CPU s/GiB (download)", "download_cpu", False),
        ("proxy CPU us/msg (WebSocket)", "ws_cpu", False),
    ]
    proxies = [n for n in names if n != "direct"]
    head = f"{'figure':34}" + "".join(f"{n:>10}" for n in names)
    head += "".join(f"{n + '/dir':>13}" for n in proxies if True)
    if "chp" in names:
        head += "".join(f"{n + '/chp':>13}" for n in proxies if n != "chp")
    print()
    print(head)
    for label, key, _higher in rows:
        if not any(key in med[n] for n in names):
            continue
        line = f"{label:34}" + "".join(
            f"{med[n][key]:>10.2f}" if key in med[n] else f"{'-':>10}" for n in names
        )
        for n in proxies:
            base = med["direct"].get(key)
            if key.endswith("_added") or base is None or key not in med[n]:
                line += f"{'-':>13}"
            else:
                line += f"{_ratio(med[n][key], base):>13}"
        if "chp" in names:
            for n in proxies:
                if n != "chp":
                    both = key in med[n] and key in med["chp"]
                    line += f"{_ratio(med[n][key], med['chp'][key]):>13}" if both else f"{'-':>13}"
        print(line)
    print()
    print("ratios: higher is better for req/s, MB/s, msg/s; lower is better for added latency")
    print("and proxy CPU (x/chp < 1: less latency or CPU than configurable-http-proxy).")
    print("proxy CPU: user+system seconds of the proxy's processes (nginx: master and worker)")
    print("per request, per message, or per GiB downloaded.")
    print(
        f"medians of {args.runs} runs of {args.seconds:g}s; total {time.monotonic() - started:.0f}s"
    )
    return 0


def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "-"
    return f"{a / b:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
