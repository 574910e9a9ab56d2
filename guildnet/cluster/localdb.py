"""Per-cluster SQLite for small host-side state, on a thread of its own.

sqlite3 connections belong to the thread that made them, so the connection
lives on a one-thread pool and every query is a Deferred.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from guildnet.cluster.threads import stop_pools

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated REAL NOT NULL DEFAULT (julianday('now'))
);
"""


class LocalDB:
    """One SQLite file; ``open``/``close`` bracket its life."""

    def __init__(self, path: Path, reactor: IReactorFromThreads, name: str) -> None:
        self.path = path
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        self._conn: sqlite3.Connection | None = None

    @property
    def pool(self) -> ThreadPool:
        """The database's one-thread pool (its queue shows in /metrics)."""
        return self._pool

    def open(self) -> Deferred[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._pool.start()
        return self._run(self._open)

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, timeout=5.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        conn.commit()
        self._conn = conn

    def _run(self, fn: Callable[[], T]) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, fn)  # type: ignore[arg-type]

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Run ``fn(connection)`` on the database thread, committing after it."""

        def call() -> T:
            if self._conn is None:
                raise RuntimeError(f"local database {self.path} is closed")
            with self._conn:
                return fn(self._conn)

        return self._run(call)

    def get(self, key: str) -> Deferred[str | None]:
        def q(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return self.run(q)

    def put(self, key: str, value: str) -> Deferred[None]:
        def q(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = excluded.value, updated = julianday('now')",
                (key, value),
            )

        return self.run(q)

    def health(self) -> Deferred[bool]:
        return self.run(lambda c: c.execute("PRAGMA quick_check").fetchone()[0] == "ok")

    def check(self) -> Deferred[str | None]:
        """``PRAGMA quick_check`` and a write read back; None when both pass, else why not."""

        def q(c: sqlite3.Connection) -> str | None:
            verdict = str(c.execute("PRAGMA quick_check").fetchone()[0])
            if verdict != "ok":
                return f"quick_check: {verdict[:200]}"
            token = os.urandom(8).hex()
            c.execute(
                "INSERT INTO kv(key, value) VALUES ('guildnet.health', ?) ON CONFLICT(key) "
                "DO UPDATE SET value = excluded.value, updated = julianday('now')",
                (token,),
            )
            row = c.execute("SELECT value FROM kv WHERE key = 'guildnet.health'").fetchone()
            if row is None or row[0] != token:
                return "a written value did not read back"
            return None

        return self.run(q)

    def close(self) -> Deferred[None]:
        """Close the connection, then stop the thread (joined off the reactor)."""

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if not self._pool.started:
            return succeed(None)
        d = self._run(_close)
        d.addBoth(lambda r: stop_pools(self._reactor, [self._pool]).addCallback(lambda _: r))
        return d
