"""The one HTTP seam every outbound client is built with (media servers, the tagger, the
healthcheck ping): retries with capped full-jitter backoff, Retry-After on 429/503 (bounded),
a per-attempt deadline, a cap on the decompressed body, a redirect policy that never hands a
credential to another origin, and stats. This is the only place that retries.

Each client says who it talks to with a `Peer`, which also names the errors of the tree
(`catalog.errors`) that stand for that peer's failures; pacing that belongs to a client (the
tagger's rate limiter) plugs into the retry loop through `Pacing`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import httpx

from catalog.config import DEADLINE_TIMEOUTS
from catalog.errors import CatalogError, ErrorFamily
from catalog.logs import REDACTOR

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
CONNECT_TIMEOUT_S = 10.0
MAX_REDIRECTS = 5
# Headers that carry a credential: never sent to an origin other than the configured one.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-emby-token", "x-plex-token"}
)
# What we can decode while counting (see _Inflater); httpx would otherwise ask for br / zstd.
ACCEPT_ENCODING = "gzip, deflate"
GENERIC_ERRORS = ErrorFamily()  # a peer whose failures are only ever logged (the healthcheck)


class RetrySettings(Protocol):
    """What a settings section holds about retries (SyncConfig and TaggerConfig do)."""

    retries: int
    backoff_s: float
    backoff_max_s: float
    retry_after_max_s: float
    timeout_s: float
    deadline_s: float | None  # None: the default, DEADLINE_TIMEOUTS x timeout_s


@dataclass(frozen=True)
class RetryPolicy:
    """How often, how patiently and for how long to try one request."""

    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 60.0
    timeout_s: float = 30.0
    deadline_s: float | None = None  # None: DEADLINE_TIMEOUTS x timeout_s
    max_bytes: int = DEFAULT_MAX_BYTES
    redirect_hosts: frozenset[str] = frozenset()  # other hosts a redirect may go to

    @property
    def deadline(self) -> float:
        return self.deadline_s or DEADLINE_TIMEOUTS * self.timeout_s

    @classmethod
    def of(
        cls, settings: RetrySettings, *, max_bytes: int, redirect_hosts: Iterable[str] = ()
    ) -> RetryPolicy:
        """The policy a settings section ([sync], [tagger]) describes."""
        return cls(
            retries=settings.retries,
            backoff_s=settings.backoff_s,
            backoff_max_s=settings.backoff_max_s,
            retry_after_max_s=settings.retry_after_max_s,
            timeout_s=settings.timeout_s,
            deadline_s=settings.deadline_s or None,
            max_bytes=max_bytes,
            redirect_hosts=frozenset(redirect_hosts),
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based): Retry-After if the server
        gave one, else full-jitter exponential backoff."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max_s)
        return random.uniform(0, min(self.backoff_max_s, self.backoff_s * 2**attempt))

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s))


@dataclass
class HttpStats:
    """What the retry loop did, for the run summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0


@dataclass(frozen=True)
class Peer:
    """Who a client talks to, as messages name it, and the errors of the tree that stand for
    its failures (`errors`); the hints end the messages with what the user can do."""

    name: str
    errors: ErrorFamily = GENERIC_ERRORS
    token_hint: str = "check the token setting"
    size_hint: str = ""

    def status_error(self, status: int, request: str) -> CatalogError:
        """The error for a status that will not get better by retrying."""
        if status in (401, 403):
            return self.errors.refused(
                f"{self.name} refused the token (HTTP {status}); {self.token_hint}"
            )
        return self.errors.failed(f"{self.name} answered HTTP {status} to {request}")


class Pacing(Protocol):
    """A client's own pacing, called by the retry loop around each attempt: after
    `before_attempt`, exactly one of `sent` (the request was written to a connection, which
    may be long after it was let go) or `not_sent` (the attempt ended before that)."""

    async def before_attempt(self) -> None: ...

    def sent(self) -> None: ...

    def not_sent(self) -> None: ...

    def rate_limited(self, retry_after: float | None) -> None: ...

    def answered(self) -> None: ...


class _Call(NamedTuple):
    """One request as the caller asked for it, whatever redirects and retries make of it."""

    method: str
    path: str
    params: Mapping[str, Any] | None
    json: Any
    headers: Mapping[str, str]

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"


# httpcore's trace events once a request's headers are written (or failed part-way through).
SENT_EVENTS = frozenset(
    f"{protocol}.send_request_headers.{outcome}"
    for protocol in ("http11", "http2")
    for outcome in ("complete", "failed")
)


