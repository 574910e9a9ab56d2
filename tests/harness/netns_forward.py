"""Forward a loopback TCP port of this network namespace to loopback in another one.

`make dev-cluster` runs kube-apiserver on 127.0.0.1 inside the node's network namespace (so
it is never reachable from any other address) and needs it on the host's 127.0.0.1 for
`make run` and kubectl. Each accepted connection gets a thread that switches itself (only
itself: network namespaces are per thread) into the target namespace with setns(2), connects
there, and splices bytes both ways until either side closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import socket
import threading

_CLONE_NEWNET = 0x40000000


def _enter_netns(pid: int) -> None:
    """Move the calling thread into the network namespace of process `pid`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the network namespace of {pid}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsForwarder:
    """Listen on `host:port` here; connect to 127.0.0.1:`target_port` in `pid`'s namespace."""

    def __init__(self, pid: int, host: str, port: int, target_port: int | None = None) -> None:
        self.pid = pid
        self.host = host
        self.port = port
        self.target_port = target_port or port
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept_loop, name="netns-forward", daemon=True).start()

    def stop(self) -> None:
        """Close the listener and every open connection."""
        self._stopped.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *socks: socket.socket) -> bool:
        with self._lock:
            if self._stopped.is_set():
                return False
            self._conns.update(socks)
            return True

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            _enter_netns(self.pid)
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            upstream.settimeout(None)
            if self._track(client, upstream):
                self._splice(client, upstream)
        except OSError:
            pass  # upstream refused or reset: the client sees its connection close
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._conns.discard(sock)
                    sock.close()

    @staticmethod
    def _splice(a: socket.socket, b: socket.socket) -> None:
        """Copy both ways; a half-close is passed on, the splice ends when both are done."""
        peer = {a: b, b: a}
        open_reads = {a, b}
        with selectors.DefaultSelector() as sel:
            for sock in open_reads:
                sel.register(sock, selectors.EVENT_READ)
            while open_reads:
                for key, _ in sel.select():
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if data:
                        peer[src].sendall(data)
                    else:
                        sel.unregister(src)
                        open_reads.discard(src)
                        with contextlib.suppress(OSError):
                            peer[src].shutdown(socket.SHUT_WR)
