"""The fixed Twisted driver (guildnet.rdb.driver) against a real RethinkDB 2.4.4 server.

Each bug from the research note has two tests: one shows the stock Twisted module still has
it (so the fix is still needed, and a driver upgrade that changes this is noticed), one shows
the wrapper's behaviour. Remove a fix and its test fails.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from rethinkdb import RethinkDB
from rethinkdb.errors import ReqlAuthError, ReqlDriverError, ReqlError, ReqlTimeoutError
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from guildnet.rdb import driver
from guildnet.rdb.driver import ConnectOptions, r
from tests.harness.rethinkdb import RethinkServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
reactor: Any = _reactor


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def opts(server: RethinkServer, **kw: Any) -> ConnectOptions:
    base: dict[str, Any] = {"host": server.host, "port": server.port, "timeout": 3.0}
    if server.password is not None:
        base["password"] = server.password
    if server.ca_file is not None:
        base.update(tls=True, ca_file=server.ca_file)
    base.update(kw)
    return ConnectOptions(**base)


def stock_connect(server: RethinkServer, **kw: Any) -> Deferred[Any]:
    """The driver's own Twisted loop, unfixed."""
    rdb = RethinkDB()
    rdb.set_loop_type("twisted")
    kw.setdefault("host", server.host)
    kw.setdefault("port", server.port)
    try:
        return rdb.connect(**kw)  # type: ignore[no-any-return]
    except Exception as e:  # the stock module raises some errors synchronously
        from twisted.internet.defer import fail

        return fail(e)


@inlineCallbacks
def until(probe: Any, timeout: float) -> Any:
    """Wait (polling) until ``probe()`` is truthy or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while not probe() and time.monotonic() < deadline:
        yield sleep(0.02)


def settled(d: Deferred[Any]) -> list[Any]:
    """A box that holds ``d``'s result (value or Failure) once it fires."""
    box: list[Any] = []
    d.addBoth(box.append)
    return box


def drop(conn: Any) -> None:
    """Cut a (stock) connection's socket so the test leaves nothing open."""
    inst = getattr(conn, "_instance", None)
    proto = getattr(inst, "_connection", None)
    if proto is not None and proto.transport is not None:
        proto.transport.abortConnection()


class DriverTestCase(TestCase):
    server: RethinkServer

    def make_db(self, server: RethinkServer, tables: tuple[str, ...] = ("t",)) -> str:
        name = f"d{time.monotonic_ns()}"
        server.run(lambda q: q.db_create(name))
        for t in tables:
            server.run(lambda q, t=t: q.db(name).table_create(t))
            server.run(lambda q, t=t: q.db(name).table(t).wait())
        return name


class TLSTests(DriverTestCase):
    """A: ``ssl=`` is ignored by the stock module."""

    @pytest.fixture(autouse=True)
    def _server(self, rdb_tls_server: RethinkServer) -> None:
        self.server = rdb_tls_server

    @inlineCallbacks
    def test_wrapper_speaks_tls_and_verifies_the_server(self) -> Any:
        conn = yield driver.connect(opts(self.server))
        try:
            self.assertEqual((yield r.expr(1).run(conn)), 1)
            # The transport under the driver protocol is a TLS connection.
            transport = conn._instance._connection.transport
            self.assertTrue(ISSLTransport.providedBy(transport), transport)
            self.assertIsNotNone(transport.getPeerCertificate())
        finally:
            yield driver.close(conn)

    @inlineCallbacks
    def test_wrapper_refuses_a_server_signed_by_another_ca(self) -> Any:
        with self.assertRaises(ReqlDriverError) as cm:
            yield driver.connect(opts(self.server, ca_file=self.server.other_ca_file))
        self.assertIn("certificate verify failed", str(cm.exception))

    @inlineCallbacks
    def test_wrapper_checks_the_host_name(self) -> Any:
        # The certificate names 198.18.0.x/127.0.0.1/::1/localhost, not this name.
        with self.assertRaises(ReqlDriverError):
            yield driver.connect(opts(self.server, host="127.0.0.2", timeout=3.0))

    @inlineCallbacks
    def test_stock_module_sends_plaintext(self) -> Any:
        started = time.monotonic()
        with self.assertRaises(ReqlDriverError):
            yield stock_connect(self.server, ssl={"ca_certs": str(self.server.ca_file)}, timeout=2)
        # It timed out: the server waited for a ClientHello that never came.
        self.assertGreater(time.monotonic() - started, 1.5)


