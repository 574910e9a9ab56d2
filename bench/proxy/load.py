"""Load generators for bench.proxy: WebSocket echo, and HTTP when wrk is absent.

asyncio clients, each run in a subprocess of their own so they never share a core's
time slice with a proxy's Python process more than the OS scheduler decides. Output
is one JSON line on stdout.

    python -m bench.proxy.load http URL --connections N --seconds S
    python -m bench.proxy.load ws URL --connections N --seconds S [--size BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from urllib.parse import urlsplit

from tests.backend import ws


def _target(url: str) -> tuple[str, int, str, ssl.SSLContext | None]:
    parts = urlsplit(url)
    tls = parts.scheme in ("https", "wss")
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the benchmark's own self-signed certificate
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname or "127.0.0.1", port, path, ctx


async def _http_worker(url: str, deadline: float, latencies: list[float]) -> None:
    host, port, path, ctx = _target(url)
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _ws_worker(url: str, deadline: float, size: int, latencies: list[float]) -> None:
    host, port, path, ctx = _target(url)
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    key = ws.new_key().decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: https://{host}:{port}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(f"no WebSocket upgrade: {head[:200]!r}")
    decoder = ws.FrameDecoder()
    payload = b"m" * size
    frame = ws.encode(ws.OP_TEXT, payload, mask=True)
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            writer.write(frame)
            got: list[tuple[int, bytes]] = []
            while not got:
                got = decoder.feed(await reader.read(65536))
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _run(
    kind: str, url: str, connections: int, seconds: float, size: int
) -> dict[str, float]:
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    start = time.monotonic()
    if kind == "http":
        workers = [_http_worker(url, deadline, latencies) for _ in range(connections)]
    else:
        workers = [_ws_worker(url, deadline, size, latencies) for _ in range(connections)]
    await asyncio.gather(*workers)
    elapsed = time.monotonic() - start
    latencies.sort()
    n = len(latencies)
    return {
        "rate": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        "count": n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.load")
    parser.add_argument("kind", choices=("http", "ws"))
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=32)
    opts = parser.parse_args(argv)
    result = asyncio.run(_run(opts.kind, opts.url, opts.connections, opts.seconds, opts.size))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
