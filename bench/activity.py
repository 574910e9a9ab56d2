"""What recording workspace activity costs per WebSocket chunk (``proxy.activity``).

    python -m bench.activity [--chunks 200000] [--runs 30]

Drives the real ``Splice.from_client`` and ``Splice.raw_data`` (the proxy's per-chunk hot
path) with and without an Activity record, against no-op transports (so only the splice's
own Python runs), for a keystroke-sized chunk (24 bytes), a lone ping frame and a 16 KiB
chunk. Prints nanoseconds per chunk and the difference the record makes. Not a test.

On the shared 2-core development VM (CPython 3.11, load average 9, min of 30 interleaved
runs; noisy, so indicative): the splice's own per-chunk Python costs 170-200 ns; the
record adds about 60 ns to a keystroke-sized data chunk, 30 ns to a 16 KiB chunk and 170 ns
to a lone ping frame (the one case that looks at the frame). A proxied chunk costs several
microseconds in TLS and socket calls besides, so the record is ~1% of it or less.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from guildnet.proxy.activity import Activity
from guildnet.proxy.splice import Splice
from guildnet.proxy.wsframes import OP_PING, OP_TEXT, encode_frame


class _Sink:
    transport = None

    def write_body(self, data: bytes) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass


def _splice(activity: Activity | None) -> Splice:
    upstream: Any = _Sink()
    splice = Splice(_Sink(), upstream, time.time, 3600.0, lambda s: None)
    splice.activity = activity
    return splice


def per_chunk(splice: Splice, data: bytes, n: int) -> float:
    up, down = splice.from_client, splice.raw_data
    started = time.perf_counter()
    for _ in range(n // 2):
        up(data)
        down(data)
    return (time.perf_counter() - started) / (n // 2 * 2) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    cases = {
        "keystroke (24 B text frame)": encode_frame(b"x" * 18, OP_TEXT),
        "lone ping frame": encode_frame(b"", OP_PING),
        "16 KiB chunk": b"\x82" + b"\x00" * 16383,
    }
    for label, data in cases.items():
        plain, recorded = _splice(None), _splice(Activity("c", "ns", "w"))
        withouts, withs = [], []
        for _ in range(args.runs):  # interleaved, so load from other processes hits both
            withouts.append(per_chunk(plain, data, args.chunks))
            withs.append(per_chunk(recorded, data, args.chunks))
        without, with_ = min(withouts), min(withs)
        print(
            f"{label:30} without {without:6.1f} ns/chunk  with {with_:6.1f} ns/chunk"
            f"  record costs {with_ - without:+5.1f} ns"
        )


if __name__ == "__main__":
    main()
