"""Memory of the proxy under long transfers: a slow 2 GiB download and a 2 GiB upload.

    python -m bench.proxy.memory [--gib 2] [--rate 100M]

Starts the same backend and ``twistd --reactor=guildnet guildnet`` as ``bench.proxy``,
then streams through ``/proxy/127.0.0.1:<port>/``: a download read by a client
throttled below the proxy's speed (``curl --limit-rate``: the proxy must hold back
the upstream, not buffer), and an upload of zeros that the backend hashes. It prints
the twistd process's resident memory before, and its peak during, each transfer.
Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

from bench.proxy.__main__ import environment


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def child_twistd() -> int:
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if "twistd" in cmd and parent == me:
            return int(entry)
    raise RuntimeError("twistd is not running")


def peak_during(pid: int, argv: list[str]) -> tuple[str, float, int]:
    samples: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            samples.append(rss_kib(pid))
            time.sleep(0.1)

    thread = threading.Thread(target=watch)
    thread.start()
    start = time.monotonic()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=True)
    finally:
        stop.set()
        thread.join()
    return out.stdout.strip(), time.monotonic() - start, max(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.memory", description=__doc__)
    parser.add_argument("--gib", type=float, default=2.0, help="size of each transfer, GiB")
    parser.add_argument("--rate", default="100M", help="the slow client's curl --limit-rate")
    args = parser.parse_args(argv)
    size = int(args.gib * 1024**3)
    with environment(argparse.Namespace(only="guildnet")) as targets:
        guildnet = next(t for t in targets if t.name == "guildnet")
        pid = child_twistd()
        subprocess.run(["curl", "-sk", "-o", "/dev/null", guildnet.base + "/small"], check=True)
        base = rss_kib(pid)
        print(f"twistd RSS before: {base} KiB")
        download = [
            "curl", "-sk", "--limit-rate", args.rate, "-o", "/dev/null",
            "-w", "%{size_download} bytes, HTTP %{http_code}",
            f"{guildnet.base}/download?size={size}",
        ]  # fmt: skip
        upload = [
            "sh", "-c",
            f"head -c {size} /dev/zero | curl -sk -T - -o /dev/null "
            f"-w '%{{size_upload}} bytes, HTTP %{{http_code}}' {guildnet.base}/upload",
        ]  # fmt: skip
        for name, command in (
            (f"download, client at {args.rate}B/s", download),
            ("upload", upload),
        ):
            result, seconds, peak = peak_during(pid, command)
            print(f"{name}: {result} in {seconds:.0f}s; peak RSS {peak} KiB (+{peak - base} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
