"""ProxyExchange._write_head: the response head written without twisted.web's Headers.

A real ``twisted.web`` Request on a real HTTPChannel over Twisted's in-memory
transport: what is checked is the bytes on the wire and the Request's state after,
which later writes and ``finish`` rely on.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.web import http, server
from twisted.web.resource import Resource

from guildnet.proxy.engine import ProxyExchange


def exchange(method: bytes = b"GET", version: bytes = b"HTTP/1.1", code: int = 200) -> Any:
    channel = http.HTTPChannel()
    channel.site = server.Site(Resource())  # type: ignore[attr-defined]
    transport = StringTransport()
    channel.makeConnection(transport)
    request = server.Request(channel, queued=False)
    channel.requests.append(request)  # as the channel does for a parsed request
    request.method = method
    request.clientproto = version
    request.setResponseCode(code)
    return SimpleNamespace(request=request, channel=channel, transport=transport)


def write_head(ex: Any, headers: list[tuple[bytes, bytes]]) -> bytes:
    ProxyExchange._write_head(ex, list(headers))  # type: ignore[arg-type]
    return bytes(ex.transport.value())


def test_head_with_length_is_written_as_is_and_body_follows() -> None:
    ex = exchange()
    head = write_head(ex, [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")])
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    ex.request.write(b"hello")
    assert ex.transport.value().endswith(b"\r\n\r\nhello")
    assert ex.request.sentLength == 5


def test_head_without_length_is_chunked_on_http_1_1() -> None:
    ex = exchange()
    head = write_head(ex, [(b"Content-Type", b"text/event-stream")])
    assert b"Transfer-Encoding: chunked\r\n" in head
    ex.request.write(b"data: 1\n\n")
    ex.request.finish()
    assert ex.transport.value().endswith(b"9\r\ndata: 1\n\n\r\n0\r\n\r\n")


def test_http_1_0_client_gets_a_1_0_head_and_no_chunking() -> None:
    ex = exchange(version=b"HTTP/1.0")
    head = write_head(ex, [(b"X", b"y")])
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"chunked" not in head
    ex.request.write(b"raw")
    assert ex.transport.value().endswith(b"\r\n\r\nraw")


def test_head_request_and_304_write_no_body() -> None:
    for method, code in ((b"HEAD", 200), (b"GET", 304), (b"GET", 204)):
        ex = exchange(method=method, code=code)
        head = write_head(ex, [(b"ETag", b'"x"')])
        assert b"chunked" not in head
        ex.request.write(b"must not appear")
        ex.request.finish()
        assert ex.transport.value() == head, (method, code)


unsafe_values = st.sampled_from([b"a\r\nX-Injected: 1", b"a\nb", b"a\rb", b"a\x00b"])


@given(unsafe_values)
def test_a_value_that_could_break_the_framing_goes_through_twisted_sanitising(
    value: bytes,
) -> None:
    ex = exchange()
    head = write_head(ex, [(b"X-Thing", value), (b"Content-Length", b"0")])
    lines = head.split(b"\r\n")
    assert not any(line.lower().startswith(b"x-injected") for line in lines)
    assert head.endswith(b"\r\n\r\n") and head.count(b"\r\n\r\n") == 1
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert b"\r" not in head.replace(b"\r\n", b"")


@given(st.sampled_from([b"Bad Name", b"Bad:Name", b"", b"Bad\r\nName"]))
def test_an_invalid_name_goes_through_twisted_sanitising(name: bytes) -> None:
    ex = exchange()
    head = write_head(ex, [(name, b"v"), (b"Content-Length", b"0")])
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "the bad header is dropped"
