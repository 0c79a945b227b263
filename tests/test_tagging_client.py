"""The tagging client's parts on their own: pacing, the breaker, answer validation, retries
(through httpx.MockTransport, so every status and transport error is exact)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest

from catalog.config import ConfigError, TaggerConfig, load_settings
from catalog.errors import CircuitOpen, MalformedAnswer, TaggerAuthError, TaggerCallFailed
from catalog.fakes.tagger import FakeTagger, TaggerFaults
from catalog.tagging import TagAnswer, TagRequest
from catalog.tagging.backends import OpenAICompatible, Tunabrain, decode_answer
from catalog.tagging.client import TaggerClient
from catalog.tagging.flow import WINDOW_SLACK_S, CircuitBreaker, RateLimiter

REQUEST = TagRequest(media_id=7, title="Night Train", input_hash="abc", genres=("Drama",))


# -- pacing -------------------------------------------------------------------------------------


def test_rate_limiter_spaces_calls_after_the_burst() -> None:
    async def go() -> list[float]:
        limiter = RateLimiter(rate=50, burst=5)
        await limiter.acquire()  # the bucket starts empty: a burst is earned by idling
        await asyncio.sleep(0.2)  # long enough to earn the whole burst, and no more
        stamps = []
        for _ in range(25):
            await limiter.acquire()
            stamps.append(time.monotonic())
        return stamps

    stamps = asyncio.run(go())
    assert stamps[4] - stamps[0] < 0.02  # the burst goes at once
    assert stamps[-1] - stamps[0] >= (25 - 5) / 50 * 0.95


def test_a_pause_holds_every_caller_and_the_rate_halves_then_recovers() -> None:
    async def go() -> tuple[float, float]:
        limiter = RateLimiter(rate=100, burst=1)
        limiter.pause(0.3)
        limiter.slow_down()
        assert limiter.rate == 50
        start = time.monotonic()
        await asyncio.gather(*(limiter.acquire() for _ in range(3)))
        for _ in range(3):
            limiter.slow_down()
        assert limiter.rate == 100 / 8  # a floor, so a bad spell never stalls the run
        for _ in range(40):
            limiter.recover()
        return time.monotonic() - start, limiter.rate

    waited, rate = asyncio.run(go())
    assert waited >= 0.3
    assert rate == 100


def test_the_limiter_takes_a_new_rate_and_concurrency_while_calls_run() -> None:
    async def go() -> tuple[list[int], list[float]]:
        limiter = RateLimiter(rate=1000, burst=10, slots=4)
        seen, stamps = [], []

        async def call() -> None:
            async with limiter.slot():
                await limiter.acquire()
                stamps.append(time.monotonic())
                seen.append(limiter.in_flight)
                await asyncio.sleep(0.05)

        first = [asyncio.create_task(call()) for _ in range(8)]
        await asyncio.sleep(0.01)
        limiter.resize(rate=20, burst=1, window=21, slots=1)  # another worker joined
        await asyncio.gather(*first, *(call() for _ in range(4)))
        return seen, stamps

    seen, stamps = asyncio.run(go())
    assert seen[:4] == [4] * 4  # four slots before the resize, all taken
    assert seen[4:] == [1] * 8  # then one at a time, once the calls in flight ended
    # ...at 20 a second: the 8 calls after the first 4 take at least 7 intervals of 0.05 s.
    assert stamps[-1] - stamps[4] >= 7 * 0.05 * 0.95


def test_calls_let_go_but_not_yet_sent_hold_their_place_in_the_window() -> None:
    async def go() -> tuple[bool, float]:
        limiter = RateLimiter(rate=1000, burst=10)
        limiter.resize(rate=1000, burst=10, window=3, slots=None)
        await asyncio.sleep(0.02)  # a full bucket: only the window binds
        for _ in range(3):
            await limiter.acquire()  # let go, still waiting for a connection
        fourth = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.2)
        held = not fourth.done()
        limiter.withdraw()  # one never went out: its place is free at once
        await fourth
        sent_at = time.monotonic()
        for _ in range(3):
            limiter.sent()
        await limiter.acquire()  # the window holds three sends: wait for the oldest to leave it
        return held, time.monotonic() - sent_at

    held, waited = asyncio.run(go())
    assert held
    assert waited >= 1 + WINDOW_SLACK_S - 0.01


def test_calls_queued_for_a_connection_never_reach_the_service_faster_than_the_limit() -> None:
    # Four connections, forty callers, and a service whose first four answers take 1.5 s: the
    # calls let go meanwhile queue for a connection, then leave together when one frees. The
    # service must still see no more than rate + burst in any second.
    rate, burst, calls = 20.0, 2, 50
    faults = TaggerFaults(stalls=4, stall_s=1.5)
    pool = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=4))

    async def go(url: str) -> None:
        config = TaggerConfig(url=url, rate=rate, burst=burst, concurrency=40)
        async with TaggerClient(config, transport=pool) as client:
            items = [replace(REQUEST, media_id=i) for i in range(calls)]
            await asyncio.gather(*(client.tag(item, []) for item in items))

    with FakeTagger(faults=faults) as tagger:
        asyncio.run(go(tagger.url))
    assert sum(tagger.log.answered.values()) == calls
    assert tagger.log.max_in_window(1.0) <= rate + burst


def test_breaker_opens_after_consecutive_failures_then_gives_up() -> None:
    async def go() -> list[str]:
        breaker = CircuitBreaker(threshold=2, cooldown_s=0.05, max_opens=1)
        events = []
        await breaker.admit()
        breaker.failure("HTTP 500")
        breaker.success()  # a success in between resets the count
        breaker.failure("HTTP 500")
        await breaker.admit()
        start = time.monotonic()
        breaker.failure("HTTP 500")  # two in a row: open
        await breaker.admit()  # the trial call, after the cool-down
        events.append(f"trial after {time.monotonic() - start >= 0.05}")
        breaker.failure("HTTP 502")  # the trial failed: opened a second time, over max_opens
        try:
            await breaker.admit()
        except CircuitOpen as exc:
            events.append(str(exc))
        return events

    trial, given_up = asyncio.run(go())
    assert trial == "trial after True"
    assert "stopped calling it" in given_up and "HTTP 502" in given_up


def test_a_successful_trial_closes_the_breaker() -> None:
    async def go() -> int:
        breaker = CircuitBreaker(threshold=1, cooldown_s=0.01, max_opens=1)
        breaker.failure("x")
        await breaker.admit()
        breaker.success()
        for _ in range(5):
            await breaker.admit()  # closed: no waiting, no giving up
        return breaker.opens

    assert asyncio.run(go()) == 1


# -- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "tags", "taglines"),
    [
        (b'["noir", " heist ", "", "noir"]', ("noir", "heist"), ()),
        (b'{"tags": ["a"], "taglines": ["One line."]}', ("a",), ("One line.",)),
        (b'{"tags": [], "extra": 1}', (), ()),
        (json.dumps({"tags": ["x" * 201, "ok"]}).encode(), ("ok",), ()),
    ],
    ids=["bare-list-cleaned", "object-with-taglines", "empty-and-unknown-keys", "overlong-tag"],
)
def test_valid_answers(body: bytes, tags: tuple[str, ...], taglines: tuple[str, ...]) -> None:
    assert decode_answer(body, "the answer") == TagAnswer(tags, taglines)


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"tags": "noir"}', b"[1, 2]", b'{"labels": []}', b"null"],
    ids=["empty", "not-json", "tags-not-a-list", "not-strings", "no-tags-key", "null"],
)
def test_malformed_answers_raise_with_a_reason(body: bytes) -> None:
    with pytest.raises(MalformedAnswer, match="the answer is not tags"):
        decode_answer(body, "the answer")


def test_openai_answer_in_a_fenced_message_and_its_request_shape() -> None:
    backend = OpenAICompatible("local")
    content = '```json\n{"tags": ["space_opera"], "taglines": []}\n```'
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
    assert backend.parse(body.encode()) == TagAnswer(("space_opera",))
    with pytest.raises(MalformedAnswer, match="no message content"):
        backend.parse(b'{"choices": []}')
    payload = backend.payload(REQUEST, ["noir"])
    assert payload["model"] == "local"
    assert payload["response_format"]["type"] == "json_schema"
    sent = json.loads(payload["messages"][-1]["content"])
    assert sent["media"]["title"] == "Night Train" and sent["existing_tags"] == ["noir"]


def test_tunabrain_request_follows_the_contract() -> None:
    payload = Tunabrain().payload(REQUEST, ["noir"])
    assert set(payload["media"]) == {
        "id", "title", "description", "genres", "rating", "critical_rating",
        "audience_rating", "duration_minutes", "current_tags",
    }  # fmt: skip
    assert payload["media"]["id"] == "7" and payload["existing_tags"] == ["noir"]


# -- retries, through a mock transport ----------------------------------------------------------


def _client(handler: Any, **config: Any) -> TaggerClient:
    settings = {"url": "http://tagger.test", "rate": 1000.0, "retries": 3, "backoff_s": 0.001,
                "backoff_max_s": 0.002, **config}  # fmt: skip
    return TaggerClient(TaggerConfig(**settings), transport=httpx.MockTransport(handler))


def _tag(client: TaggerClient) -> TagAnswer:
    async def go() -> TagAnswer:
        async with client:
            return await client.tag(REQUEST, [])

    return asyncio.run(go())


def test_5xx_and_timeouts_are_retried_then_succeed() -> None:
    answers = iter([httpx.ReadTimeout("slow"), 503, 502, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        body = {"tags": ["ok"]} if answer == 200 else {"error": "busy"}
        return httpx.Response(answer, json=body)

    client = _client(handler)
    assert _tag(client) == TagAnswer(("ok",))
    assert (client.stats.requests, client.stats.retries) == (4, 3)


def test_retries_are_capped_and_a_4xx_is_not_retried() -> None:
    calls = []

    def always(status: int) -> Any:
        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(status)
            return httpx.Response(status, json={})

        return handler

    with pytest.raises(TaggerCallFailed, match="answered HTTP 500 to POST /tags after 4 attempts"):
        _tag(_client(always(500)))
    assert calls == [500] * 4
    calls.clear()
    with pytest.raises(TaggerCallFailed, match="HTTP 422"):
        _tag(_client(always(422)))
    assert calls == [422]
    with pytest.raises(TaggerAuthError, match="refused the token"):
        _tag(_client(always(401), token="t0ken"))


def test_the_token_is_sent_as_a_bearer_header_never_in_the_url() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=["a"])

    _tag(_client(handler, token="t0ken"))
    assert seen[0].headers["authorization"] == "Bearer t0ken"
    assert "t0ken" not in str(seen[0].url)
    assert seen[0].url.path == "/tags"


# -- settings -----------------------------------------------------------------------------------


def test_tagger_settings_from_file_environment_and_flags(tmp_path: Any) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[tagger]\nurl = "http://t:1"\nrate = 5\nolder_than = "7d"\n')
    env = {"CATALOG_TAGGER_CONCURRENCY": "16", "CATALOG_TAGGER_TOKEN": "tok"}
    settings = load_settings(path, env=env, tagger_rate=9.0)
    tagger = settings.tagger
    assert (tagger.url, tagger.rate, tagger.concurrency, tagger.token) == ("http://t:1", 9.0, 16,
                                                                          "tok")  # fmt: skip
    assert tagger.older_than_s == 7 * 86400 and tagger.effective_burst == 1
    assert "tok" not in repr(settings)


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('[tagger]\nkind = "gpt"\n', {}, "tagger.kind: must be one of tunabrain, openai"),
        ('[tagger]\nkind = "openai"\n', {}, "tagger.model: required for the openai kind"),
        ('[tagger]\nolder_than = "soon"\n', {}, "'soon' is not a duration"),
        ("[tagger]\nrate = 0\n", {}, "tagger.rate: must be greater than 0"),
        ("", {"CATALOG_TAGGER_RATE": "fast"}, "CATALOG_TAGGER_RATE: must be a number"),
        ('[tagger]\nurl = "tagger:80"\n', {}, "tagger.url: must start with http"),
    ],
    ids=["kind", "openai-model", "duration", "rate", "env-rate", "url"],
)
def test_bad_tagger_settings_name_the_culprit(
    tmp_path: Any, toml: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env=env)