class PasswordTests(DriverTestCase):
    @pytest.fixture(autouse=True)
    def _server(self, rdb_password_server: RethinkServer) -> None:
        self.server = rdb_password_server

    @inlineCallbacks
    def test_right_password(self) -> Any:
        conn = yield driver.connect(opts(self.server))
        self.assertEqual((yield r.expr(2).run(conn)), 2)
        yield driver.close(conn)

    @inlineCallbacks
    def test_wrong_password_is_an_auth_error(self) -> Any:
        with self.assertRaises(ReqlAuthError):
            yield driver.connect(opts(self.server, password="wrong"))


class AddressTests(DriverTestCase):
    """D (IPv6 literals) and G (fractional timeouts)."""

    @pytest.fixture(autouse=True)
    def _server(self, rdb_server: RethinkServer) -> None:
        self.server = rdb_server

    @inlineCallbacks
    def test_wrapper_connects_to_an_ipv6_literal(self) -> Any:
        # RethinkDB always listens on loopback too, ::1 included.
        conn = yield driver.connect(opts(self.server, host="::1"))
        self.assertEqual(conn._instance._connection.transport.getPeer().host, "::1")
        self.assertEqual((yield r.expr(3).run(conn)), 3)
        yield driver.close(conn)

    @inlineCallbacks
    def test_stock_module_fails_on_an_ipv6_literal(self) -> Any:
        with self.assertRaises(ReqlDriverError) as cm:
            yield stock_connect(self.server, host="::1", timeout=2)
        self.assertIn("TCP4ClientEndpoint", str(cm.exception))

    @inlineCallbacks
    def test_wrapper_honours_a_fractional_timeout(self) -> Any:
        for _ in range(5):
            conn = yield driver.connect(opts(self.server, timeout=0.5))
            self.assertEqual((yield r.expr(1).run(conn)), 1)
            yield driver.close(conn)

    @inlineCallbacks
    def test_stock_module_fails_with_a_fractional_timeout(self) -> Any:
        with self.assertRaises(ReqlDriverError):
            yield stock_connect(self.server, timeout=0.5)

    @inlineCallbacks
    def test_silent_listener_times_out_on_time(self) -> Any:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        self.addCleanup(listener.close)
        started = time.monotonic()
        with self.assertRaises(ReqlTimeoutError):
            yield driver.connect(
                ConnectOptions("127.0.0.1", listener.getsockname()[1], timeout=1.0)
            )
        self.assertLess(time.monotonic() - started, 2.5)

    @inlineCallbacks
    def test_refused_fails_fast(self) -> Any:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        started = time.monotonic()
        with self.assertRaises(ReqlDriverError) as cm:
            yield driver.connect(ConnectOptions("127.0.0.1", port, timeout=3.0))
        self.assertLess(time.monotonic() - started, 1.5)
        self.assertIn("refused", str(cm.exception).lower())


class FetchNextTimeoutTests(DriverTestCase):
    """C: a change after a ``fetch_next(wait=N)`` timeout kills the connection (stock)."""

    @pytest.fixture(autouse=True)
    def _server(self, rdb_server: RethinkServer) -> None:
        self.server = rdb_server

    @inlineCallbacks
    def scenario(self, conn: Any, db: str) -> Any:
        """Two feeds on one connection; time out a wait on the first, then write twice.

        Returns what the second feed's two ``next()`` calls got. (Whether the first write
        reaches the second feed before the stock module drops the connection depends on
        the order of the server's replies; the second write never can.)
        """
        t = r.db(db).table("t")
        feed1 = yield t.changes().run(conn)
        feed2 = yield t.changes().run(conn)
        first = settled(feed2.next())
        with self.assertRaises(ReqlTimeoutError):
            yield feed1.fetch_next(wait=0.3)
        writer = yield driver.connect(opts(self.server))
        yield t.insert({"id": 1}).run(writer)
        yield until(lambda: first or not conn.is_open(), 5.0)
        later = settled(feed2.next())
        yield t.insert({"id": 2}).run(writer)
        yield driver.close(writer)
        return first, later

    @inlineCallbacks
    def test_wrapper_keeps_the_connection(self) -> Any:
        db = self.make_db(self.server)
        conn = yield driver.connect(opts(self.server))
        first, later = yield self.scenario(conn, db)
        yield until(lambda: later, 5.0)
        self.assertEqual([c["new_val"] for c in first + later], [{"id": 1}, {"id": 2}])
        self.assertTrue(conn.is_open())
        self.assertEqual((yield r.expr(1).run(conn)), 1)
        yield driver.close(conn)

    @inlineCallbacks
    def test_stock_module_drops_the_connection(self) -> Any:
        db = self.make_db(self.server)
        conn = yield stock_connect(self.server, timeout=3)
        self.addCleanup(drop, conn)
        _, later = yield self.scenario(conn, db)
        yield sleep(1.5)  # what the wrapper's feed gets well within this, stock never gets
        self.flushLoggedErrors()  # the stock module logs AlreadyCalledError/ReqlDriverError
        self.assertFalse(conn.is_open())
        self.assertEqual(later, [], "stock: the other feed on the connection hangs silently")
        with self.assertRaises(ReqlDriverError):
            yield r.expr(1).run(conn)

    @inlineCallbacks
    def test_next_with_wait_leaves_no_timer_behind(self) -> Any:
        db = self.make_db(self.server)
        conn = yield driver.connect(opts(self.server))
        feed = yield r.db(db).table("t").changes().run(conn)
        got = feed.next(wait=5)
        yield r.db(db).table("t").insert({"id": 2}).run(conn)
        item = yield got
        self.assertEqual(item["new_val"], {"id": 2})
        # trial fails the test if the 5 s timer were still pending at the end.
        yield driver.close(conn)


