"""Benchmark: one table's changefeed fanned out to many SSE subscribers vs one direct feed.

    tests/harness/netns-run.sh .venv/bin/python -m bench.changefeeds \\
        [--subscribers 1000] [--rate 200] [--seconds 30] [--quick]

Real parts only: a RethinkDB 2.4.4 server (``tests.harness.rethinkdb``), a real Host App
(``twistd -n --reactor=guildnet guildnet`` with ``RETHINKDB_ADDR`` pointing at it), and a
separate Go client (``bench/sseclient``) holding every subscriber on its own HTTPS
connection to ``/sse/cluster/default/db/bench/tables/sse/changes``. A writer inserts
``--rate`` documents/s for ``--seconds`` s, each carrying its insert time (``ts``, taken
just before the insert is sent); latency is SSE receipt minus ``ts``.

Phases, each on a fresh empty table:

The server's files are on tmpfs (``/dev/shm``) when there is one: on a shared machine
the disk's load stalled its writes for seconds, which is not what is measured here.

1. baseline: the same writer read by ONE direct driver changefeed (a subprocess, the
   driver's blocking loop), nothing else running;
2. SSE: the subscribers connect and get their (empty) snapshot and ``ready``, then the
   writer runs; a direct driver feed on the same table runs alongside, so the RethinkDB
   share of the delay under the same load is visible.

Figures: latency p50/p99/max, events delivered vs expected (every subscriber must get every
row, once), resyncs, Host App CPU (user+sys of its process) and RSS, per-subscriber memory
(RSS with the subscribers connected minus RSS before, over their number), the client's and
the server's CPU (so a saturated client is visible), and the load average. Not a test: it
prints figures. Traffic stays on loopback and inside the namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

from tests.harness.hostapp import HostProcess, exchange, free_port
from tests.harness.processes import set_pdeathsig
from tests.harness.rethinkdb import RethinkServer

ROOT = Path(__file__).resolve().parents[1]
CLIENT_SRC = ROOT / "bench" / "sseclient"
DB = "bench"
SSE_PATH = f"/sse/cluster/default/db/{DB}/tables/{{table}}/changes"


def data_base() -> Path:
    """The server's files on tmpfs when there is one: its fsyncs then cost nothing, so a
    shared machine's disk load (builds, image pulls) does not stall the writes being timed."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="guildnet-bench-rdb-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="guildnet-bench-rdb-"))


def percentile(ordered: list[float], q: float) -> float:
    """Nearest rank on sorted values (the Go client computes it the same way)."""
    if not ordered:
        return float("nan")
    return ordered[int(q * (len(ordered) - 1) + 0.5)]


# processes ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """user+sys of one process (threads included, children not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def build_client(work: Path) -> Path:
    """The Go SSE client: ``make bench-changefeeds`` builds it; else build it here (stdlib only)."""
    prebuilt = Path(sys.executable).parent / "bench-sseclient"
    if prebuilt.exists() and prebuilt.stat().st_mtime >= (CLIENT_SRC / "main.go").stat().st_mtime:
        return prebuilt
    go = shutil.which("go")
    if go is None:
        raise SystemExit("bench-changefeeds needs Go (1.22+) to build bench/sseclient")
    out = work / "sseclient"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    subprocess.run([go, "build", "-o", str(out), "."], cwd=CLIENT_SRC, env=env, check=True)
    return out


class HostApp(HostProcess):
    """The Host App (``tests.harness.hostapp``'s launcher) whose default cluster's DB is
    ``rdb_addr``; the cluster has no Kubernetes: an API proxy URL nothing listens on."""

    def __init__(self, work: Path, rdb_addr: str) -> None:
        env = {
            "HOSTAPP_EMBED_OPERATOR": "false",
            "KUBECONFIG": str(work / "no-kubeconfig"),
            "HOSTAPP_API_PROXY_URL": f"http://127.0.0.1:{free_port()}",
            "RETHINKDB_ADDR": rdb_addr,
        }
        # Start-up on a loaded 2-core machine can take a minute.
        super().__init__(work, env, start_timeout=150.0)

    def request(self, method: str, path: str) -> tuple[int, Any]:
        """One HTTPS request: the status and the body (JSON decoded, other text as str)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        status, body, _ = exchange(conn, method, path)
        return status, body

    def fanout_writes(self) -> float:
        """``guildnet_rdb_fanout_writes_total`` of the default cluster (0 before any)."""
        _, text = self.request("GET", "/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "guildnet_rdb_fanout_writes_total" and sample.labels == {
                    "cluster": "default"
                }:
                    return float(sample.value)
        return 0.0

    def wait(self, path: str, timeout: float = 150.0) -> None:
        """Until ``path`` answers 200."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"twistd exited; log: {self.log_path}")
            try:
                status, last = self.request("GET", path)
                if status == 200:
                    return
            except OSError as e:
                last = e
            time.sleep(0.3)
        raise RuntimeError(f"{path} not 200 after {timeout}s ({last}); log: {self.log_path}")


