"""Thread pools owned by an Instance, and stopping them without blocking."""

from __future__ import annotations

import threading

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool


def stop_pools(reactor: IReactorFromThreads, pools: list[ThreadPool]) -> Deferred[None]:
    """Stop (and join) thread pools from a short-lived helper thread.

    ``ThreadPool.stop`` joins its workers, which must not block the reactor,
    and the reactor's own pool is not ours to use for it.
    """
    d: Deferred[None] = Deferred()

    def stop_all() -> None:
        try:
            for pool in pools:
                if pool.started:
                    pool.stop()
        finally:
            reactor.callFromThread(d.callback, None)

    threading.Thread(target=stop_all, name="guildnet-pool-stopper", daemon=True).start()
    return d
