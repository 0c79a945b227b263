"""A loopback fake of the tagging service: tunabrain (`POST /tags`) and OpenAI-compatible
(`POST /v1/chat/completions`), with latency and seeded faults.

It records what a client's pacing looks like from the server's side: the arrival time of every
request, the most requests ever in flight at once, and how many times each item was answered
with tags. Tests and the benchmark check rate, concurrency and exactly-once tagging with it.

Run it alone with `python -m catalog.fakes.tagger --latency 0.1`; it prints one line,
`URL http://127.0.0.1:PORT`, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from catalog.fakes.arrivals import ArrivalLog
from catalog.fakes.loopback import LoopbackServer, Reply

WORDS = (
    "noir", "heist", "coming_of_age", "dystopia", "road_trip", "time_travel", "revenge",
    "small_town", "found_family", "slow_burn", "courtroom", "space_opera", "haunted_house",
    "whodunit", "underdog", "cold_war", "period_piece", "satire", "survival", "cyberpunk",
    "romance", "war", "biopic", "musical", "western", "martial_arts", "kaiju", "mockumentary",
    "psychological", "ensemble", "anthology", "folk_horror", "buddy_cop", "disaster",
    "espionage", "high_school", "post_apocalyptic", "fairy_tale", "sports", "political",
)  # fmt: skip


@dataclass
class TaggerFaults:
    """Misbehaviour, drawn per request from a seeded RNG (so a run is repeatable)."""

    unavailable: float = 0.0  # share of requests answered 503 (no Retry-After)
    rate_limited: float = 0.0  # share answered 429 with Retry-After
    retry_after_s: float = 1.0
    malformed: float = 0.0  # share answered 200 with something that is not tags
    malformed_ids: frozenset[str] = frozenset()  # items always answered with garbage
    rate_limit_requests: frozenset[int] = frozenset()  # request numbers (from 1) answered 429
    down: bool = False  # every request answered 500
    down_after: int | None = None  # answer this many items, then go down
    oversized_bytes: int = 0  # when > 0, every answer is padded to this size
    # -- HTTP faults: a hostile transport (tests/test_faults_http.py)
    slow_headers_s: float = 0.0  # status line and headers trickle, one byte per this long
    slow_body_s: float = 0.0  # the body trickles, one byte per this long
    redirect_to: str = ""  # answer 307 to this base URL, same path
    http_faults_after: int = 0  # the HTTP faults apply once this many items were answered
    # -- end of HTTP faults
    nul_ids: frozenset[str] = frozenset()  # items answered with a NUL inside a tag and a tagline
    stalls: int = 0  # the first this many requests are answered only after stall_s (a busy spell)
    stall_s: float = 0.0


@dataclass
class TaggerLog(ArrivalLog):
    """What the server saw. Times are time.monotonic() on arrival."""

    rate_limited_at: list[float] = field(default_factory=list)  # when each 429 was sent
    statuses: Counter[int] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)  # media id → answers with tags
    bodies: list[dict[str, Any]] = field(default_factory=list)  # the last few request bodies


class FakeTagger(LoopbackServer):
    """See the module docstring. `token`: the bearer token it requires (empty: none)."""

    server_name = "fake-tagger"
    KEEP_BODIES = 50

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        token: str = "",
        faults: TaggerFaults | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.latency_s, self.token = latency_s, token
        self.faults = faults or TaggerFaults()
        self.log = TaggerLog()
        self._rng = random.Random(f"{seed}:tagger")
        self._lock = threading.Lock()

    @staticmethod
    def tags_for(media_id: str) -> list[str]:
        """The tags the fake answers for an item: 3 to 6, fixed per id."""
        r = random.Random(hashlib.blake2b(media_id.encode(), digest_size=8).digest())
        return sorted(r.sample(WORDS, r.randint(3, 6)))

    @staticmethod
    def tagline_for(media_id: str) -> str:
        return f"A story worth telling (#{media_id})."

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        number = self.log.arrived()
        with self._lock:
            draw = self._rng.random()
        reply = Reply(500)
        try:
            if self.latency_s:
                time.sleep(self.latency_s)
            if number <= self.faults.stalls:
                time.sleep(self.faults.stall_s)
            hostile = self._faults_on()  # decided before this answer counts
            reply = self._hostile(path) or self._reply(method, path, headers, body, draw, number)
            if hostile:
                f = self.faults
                reply = reply._replace(slow_headers_s=f.slow_headers_s, slow_body_s=f.slow_body_s)
        finally:
            self.log.left()
            with self._lock:
                self.log.statuses[reply.status] += 1
                if reply.status == 429:
                    self.log.rate_limited_at.append(time.monotonic())
        return reply

    def _faults_on(self) -> bool:
        return sum(self.log.answered.values()) >= self.faults.http_faults_after

    def _hostile(self, path: str) -> Reply | None:
        if self.faults.redirect_to and self._faults_on():
            return Reply(307, b"", (("Location", self.faults.redirect_to.rstrip("/") + path),))
        return None

    def _reply(
        self, method: str, path: str, headers: dict[str, str], body: bytes, draw: float, number: int
    ) -> Reply:
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return _json(401, {"error": "invalid token"})
        if method != "POST" or path not in ("/tags", "/v1/chat/completions"):
            return _json(404, {"error": "not found"})
        try:
            media = self._media(path, body)
        except (ValueError, KeyError, TypeError):
            return _json(400, {"error": "bad request body"})
        fault = self._fault(draw, number)
        if fault is not None:
            return fault
        media_id = str(media["id"])
        if self.faults.malformed and draw < self.faults.malformed:
            return _answer(path, '{"tags": "not a list"}')
        if media_id in self.faults.malformed_ids:
            return _answer(path, '{"labels": ["no tags key"]}')
        with self._lock:
            self.log.answered[media_id] += 1
        answer = {"tags": self.tags_for(media_id), "taglines": [self.tagline_for(media_id)]}
        if media_id in self.faults.nul_ids:
            answer = {"tags": ["nul\x00tag", *answer["tags"]], "taglines": ["a\x00b"]}
        return _answer(path, json.dumps(answer), self.faults.oversized_bytes)

    def _media(self, path: str, body: bytes) -> dict[str, Any]:
        request = json.loads(body)
        if path == "/v1/chat/completions":
            request = json.loads(request["messages"][-1]["content"])
        with self._lock:
            self.log.bodies = [*self.log.bodies[-(self.KEEP_BODIES - 1) :], request]
        return request["media"]

    def _fault(self, draw: float, number: int) -> Reply | None:
        """Faults take disjoint slices of [0, 1), drawn from the top, so `malformed` (drawn
        from the bottom) never overlaps them."""
        f = self.faults
        answered = sum(self.log.answered.values())
        if f.down or (f.down_after is not None and answered >= f.down_after):
            return _json(500, {"error": "the model is down"})
        if number in f.rate_limit_requests or draw >= 1 - f.rate_limited:
            headers = (("Retry-After", _seconds(f.retry_after_s)),)
            return _json(429, {"error": "rate limited"}, headers)
        if draw >= 1 - f.rate_limited - f.unavailable:
            return _json(503, {"error": "overloaded"})
        return None


def _json(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(value).encode(), headers)


def _answer(path: str, content: str, pad_to: int = 0) -> Reply:
    if pad_to:
        content = content[:-1] + ', "padding": "' + "x" * pad_to + '"}'
    if path == "/tags":
        return Reply(200, content.encode())
    completion = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content},
             "finish_reason": "stop"}
        ],
    }  # fmt: skip
    return Reply(200, json.dumps(completion).encode())


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def main(argv: list[str] | None = None) -> None:
    """Serve a fake tagger until SIGTERM/SIGINT (for the benchmark and manual tries)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--unavailable", type=float, default=0.0, help="share of 503s")
    parser.add_argument("--rate-limited", type=float, default=0.0, help="share of 429s")
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--malformed", type=float, default=0.0)
    parser.add_argument("--token", default="")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    faults = TaggerFaults(
        unavailable=args.unavailable, rate_limited=args.rate_limited,
        retry_after_s=args.retry_after, malformed=args.malformed,
    )  # fmt: skip
    fake = FakeTagger(latency_s=args.latency, token=args.token, faults=faults, port=args.port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with fake:
        print(f"URL {fake.url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
