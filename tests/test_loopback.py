"""The fakes' shared server: when it says a request arrived."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from catalog.fakes.loopback import LoopbackServer, Reply, received_at

REQUEST = b"GET /%d HTTP/1.1\r\nHost: fake\r\n\r\n"


class _SlowFirstAnswer(LoopbackServer):
    """Takes `hold_s` over its first answer; records when each request arrived and was read."""

    def __init__(self, hold_s: float) -> None:
        super().__init__()
        self.hold_s = hold_s
        self.seen: list[tuple[str, float, float]] = []  # path, arrived, read
        self._lock = threading.Lock()

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        with self._lock:
            self.seen.append((path, received_at(), time.monotonic()))
        if path == "/1":
            time.sleep(self.hold_s)
        return Reply(200, b"{}")


def _address(fake: LoopbackServer) -> tuple[str, int]:
    host, port = fake.url.removeprefix("http://").split(":")
    return host, int(port)


def _read_answers(conn: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(b"HTTP/1.1 200") < count or not data.endswith(b"{}"):
        chunk = conn.recv(4096)
        assert chunk, "the server hung up"
        data += chunk
    return data


@pytest.mark.skipif(sys.platform != "linux", reason="kernel receive stamps are read on Linux")
def test_a_request_arrives_when_the_kernel_received_it_not_when_a_busy_server_read_it() -> None:
    # The second request is sent while the server is still busy with the first, on the same
    # connection: it is read 0.5 s after it arrived, and must be counted as arriving on time.
    with _SlowFirstAnswer(hold_s=0.5) as fake, socket.create_connection(_address(fake)) as conn:
        first_sent = time.monotonic()
        conn.sendall(REQUEST % 1)
        time.sleep(0.1)
        second_sent = time.monotonic()
        conn.sendall(REQUEST % 2)
        _read_answers(conn, 2)
    (first, first_at, _), (second, second_at, second_read) = fake.seen
    assert (first, second) == ("/1", "/2")
    assert first_sent <= first_at < first_sent + 0.05  # one clock: the test's time.monotonic()
    assert second_sent <= second_at < second_sent + 0.05
    assert second_read - second_at >= 0.3  # the server got to it later; the stamp did not move
    assert first_at < second_at
