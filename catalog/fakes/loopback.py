"""An HTTP/1.1 keep-alive server on loopback, serving in a daemon thread: the plumbing every
fake shares. A fake subclasses `LoopbackServer` and answers `respond`; `received_at` says when
the request it answers arrived."""

from __future__ import annotations

import contextlib
import functools
import io
import socket
import struct
import sys
import threading
import time
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qsl, urlsplit

JSON_TYPE = "application/json; charset=utf-8"
# The kernel stamps each packet it receives (CLOCK_REALTIME, a struct timespec) when asked to.
# Python's socket module does not name the option; SCM_TIMESTAMPNS has the same value.
SO_TIMESTAMPNS = 35 if sys.platform == "linux" else None
TIMESPEC = struct.Struct("@ll")
_serving = threading.local()  # the request a server thread is answering


def received_at() -> float:
    """When the request this thread is answering arrived, as time.monotonic(): the kernel's
    receive time of its first bytes, which a server thread busy or starved of CPU does not
    delay; where the kernel gives no stamp (or off a server thread), now."""
    stamp = getattr(_serving, "received_at", None)
    return time.monotonic() if stamp is None else stamp


@functools.cache
def _realtime_to_monotonic() -> float:
    """What to add to a time.time() reading to put it on time.monotonic(): read once, so every
    arrival is on one clock. The closest of a few paired readings, in case a thread switch
    falls between the two."""
    pairs = []
    for _ in range(5):
        before, now, after = time.monotonic(), time.time(), time.monotonic()
        pairs.append((after - before, (before + after) / 2 - now))
    return min(pairs)[1]


class _StampedReader(io.RawIOBase):
    """A connection's bytes, read with recvmsg to keep the kernel's receive time of the latest
    read (`stamp`, on time.monotonic(); None if the kernel sent none)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._ancillary = socket.CMSG_SPACE(TIMESPEC.size)
        self.stamp: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size, ancillary, _flags, _address = self._sock.recvmsg_into([buffer], self._ancillary)
        if size:
            self.stamp = _kernel_stamp(ancillary)
        return size


def _kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9 + _realtime_to_monotonic()
    return None


class Reply(NamedTuple):
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False  # send half the body, then close
    slow_headers_s: float = 0.0  # status line and headers go out one byte per this many seconds
    slow_body_s: float = 0.0  # the body goes out one byte per this many seconds


class LoopbackServer(ABC):
    """Serves `respond` on `host:port` (port 0: any free one); `url` is set by `start`."""

    server_name = "fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.url = ""
        self._host, self._port = host, port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    @abstractmethod
    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        """The answer to one request; header names are lower-cased. Runs on a server thread."""

    def start(self) -> Self:
        """Bind and serve in a daemon thread."""
        if self._httpd is None:
            self._httpd = _Server((self._host, self._port), self)
            host, port = self._httpd.server_address[:2]
            self.url = f"http://{host}:{port}"
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # the client may have closed it already
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], app: LoopbackServer) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # On the listening socket, so that accepted ones have it from their first packet.
        if SO_TIMESTAMPNS is not None:
            with contextlib.suppress(OSError):  # a kernel without it: arrivals are read times
                self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        super().server_bind()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a cancelled call, a stopped run) is normal here;
        # the default prints a traceback on stderr, which in-process CLI tests would capture.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients expect of a real server
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is dropped after this long
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus delayed ACKs
        # would stall every keep-alive response by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.app._track(self.connection, open_=True)
        self.rfile.close()  # the plain reader: every read goes through the stamped one instead
        self._reader = _StampedReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        try:
            self.rfile.peek(1)  # wait for the request's first bytes: the latest read holds them
        except TimeoutError:
            self.close_connection = True  # idle past `timeout`, as the base class would
            return
        _serving.received_at = self._reader.stamp
        super().handle_one_request()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.app._track(self.connection, open_=False)

    def version_string(self) -> str:
        return self.server.app.server_name

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and benchmarks want a quiet server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        # Always drain the body, so the next request on this connection parses.
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._write(self.server.app.respond(self.command, split.path, query, headers, body))

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.slow_headers_s > 0:
            self._headers_buffer.append(b"\r\n")
            head, self._headers_buffer = b"".join(self._headers_buffer), []
            self._trickle(head, reply.slow_headers_s)
        else:
            self.end_headers()
        if self.command == "HEAD":
            return
        if reply.slow_body_s > 0:
            self._trickle(reply.body, reply.slow_body_s)
        elif reply.drop:
            # Promise the full length, deliver half, hang up: a dropped connection mid-body.
            self.wfile.write(reply.body[: len(reply.body) // 2])
            self.close_connection = True
        else:
            self.wfile.write(reply.body)

    def _trickle(self, data: bytes, seconds_per_byte: float) -> None:
        # A server that never stalls long enough for a read timeout, yet never finishes: only
        # a deadline on the whole exchange ends it. A client hanging up ends it too (EPIPE).
        for i in range(len(data)):
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            time.sleep(seconds_per_byte)