class _Going:
    """Tells the pacing when an attempt's request goes out: when httpcore has written its
    headers to the socket, not when it was let go, since it may wait for a connection first.
    Once per attempt; redirects followed within it are not counted again."""

    def __init__(self, pacing: Pacing) -> None:
        self.pacing, self.told = pacing, False

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event in SENT_EVENTS:
            self.went()

    def went(self) -> None:
        if not self.told:
            self.told = True
            self.pacing.sent()

    def settle(self) -> None:
        """The attempt is over: if it never went out, give its place back."""
        if not self.told:
            self.told = True
            self.pacing.not_sent()


class _Retry(Exception):
    """An attempt failed in a way worth retrying (after `wait` seconds, or backoff if None)."""

    def __init__(self, reason: str, wait: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.wait, self.status = wait, status


class HttpClient:
    """An httpx.AsyncClient behind the seam; `request` returns the decoded body as bytes.

    `credentials` are headers sent to the configured origin only (and to the same host after
    an http → https upgrade), never to a host a redirect points at.
    """

    def __init__(
        self,
        base_url: str,
        *,
        peer: Peer,
        policy: RetryPolicy | None = None,
        credentials: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        stats: HttpStats | None = None,
        pacing: Pacing | None = None,
        limits: httpx.Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.peer, self.pacing = peer, pacing
        self.policy = policy or RetryPolicy()
        self.stats = stats if stats is not None else HttpStats()
        self._credentials = dict(credentials or {})
        self._http = httpx.AsyncClient(
            headers={
                "User-Agent": "catalog",
                **(headers or {}),
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            timeout=self.policy.timeout(),
            limits=limits or httpx.Limits(max_connections=4, max_keepalive_connections=2),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        return await self.request("GET", path, params=params, headers=headers)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """The body of `method path`, retrying what is worth retrying. `path` is relative to
        the base URL, or a full URL; `headers` are extra headers for this request only."""
        call = _Call(method, path, params, json, headers or {})
        policy = self.policy
        for attempt in range(policy.retries + 1):
            try:
                return await self._paced_attempt(call)
            except _Retry as retry:
                if attempt == policy.retries:
                    raise self._gave_up(retry, call.what, attempt + 1) from None
                log.warning("%s: %s, retrying", call.what, retry)
                self.stats.retries += 1
                await asyncio.sleep(policy.delay(attempt, retry.wait))
        raise AssertionError("unreachable")  # pragma: no cover

    def _gave_up(self, retry: _Retry, what: str, attempts: int) -> CatalogError:
        name = self.peer.name
        if retry.status is not None:
            return self.peer.errors.failed(
                f"{name} answered HTTP {retry.status} to {what} after {attempts} attempts"
            )
        return self.peer.errors.unreachable(
            f"{name} did not answer {what} after {attempts} attempts: {retry}"
        )

    async def _paced_attempt(self, call: _Call) -> bytes:
        if self.pacing is None:
            self.stats.requests += 1
            return await self._attempt(call, None)
        await self.pacing.before_attempt()
        self.stats.requests += 1
        going = _Going(self.pacing)
        try:
            return await self._attempt(call, going)
        finally:
            going.settle()

    async def _attempt(self, call: _Call, going: _Going | None) -> bytes:
        deadline = self.policy.deadline
        try:
            async with asyncio.timeout(deadline):
                return await self._follow(call, going)
        except TimeoutError:
            raise _Retry(f"no complete answer within the {deadline:g} s deadline_s") from None
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {_first_line(exc)}") from None

    async def _follow(self, call: _Call, going: _Going | None) -> bytes:
        method, path, params, body, headers = call
        url = httpx.URL(path if "://" in path else self.base_url + path)
        trusted = _same_origin(httpx.URL(self.base_url), url)  # credentials go along
        extensions = {"trace": going.trace} if going is not None else None
        for _ in range(MAX_REDIRECTS + 1):
            sent = {**headers, **self._credentials} if trusted else _without_credentials(headers)
            request = self._http.build_request(
                method, url, params=params, json=body, headers=sent, extensions=extensions
            )
            response = await self._http.send(request, stream=True)
            if going is not None:
                going.went()  # an answer came, so it went (a transport that does not trace)
            try:
                if response.status_code not in REDIRECT_STATUSES:
                    return await self._read(response, f"{method} {path}")
                url, trusted = self._redirect(response, url, trusted, f"{method} {path}")
            finally:
                await response.aclose()
            params = None  # the Location carries its own query
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method not in ("GET", "HEAD")
            ):
                method, body = "GET", None
        raise self.peer.errors.failed(
            f"{self.peer.name} redirected {method} {path} more than {MAX_REDIRECTS} times"
        )

    def _redirect(
        self, response: httpx.Response, url: httpx.URL, trusted: bool, what: str
    ) -> tuple[httpx.URL, bool]:
        """Where a redirect leads, and whether credentials may follow it; raises for a host
        nobody configured."""
        location = response.headers.get("location")
        if not location:
            raise self.peer.errors.failed(f"{self.peer.name} redirected {what} without a Location")
        target = url.join(location)
        if _same_origin(url, target) or _https_upgrade(url, target):
            return target, trusted
        if target.host in self.policy.redirect_hosts:
            return target, False
        raise self.peer.errors.failed(
            f"{self.peer.name} redirected {what} from {url.host} to another host, "
            f"{target.host}; refused (list it in redirect_hosts to follow such redirects, "
            "without the token)"
        )

    async def _read(self, response: httpx.Response, what: str) -> bytes:
        status = response.status_code
        if status < 400:
            if self.pacing is not None:
                self.pacing.answered()
            return await self._read_capped(response, what)
        if status not in RETRY_STATUSES:
            raise self.peer.status_error(status, what)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429 or retry_after is not None:  # told to slow down, not just failing
            self.stats.rate_limited += 1
            self._check_retry_after(retry_after, status, what)
            if self.pacing is not None:
                self.pacing.rate_limited(retry_after)
        raise _Retry(f"answered HTTP {status}", retry_after, status)

    def _check_retry_after(self, retry_after: float | None, status: int, what: str) -> None:
        cap = self.policy.retry_after_max_s
        if retry_after is not None and retry_after > cap:
            raise self.peer.errors.failed(
                f"{self.peer.name} answered HTTP {status} to {what} asking to wait "
                f"{retry_after:.0f} s (Retry-After), more than retry_after_max_s = {cap:g} s; "
                "stopped instead of waiting"
            )

    async def _read_capped(self, response: httpx.Response, what: str) -> bytes:
        cap = self.policy.max_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise self._too_large(what)
        if response.is_stream_consumed:  # built in memory (a mock transport): decoded already
            if len(response.content) > cap:
                raise self._too_large(what)
            return response.content
        parts = []  # joined once at the end: one copy of a large body, not two
        try:
            inflater = _Inflater(response.headers.get("content-encoding", ""), cap)
            async for chunk in response.aiter_raw():
                parts.append(inflater.feed(chunk))
            parts.append(inflater.finish())
        except _OverCap:
            raise self._too_large(what) from None
        except (zlib.error, ValueError) as exc:
            raise self.peer.errors.failed(
                f"{self.peer.name} sent an undecodable body for {what}: {exc}"
            ) from None
        return b"".join(parts)

    def _too_large(self, what: str) -> CatalogError:
        cap = self.policy.max_bytes
        size = f"{cap // (1024 * 1024)} MiB" if cap >= 1024 * 1024 else f"{cap} bytes"
        return self.peer.errors.oversized(
            f"{self.peer.name} sent more than {size} for {what}; refused{self.peer.size_hint}"
        )


class _OverCap(Exception):
    pass


class _Inflater:
    """Decodes a body as it streams, never producing more than `cap` bytes in all: zlib's
    max_length bounds each step, so a small compressed chunk cannot inflate into memory."""

    def __init__(self, encoding: str, cap: int) -> None:
        encoding = encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")
        plain = encoding in ("", "identity")
        # 32 + MAX_WBITS: zlib finds a gzip or a zlib header by itself.
        self._zlib = None if plain else zlib.decompressobj(32 + zlib.MAX_WBITS)
        self._room = cap

    def feed(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            return self._take(chunk)
        out = bytearray()
        while chunk:
            out += self._take(self._zlib.decompress(chunk, self._room + 1))
            chunk = self._zlib.unconsumed_tail
        return bytes(out)

    def finish(self) -> bytes:
        return self._take(self._zlib.flush()) if self._zlib is not None else b""

    def _take(self, data: bytes) -> bytes:
        self._room -= len(data)
        if self._room < 0:
            raise _OverCap
        return data


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def safe_url(url: str) -> str:
    """The URL as messages may show it: any password in it masked."""
    return REDACTOR(url)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _https_upgrade(a: httpx.URL, b: httpx.URL) -> bool:
    return a.scheme == "http" and b.scheme == "https" and a.host == b.host


def _without_credentials(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"