class JsonLines:
    """A child speaking one JSON object a line on stdout (and reading them on stdin)."""

    def __init__(self, argv: list[str], log: Path, stdin: bool = False) -> None:
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            preexec_fn=set_pdeathsig,
        )
        self.log = log
        self.name = Path(argv[0]).name

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def read(self, timeout: float) -> dict[str, Any]:
        out: list[str] = []
        assert self.proc.stdout is not None
        stdout: IO[str] = self.proc.stdout
        reader = threading.Thread(target=lambda: out.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not out or not out[0]:
            raise RuntimeError(f"{self.name}: no answer in {timeout}s; see {self.log}")
        result: dict[str, Any] = json.loads(out[0])
        return result

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# the writer and the direct feed ---------------------------------------------------------------


@dataclass
class Written:
    rows: int
    seconds: float
    max_lag_ms: float  # worst delay of an insert behind its schedule


def write(server: RethinkServer, table: str, rate: float, seconds: float) -> Written:
    """Insert ``rate`` rows/s for ``seconds`` s on a schedule; each row {id, ts}.

    ``noreply``: the writer never waits for a round trip, so the rate holds on a loaded
    machine; ``noreply_wait`` at the end makes sure every insert was applied.
    """
    from rethinkdb import RethinkDB

    r = RethinkDB()
    conn = server.sync_connect()
    total = int(rate * seconds)
    max_lag = 0.0
    try:
        t0 = time.monotonic()
        for i in range(total):
            due = t0 + i / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                max_lag = max(max_lag, now - due)
            r.db(DB).table(table).insert({"id": i, "ts": time.time()}).run(
                conn, noreply=True, durability="soft"
            )
        elapsed = time.monotonic() - t0
        conn.noreply_wait()
    finally:
        conn.close()
    return Written(total, elapsed, max_lag * 1000)


def direct_feed(host: str, port: int, table: str, expect: int, timeout: float) -> int:
    """Child mode: one driver changefeed; ``{"ready": true}`` then the latency summary."""
    from rethinkdb import RethinkDB
    from rethinkdb.errors import ReqlTimeoutError

    r = RethinkDB()
    conn = r.connect(host=host, port=port, timeout=10)
    cursor = r.db(DB).table(table).changes(include_states=True).run(conn)
    latencies: list[float] = []
    by_id: dict[int, float] = {}
    seen: set[int] = set()
    duplicates = 0
    deadline: float | None = None
    while len(seen) < expect:
        wait = 600.0 if deadline is None else deadline - time.monotonic()
        if wait <= 0:
            break
        try:
            item = cursor.next(wait=wait)
        except ReqlTimeoutError:
            break
        now = time.time()
        if "state" in item:
            if item["state"] == "ready":
                print(json.dumps({"ready": True}), flush=True)
            continue
        new = item.get("new_val") or {}
        if deadline is None:
            deadline = time.monotonic() + timeout
        if new.get("id") in seen:
            duplicates += 1
            continue
        seen.add(new["id"])
        latencies.append((now - new["ts"]) * 1000)
        by_id[new["id"]] = latencies[-1]
    cursor.close()
    worst = sorted(by_id.items(), key=lambda kv: -kv[1])[:10]
    print(f"slowest rows (id, ms): {worst}", file=sys.stderr)
    conn.close()
    latencies.sort()
    print(
        json.dumps(
            {
                "delivered": len(seen),
                "expected": expect,
                "duplicates": duplicates,
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
                "max_ms": percentile(latencies, 1.0),
            }
        ),
        flush=True,
    )
    return 0


def start_direct_feed(
    server: RethinkServer, table: str, expect: int, timeout: float, work: Path
) -> JsonLines:
    argv = [sys.executable, "-m", "bench.changefeeds", "--direct-feed", table]
    argv += ["--feed-server", server.addr, "--feed-expect", str(expect)]
    argv += ["--feed-timeout", str(timeout)]
    feed = JsonLines(argv, work / f"direct-{table}.log")
    if not feed.read(60).get("ready"):
        raise RuntimeError("the direct feed did not become ready")
    return feed


# the run --------------------------------------------------------------------------------------


@contextlib.contextmanager
def stopping(*things: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for thing in reversed(things):
            with contextlib.suppress(Exception):
                thing.stop()


def run(args: argparse.Namespace, work: Path) -> dict[str, Any] | None:
    expect = int(args.rate * args.seconds)
    drain = args.drain
    client_bin = build_client(work)
    print(f"load average before: {loadavg()} ({os.cpu_count()} cores)", flush=True)
    rdb_base = data_base()
    server = RethinkServer(rdb_base)
    try:
        server.start()
        server.run(lambda r: r.db_create(DB))
        for table in ("direct", "sse"):
            server.run(lambda r, t=table: r.db(DB).table_create(t, durability="soft"))
        server.run(lambda r: r.db(DB).wait())

        # 1. baseline: the writer read by one direct driver feed, nothing else running.
        feed = start_direct_feed(server, "direct", expect, args.seconds + drain, work)
        with stopping(feed):
            w0 = write(server, "direct", args.rate, args.seconds)
            base = feed.read(drain + 30)
        print(
            f"baseline: {w0.rows} rows in {w0.seconds:.1f}s (max {w0.max_lag_ms:.0f} ms behind "
            f"schedule); one direct feed p50 {base['p50_ms']:.1f} ms p99 {base['p99_ms']:.1f} ms",
            flush=True,
        )

        # 2. the Host App, N SSE subscribers, and a direct feed alongside.
        app = HostApp(work, server.addr)
        with stopping(app):
            app.start()
            app.wait("/api/cluster/default/db/health")  # the RDB manager exists and is ready
            time.sleep(2)
            rss0 = memory_kib(app.pid)["VmRSS"]
            url = f"https://127.0.0.1:{app.port}" + SSE_PATH.format(table="sse")
            client = JsonLines(
                [str(client_bin), "-url", url, "-n", str(args.subscribers)],
                work / "sseclient.log",
                stdin=True,
            )
            with stopping(client):
                hello = client.read(600)
                print(
                    f"{hello['connected']} subscribers connected and ready in "
                    f"{hello['seconds']:.1f}s ({hello['failed']} failed {hello['errors']})",
                    flush=True,
                )
                if hello["failed"]:
                    return None
                time.sleep(3)  # let the connection burst settle before measuring memory
                rss1 = memory_kib(app.pid)["VmRSS"]
                alongside = start_direct_feed(server, "sse", expect, args.seconds + drain, work)
                with stopping(alongside):
                    pids = {"app": app.pid, "client": client.pid, "rdb": server.proc.pid}  # type: ignore[union-attr]
                    writes0 = app.fanout_writes()
                    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
                    t0 = time.monotonic()
                    profiler = start_profile(args, app.pid, work)
                    w1 = write(server, "sse", args.rate, args.seconds)
                    load_during = loadavg()
                    client.send({"expect": expect, "timeout": drain})
                    sse = client.read(drain + 60)
                    t1 = time.monotonic()
                    cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
                    writes = app.fanout_writes() - writes0
                    mem = memory_kib(app.pid)
                    beside = alongside.read(drain + 30)
                    if profiler is not None:
                        profiler.wait(60)
        log_text = app.log_path.read_text(errors="replace")
    finally:
        server.close()
        shutil.rmtree(rdb_base, ignore_errors=True)

    window = t1 - t0
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    n = hello["connected"]

    def row(name: str, res: dict[str, Any], delivered: str) -> str:
        r50 = res["p50_ms"] / base["p50_ms"] if base["p50_ms"] > 0 else float("nan")
        r99 = res["p99_ms"] / base["p99_ms"] if base["p99_ms"] > 0 else float("nan")
        return (
            f"{name:34s} {res['p50_ms']:8.1f} {res['p99_ms']:8.1f} {res['max_ms']:8.1f}"
            f"  {delivered:>17s}  x{r50:6.2f}  x{r99:6.2f}"
        )

    print()
    print(
        f"{args.subscribers} SSE subscribers, {args.rate:g} rows/s for {args.seconds:g}s "
        f"({w1.rows} rows in {w1.seconds:.1f}s, max {w1.max_lag_ms:.0f} ms behind schedule)"
    )
    print(
        f"{'latency insert -> receipt':34s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}"
        f"  {'delivered':>17s}  {'p50/base':>7s}  {'p99/base':>7s}"
    )
    print(row("direct driver feed (baseline)", base, f"{base['delivered']}/{expect}"))
    print(row("direct feed during the SSE run", beside, f"{beside['delivered']}/{expect}"))
    print(row(f"SSE via Host App x{n}", sse, f"{sse['delivered']}/{sse['expected']}"))
    print(
        f"  every event delivered: {sse['delivered'] == sse['expected']} "
        f"(per subscriber min {sse['min_each']} max {sse['max_each']} of {expect}; "
        f"{sse['complete_subscribers']}/{n} complete; duplicates {sse['duplicates']}; "
        f"resyncs {sse['resyncs']}; snapshots {sse['snapshots']}; "
        f"other events {sse['other_events']})"
    )
    if sse["closed"]:
        print(f"  streams that ended early: {sse['closed']}")
    print(
        f"Host App CPU {cpu['app']:.1f}s in {window:.1f}s (write + drain) = "
        f"{100 * cpu['app'] / window:.0f}% of one core; client {100 * cpu['client'] / window:.0f}%;"
        f" rethinkdb {100 * cpu['rdb'] / window:.0f}%"
    )
    print(
        f"Host App RSS: {rss0 / 1024:.0f} MiB before subscribers, {rss1 / 1024:.0f} MiB with "
        f"{n} ({(rss1 - rss0) / max(n, 1):.1f} KiB per subscriber), {mem['VmRSS'] / 1024:.0f} MiB "
        f"at the end, peak {mem['VmHWM'] / 1024:.0f} MiB"
    )
    print(f"load average: during the write {load_during}, after {loadavg()}")
    goal = sse["p99_ms"] < 50 and sse["delivered"] == sse["expected"]
    print(f"goal (p99 < 50 ms, every event delivered): {'met' if goal else 'NOT met'}")
    lost = log_text.count(f"changefeed {DB}.sse: lost")
    pings = log_text.count("ping failed")
    if lost or pings:
        print(
            f"the Host App lost its server feed {lost} time(s) (failed pings: {pings}): every "
            "subscriber got a resync and a fresh snapshot instead of the changes in between"
        )
    if "Traceback" in log_text:
        print(f"the Host App logged a traceback: {app.log_path}")
    events = max(sse["delivered"], 1)
    us_per_event = 1e6 * cpu["app"] / events
    print(f"Host App CPU per subscriber-event delivered: {us_per_event:.2f} us")
    # The ring (guildnet.rdb.feeds) uses whatever CPU it is given to write more often
    # with fewer changes each; the cost of one write is the efficiency figure.
    us_per_write = 1e6 * cpu["app"] / max(writes, 1)
    print(
        f"fan-out writes: {writes:.0f} ({events / max(writes, 1):.1f} changes per write), "
        f"{us_per_write:.1f} us Host App CPU per write"
    )
    if args.profile:
        print_profile(work / "hostapp.pyspy")
    return {
        "p50_ms": sse["p50_ms"],
        "p99_ms": sse["p99_ms"],
        "base_p50_ms": base["p50_ms"],
        "base_p99_ms": base["p99_ms"],
        "beside_p99_ms": beside["p99_ms"],
        "all_delivered": sse["delivered"] == sse["expected"],
        "resyncs": sse["resyncs"],
        "app_cpu_pct": 100 * cpu["app"] / window,
        "us_per_event": us_per_event,
        "us_per_write": us_per_write,
        "changes_per_write": events / max(writes, 1),
        "kib_per_sub": (rss1 - rss0) / max(n, 1),
        "peak_mib": mem["VmHWM"] / 1024,
        "load": float(load_during.split()[0]),
    }


def start_profile(args: argparse.Namespace, pid: int, work: Path) -> subprocess.Popen[bytes] | None:
    """``--profile``: py-spy (pip install py-spy into the venv) samples the Host App while
    the writer runs; the raw (collapsed) stacks land in the work directory."""
    if not args.profile:
        return None
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("--profile: py-spy is not installed in this venv (pip install py-spy)")
        return None
    out = work / "hostapp.pyspy"
    argv = [str(spy), "record", "-p", str(pid), "-d", str(int(args.seconds)), "-r", "100"]
    argv += ["--nonblocking", "--format", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_profile(path: Path, top: int = 15) -> None:
    """The functions the samples were in (self time), the busiest first."""
    if not path.exists():
        print("no profile was written")
        return
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.split(";")[-1]
        name, _, where = leaf.partition(" (")
        key = f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]}"
        own[key] = own.get(key, 0) + int(samples)
        total += int(samples)
    print(f"profile of the Host App during the write ({total} samples, self time):")
    for key, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * n / max(total, 1):5.1f}%  {key})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="inserts per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the writer runs")
    parser.add_argument(
        "--quick", action="store_true", help="100 subscribers, 50 rows/s for 5 s (a smoke run)"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=300.0,
        help="seconds after the writer stops to wait for every event to arrive",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--runs", type=int, default=1, help="repeat, then print the medians")
    parser.add_argument(
        "--profile", action="store_true", help="sample the Host App with py-spy during the write"
    )
    parser.add_argument("--direct-feed", help=argparse.SUPPRESS)  # child mode: the table
    parser.add_argument("--feed-server", help=argparse.SUPPRESS)
    parser.add_argument("--feed-expect", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--feed-timeout", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_feed:
        host, _, port = args.feed_server.rpartition(":")
        return direct_feed(
            host.strip("[]"), int(port), args.direct_feed, args.feed_expect, args.feed_timeout
        )
    if args.quick:
        args.subscribers, args.rate, args.seconds = 100, 50.0, 5.0
    # 1,000 connections and their sockets: raise the soft descriptor limit (children inherit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * args.subscribers + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    results: list[dict[str, Any]] = []
    for i in range(args.runs):
        if args.runs > 1:
            print(f"\n=== run {i + 1} of {args.runs}", flush=True)
        work = Path(tempfile.mkdtemp(prefix="guildnet-bench-cf-"))
        try:
            result = run(args, work)
        finally:
            if args.keep:
                print(f"logs kept in {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
        if result is None:
            return 1
        results.append(result)
    if len(results) > 1:
        print_medians(args, results)
    return 0


def print_medians(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in results))

    print(
        f"\nmedians of {len(results)} runs, {args.subscribers} subscribers x {args.rate:g} rows/s"
        f" for {args.seconds:g}s: SSE p50 {med('p50_ms'):.1f} ms p99 {med('p99_ms'):.1f} ms;"
        f" direct feed p50 {med('base_p50_ms'):.1f} ms p99 {med('base_p99_ms'):.1f} ms"
        f" (during the SSE run p99 {med('beside_p99_ms'):.1f} ms); SSE/direct p99"
        f" x{med('p99_ms') / max(med('base_p99_ms'), 1e-9):.1f}; every event delivered in"
        f" {sum(r['all_delivered'] for r in results)}/{len(results)} runs; resyncs"
        f" {sum(r['resyncs'] for r in results)}; Host App {med('app_cpu_pct'):.0f}% of a core,"
        f" {med('us_per_event'):.2f} us CPU per subscriber-event, {med('us_per_write'):.1f} us"
        f" per write ({med('changes_per_write'):.1f} changes each); {med('kib_per_sub'):.0f} KiB"
        f" per subscriber, peak RSS {med('peak_mib'):.0f} MiB; load average {med('load'):.1f}"
    )
    print(
        "per run (p50 / p99 ms):", [(round(r["p50_ms"], 1), round(r["p99_ms"], 1)) for r in results]
    )


if __name__ == "__main__":
    raise SystemExit(main())
