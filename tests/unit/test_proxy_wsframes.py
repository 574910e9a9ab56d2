"""The WebSocket frame codec used by the port-forward tunnel."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guildnet.proxy import wsframes as W


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []
        self.controls: list[tuple[int, bytes]] = []
        self._current: tuple[int, bytearray] | None = None
        self.reader = W.FrameReader(self.start, self.data, self.end, self.control)

    def start(self, opcode: int) -> None:
        assert self._current is None
        self._current = (opcode, bytearray())

    def data(self, piece: bytes) -> None:
        assert self._current is not None and piece
        self._current[1].extend(piece)

    def end(self) -> None:
        assert self._current is not None
        self.messages.append((self._current[0], bytes(self._current[1])))
        self._current = None

    def control(self, opcode: int, payload: bytes) -> None:
        self.controls.append((opcode, payload))


def server_frame(payload: bytes, opcode: int, fin: bool = True) -> bytes:
    """An unmasked frame, as servers send."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


def feed_in_chunks(reader: W.FrameReader, data: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(data) + 1) for c in cuts})
    start = 0
    for p in [*points, len(data)]:
        reader.feed(data[start:p])
        start = p


def test_accept_key_example_from_rfc6455() -> None:
    assert W.accept_for(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_mask_is_an_involution() -> None:
    key = b"\x01\x02\x03\x04"
    assert W.mask(W.mask(b"hello world", key), key) == b"hello world"
    assert W.mask(b"\x00\x00\x00\x00\x00", key) == b"\x01\x02\x03\x04\x01"
    assert W.mask(b"", key) == b""


@given(
    st.lists(st.binary(max_size=70_000), min_size=1, max_size=4),
    st.lists(st.integers(0, 300_000), max_size=8),
)
def test_client_frames_round_trip_in_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(W.encode_frame(p) for p in payloads)
    rec = Recorder()
    feed_in_chunks(rec.reader, wire, cuts)
    assert rec.messages == [(W.OP_BINARY, p) for p in payloads]


@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5),
    st.lists(st.integers(0, 2000), max_size=6),
)
def test_fragmented_messages_with_interleaved_pings(
    fragments: list[bytes], cuts: list[int]
) -> None:
    wire = b""
    for i, piece in enumerate(fragments):
        opcode = W.OP_BINARY if i == 0 else W.OP_CONTINUATION
        wire += server_frame(piece, opcode, fin=i == len(fragments) - 1)
        wire += server_frame(b"p", W.OP_PING)
    rec = Recorder()
    feed_in_chunks(rec.reader, wire, cuts)
    assert rec.messages == [(W.OP_BINARY, b"".join(fragments))]
    assert rec.controls == [(W.OP_PING, b"p")] * len(fragments)


def test_empty_message_and_close() -> None:
    rec = Recorder()
    rec.reader.feed(server_frame(b"", W.OP_BINARY) + server_frame(b"\x03\xe8", W.OP_CLOSE))
    assert rec.messages == [(W.OP_BINARY, b"")]
    assert rec.controls == [(W.OP_CLOSE, b"\x03\xe8")]


@pytest.mark.parametrize(
    "wire",
    [
        server_frame(b"x", W.OP_CONTINUATION),
        server_frame(b"x", W.OP_BINARY, fin=False) + server_frame(b"y", W.OP_BINARY),
        server_frame(b"x" * 126, W.OP_PING),
        server_frame(b"x", W.OP_PING, fin=False),
        bytes([0x80 | 0x40 | W.OP_BINARY, 0]),
        bytes([0x80 | 0x3, 0]),
        bytes([0x80 | 0xB, 0]),
        bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"),
    ],
)
def test_protocol_violations(wire: bytes) -> None:
    with pytest.raises(W.FrameError):
        Recorder().reader.feed(wire)
