"""The client side of RFC 6455 framing, just enough for Kubernetes channel protocols.

Pure and incremental: ``FrameReader`` is fed bytes as they arrive and reports message
starts, payload pieces (streamed, never a whole message in memory) and control frames;
``encode_frame`` builds masked client frames. Twisted's own WebSocket client cannot set
the ``Sec-WebSocket-Protocol`` and ``Authorization`` headers the API server needs (and
needs wsproto), hence this small codec.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from typing import Final

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_CONTROL: Final = 125


class FrameError(ValueError):
    """The peer broke the framing rules; the connection must be dropped."""


def new_key() -> bytes:
    return base64.b64encode(os.urandom(16))


def accept_for(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (one big-int XOR: C speed)."""
    n = len(payload)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(payload: bytes, opcode: int = OP_BINARY, *, key: bytes | None = None) -> bytes:
    """One final, masked client frame."""
    key = os.urandom(4) if key is None else key
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + mask(payload, key)


class FrameReader:
    """Incremental frame parser.

    Callbacks: ``on_start(opcode)`` when a data message starts (text/binary),
    ``on_data(piece)`` for each piece of its payload (fragments included),
    ``on_end()`` when it is complete, ``on_control(opcode, payload)`` for close, ping and
    pong. Raises FrameError on a protocol violation.
    """

    def __init__(
        self,
        on_start: Callable[[int], None],
        on_data: Callable[[bytes], None],
        on_end: Callable[[], None],
        on_control: Callable[[int, bytes], None],
    ) -> None:
        self._on_start = on_start
        self._on_data = on_data
        self._on_end = on_end
        self._on_control = on_control
        self._buf = bytearray()
        self._remaining = 0  # payload bytes left in the current data frame
        self._fin = False
        self._in_payload = False
        self._in_message = False
        self._mask: bytes | None = None
        self._offset = 0  # masking offset within the current frame

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            if self._in_payload:
                if not self._take_payload():
                    return
            elif not self._take_header():
                return

    def _take_payload(self) -> bool:
        if self._remaining and not self._buf:
            return False
        piece = bytes(self._buf[: self._remaining])
        del self._buf[: len(piece)]
        self._remaining -= len(piece)
        if self._mask is not None and piece:
            rotated = self._mask[self._offset % 4 :] + self._mask[: self._offset % 4]
            self._offset += len(piece)
            piece = mask(piece, rotated)
        if piece:
            self._on_data(piece)
        if self._remaining:
            return False
        self._in_payload = False
        if self._fin:
            self._in_message = False
            self._on_end()
        return True

    def _take_header(self) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        fin, rsv, opcode = buf[0] & 0x80, buf[0] & 0x70, buf[0] & 0x0F
        masked, length = buf[1] & 0x80, buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return False
            length, pos = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                return False
            length, pos = int.from_bytes(buf[2:10], "big"), 10
            if length >> 63:
                raise FrameError("frame length has the top bit set")
        key = None
        if masked:
            if len(buf) < pos + 4:
                return False
            key, pos = bytes(buf[pos : pos + 4]), pos + 4
        if rsv:
            raise FrameError("reserved bits set without a negotiated extension")
        if opcode >= 0x8:
            if not fin or length > MAX_CONTROL:
                raise FrameError("fragmented or oversized control frame")
            if len(buf) < pos + length:
                return False
            payload = bytes(buf[pos : pos + length])
            del buf[: pos + length]
            if key is not None:
                payload = mask(payload, key)
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise FrameError(f"unknown control opcode {opcode}")
            self._on_control(opcode, payload)
            return True
        if opcode == OP_CONTINUATION:
            if not self._in_message:
                raise FrameError("continuation frame outside a message")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._in_message:
                raise FrameError("new message before the previous one ended")
            self._in_message = True
            self._on_start(opcode)
        else:
            raise FrameError(f"unknown data opcode {opcode}")
        del buf[:pos]
        self._fin = bool(fin)
        self._mask = key
        self._offset = 0
        self._remaining = length
        self._in_payload = True
        return True