class ServerDeathTests(DriverTestCase):
    """B: pending feeds and ``reconnect()`` hang after the server dies (stock)."""

    @pytest.fixture(autouse=True)
    def _server(self, rdb_private: RethinkServer) -> None:
        self.server = rdb_private

    @inlineCallbacks
    def open_feed(self, connect: Any) -> Any:
        db = self.make_db(self.server)
        conn = yield connect()
        feed = yield r.db(db).table("t").changes().run(conn)
        return conn, feed

    @inlineCallbacks
    def test_wrapper_fails_pending_feeds_when_the_server_is_killed(self) -> Any:
        conn, feed = yield self.open_feed(lambda: driver.connect(opts(self.server)))
        pending_next = settled(feed.next())
        pending_fetch = settled(feed.fetch_next())
        pending_query = settled(r.expr(1).do(lambda _: r.expr(2)).run(conn))
        yield sleep(0.1)
        self.server.kill()
        killed = time.monotonic()
        while not (pending_next and pending_fetch) and time.monotonic() - killed < 2:
            yield sleep(0.02)
        self.assertLess(time.monotonic() - killed, 1.0)
        self.assertTrue(pending_next[0].check(ReqlError), pending_next)
        self.assertIn("connection lost", str(pending_next[0].value))
        self.assertTrue(pending_fetch)
        del pending_query  # may have been answered before the kill
        self.assertFalse(conn.is_open())

    @inlineCallbacks
    def test_wrapper_fails_pending_feeds_on_a_clean_shutdown(self) -> Any:
        _conn, feed = yield self.open_feed(lambda: driver.connect(opts(self.server)))
        pending = settled(feed.next())
        self.server.stop()
        yield until(lambda: pending, 3.0)
        self.assertTrue(pending[0].check(ReqlError), pending)

    @inlineCallbacks
    def test_wrapper_reconnects_after_a_restart(self) -> Any:
        conn, _ = yield self.open_feed(lambda: driver.connect(opts(self.server)))
        self.server.kill()
        yield sleep(0.2)
        self.server.start()
        started = time.monotonic()
        yield conn.reconnect()  # noreply_wait=True by default: the stock hang
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertEqual((yield r.expr(5).run(conn)), 5)
        yield driver.close(conn)

    @inlineCallbacks
    def test_stock_module_leaves_feeds_and_reconnect_pending(self) -> Any:
        conn, feed = yield self.open_feed(lambda: stock_connect(self.server, timeout=3))
        pending = settled(feed.next())
        self.server.kill()
        yield sleep(1.0)
        self.assertEqual(pending, [], "stock: a feed on a dead server never fires")
        self.server.start()
        reconnected = settled(conn.reconnect())
        yield sleep(2.0)
        self.assertEqual(reconnected, [], "stock: reconnect() waits forever")
        drop(conn)

    @inlineCallbacks
    def test_ping_times_out_on_a_hung_server_and_late_reply_is_ignored(self) -> Any:
        conn = yield driver.connect(opts(self.server))
        self.server.pause()
        try:
            d = r.expr(1).run(conn)
            d.addTimeout(1.0, reactor)
            with self.assertRaises(Exception):  # noqa: B017 - twisted's TimeoutError
                yield d
        finally:
            self.server.resume()
        self.assertEqual((yield r.expr(2).run(conn)), 2)
        yield driver.close(conn)
