"""The HTTP seam against hostile servers: trickled headers and bodies, a gzip bomb, redirects
to another host with each kind of credential, a huge Retry-After; and secrets in URLs and config
files. Every fault ends the affected requests with a clear line naming the server, keeps what
was written before it, and the next run converges (asserted on what the catalog holds).

Faults that hung or stalled a run run `catalog` as a subprocess with a timeout, so a regression
fails the test instead of hanging the suite."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TOKEN
from sqlalchemy import Engine, select

from catalog.db.models import MEDIA, PROCESS_RUN, RUN
from catalog.errors import SOURCE_ERRORS, SourceResponseError
from catalog.fakes.loopback import LoopbackServer, Reply
from catalog.fakes.media_server import FakeLibrary, FakeMediaServer, Faults
from catalog.fakes.tagger import FakeTagger, TaggerFaults
from catalog.http import HttpClient, Peer, RetryPolicy

MiB = 1024 * 1024
OTHER_HOST = "127.0.0.2"  # loopback too, but another host as far as any origin check goes
TAGGER_TOKEN = "tagger-s3cret-bearer"
CHUNKED = {"CATALOG_PAGE_SIZE": "25", "CATALOG_CHUNK_SIZE": "25"}
FAULT_FROM = 3  # the first two /Items pages (50 movies) are served, then the fault starts
# The first chunk has committed before page 3 is asked for; the second may be in flight when
# the fault strikes (it commits or rolls back whole).
KEPT = 25
RUN_TIMEOUT_S = 60  # a hung run fails the test here instead of hanging the suite
SYNC = "[sync]\nretries = 1\nbackoff_s = 0.01\nbackoff_max_s = 0.05\n"
TAGGER = """[tagger]
rate = 500.0
concurrency = 4
retries = 1
backoff_s = 0.01
backoff_max_s = 0.05
breaker_failures = 1000
flush_s = 0.1
"""


class Recorder(LoopbackServer):
    """Another host: records the headers of every request, answers 500."""

    def __init__(self) -> None:
        super().__init__(OTHER_HOST)
        self.seen: list[dict[str, str]] = []

    def respond(self, method: str, path: str, query: Any, headers: Any, body: bytes) -> Reply:
        self.seen.append(headers)
        return Reply(500, b"{}")


@pytest.fixture
def other_host() -> Iterator[Recorder]:
    with Recorder() as recorder:
        yield recorder


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "faults.toml"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def run_catalog(database_url: str, server_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    """`catalog ARGS` as its own process; (exit code, stdout, stderr)."""
    full_env = {**os.environ, **CHUNKED, **env}
    full_env |= {"CATALOG_DATABASE_URL": database_url, "CATALOG_SERVER_URL": server_url}
    full_env["CATALOG_SERVER_TOKEN"] = TOKEN
    done = subprocess.run(
        [sys.executable, "-m", "catalog", *args], env=full_env, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def peak_rss_of_catalog(
    database_url: str, server_url: str, *args: str, **env: str
) -> tuple[int, int]:
    """(exit code, peak resident set in bytes) of `catalog ARGS` run as its own process."""
    full_env = {**os.environ, **CHUNKED, **env, "CATALOG_DATABASE_URL": database_url}
    full_env |= {"CATALOG_SERVER_URL": server_url, "CATALOG_SERVER_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalog", *args], env=full_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:  # wait4 gives this child's own peak RSS (ru_maxrss, KiB on Linux)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss * 1024
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("catalog sync did not finish")
        time.sleep(0.05)


def catalog_names(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(MEDIA.c.external_id, MEDIA.c.name)).all())


def fake_names(fake: FakeMediaServer, *libraries: str) -> dict[str, str]:
    names = {}
    for library in libraries or ("Movies", "TV Shows"):
        names.update({str(item["Id"]): item["Name"] for item in fake.items(library)})
    return names


def assert_kept_then_converges(engine: Engine, fake: FakeMediaServer, rerun: Any) -> None:
    """What the faulty run wrote is the server's data, the chunks before the fault at least;
    once the fault is gone, the next run holds the whole library."""
    kept = catalog_names(engine)
    assert len(kept) >= KEPT, "pages written before the fault were lost"
    assert kept.items() <= fake_names(fake).items()
    fake.faults = Faults()
    code = rerun()
    assert code == 0
    assert catalog_names(engine) == fake_names(fake)
    with engine.connect() as conn:
        statuses = conn.execute(select(RUN.c.status).order_by(RUN.c.id)).scalars().all()
    assert statuses[-2:] == ["failed", "ok"]


# -- slow headers, slow body: the deadline ------------------------------------------------------


def test_trickled_headers_end_at_the_default_deadline(database_url, engine, fake, tmp_path):
    # Headers one byte every 200 ms (half a minute for the lot): the 0.5 s read timeout never
    # fires; the deadline (4 x timeout_s by default) does.
    path = config(tmp_path, SYNC + "timeout_s = 0.5\n")
    fake.faults = Faults(slow_headers_s=0.2, http_faults_from=FAULT_FROM)
    started = time.monotonic()
    code, _, err = run_catalog(database_url, fake.url, "sync", "--config", path)
    assert code == 1
    assert time.monotonic() - started < 30
    assert f"jellyfin server at {fake.url} did not answer GET /Items after 2 attempts" in err
    assert "no complete answer within the 2 s deadline_s" in err
    assert_kept_then_converges(
        engine, fake, lambda: run_catalog(database_url, fake.url, "sync", "--config", path)[0]
    )


def test_trickled_body_ends_at_the_configured_deadline(database_url, engine, fake, tmp_path):
    path = config(tmp_path, SYNC + "timeout_s = 2\ndeadline_s = 1\n")
    fake.faults = Faults(slow_body_s=0.01, http_faults_from=FAULT_FROM)
    code, _, err = run_catalog(database_url, fake.url, "sync", "--config", path)
    assert code == 1
    assert "did not answer GET /Items after 2 attempts: no complete answer within the 1 s" in err
    assert_kept_then_converges(
        engine, fake, lambda: run_catalog(database_url, fake.url, "sync", "--config", path)[0]
    )


def test_trickling_tagger_fails_only_its_calls(cli, database_url, engine, tmp_path):
    assert cli("sync", "--quiet").exit_code == 0
    path = config(tmp_path, TAGGER + "timeout_s = 2\ndeadline_s = 0.5\n")
    with FakeTagger(token=TAGGER_TOKEN) as tagger:
        tagger.faults = TaggerFaults(slow_body_s=0.05, http_faults_after=10)
        env = {"CATALOG_TAGGER_URL": tagger.url, "CATALOG_TAGGER_TOKEN": TAGGER_TOKEN}
        code, _, err = run_catalog(
            database_url, "http://unused", "retag", "--config", path, "--limit", "20", **env
        )
        assert code == 3, err
        assert "within the 0.5 s deadline_s" in " ".join(process_errors(engine))
        assert_tagged(engine, tagger, at_least=10)
        tagger.faults = TaggerFaults()
        code, _, err = run_catalog(database_url, "http://unused", "retag", "--config", path, **env)
        assert code == 0, err
        assert_tagged(engine, tagger, at_least=104)


def process_errors(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        query = select(PROCESS_RUN.c.error).where(PROCESS_RUN.c.error.is_not(None))
        return list(conn.execute(query).scalars())


def assert_tagged(engine: Engine, tagger: FakeTagger, at_least: int) -> None:
    """Every item whose tagging succeeded holds exactly the tags the tagger gave it."""
    from catalog.db.models import MEDIA_TAG, TAG

    media_tag, tag = MEDIA_TAG, TAG
    with engine.connect() as conn:
        ok = (
            conn.execute(select(PROCESS_RUN.c.media_id).where(PROCESS_RUN.c.status == "ok"))
            .scalars()
            .all()
        )
        rows = conn.execute(
            select(media_tag.c.media_id, tag.c.name)
            .join(tag, tag.c.id == media_tag.c.tag_id)
            .where(media_tag.c.origin == "tagger")
        ).all()
    assert len(ok) >= at_least
    held: dict[int, set[str]] = {}
    for media_id, name in rows:
        held.setdefault(media_id, set()).add(name)
    assert held == {m: set(FakeTagger.tags_for(str(m))) for m in ok}


# -- gzip bomb: memory stays near the cap --------------------------------------------------------


def test_gzip_bomb_is_refused_with_memory_near_the_cap(database_url, engine, fake, tmp_path):
    path = config(tmp_path, SYNC + f"max_page_bytes = {MiB}\n")
    fake.faults = Faults(gzip_bomb_bytes=256 * MiB, http_faults_from=FAULT_FROM)
    code, bomb_peak = peak_rss_of_catalog(database_url, fake.url, "sync", "--config", path)
    assert code == 1
    plain: list[int] = []

    def rerun() -> int:
        code, peak = peak_rss_of_catalog(database_url, fake.url, "sync", "--config", path)
        plain.append(peak)
        return code

    assert_kept_then_converges(engine, fake, rerun)
    (plain_peak,) = plain
    assert bomb_peak < plain_peak + 32 * MiB, (
        f"peak RSS {bomb_peak // MiB} MiB against {plain_peak // MiB} MiB without the bomb"
    )


def test_gzip_bomb_error_names_the_cap(cli, fake, tmp_path):
    path = config(tmp_path, SYNC + f"max_page_bytes = {MiB}\n")
    fake.faults = Faults(gzip_bomb_bytes=64 * MiB, http_faults_from=FAULT_FROM)
    out = cli("sync", "--config", path, env=CHUNKED)
    assert out.exit_code == 1
    assert "sent more than 1 MiB for GET /Items; refused" in out.stderr


# -- redirects to another host -------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "credential"), [("jellyfin", "authorization"),
                                                  ("emby", "x-emby-token")])  # fmt: skip
def test_redirect_to_another_host_is_refused_and_never_gets_the_token(
    cli, engine, other_host, tmp_path, kind, credential
):
    libraries = [FakeLibrary("Movies", "movies", 60), FakeLibrary("TV Shows", "tvshows", 44)]
    with FakeMediaServer(libraries, kind=kind, token=TOKEN) as server:
        server.faults = Faults(redirect_to=other_host.url, http_faults_from=FAULT_FROM)
        env = {**CHUNKED, "CATALOG_SERVER_KIND": kind}
        out = cli("sync", "--config", config(tmp_path, SYNC), url=server.url, env=env)
        assert all(credential not in headers for headers in other_host.seen), "token sent away"
        assert other_host.seen == [], "an unconfigured host was contacted"
        assert out.exit_code == 1
        assert f"redirected GET /Items from 127.0.0.1 to another host, {OTHER_HOST}" in out.stderr
        rerun = lambda: cli("sync", url=server.url, env=env).exit_code  # noqa: E731
        assert_kept_then_converges(engine, server, rerun)


@pytest.mark.parametrize(("kind", "credential"), [("jellyfin", "authorization"),
                                                  ("emby", "x-emby-token")])  # fmt: skip
def test_redirect_to_a_trusted_host_is_followed_without_the_token(
    cli, engine, other_host, tmp_path, kind, credential
):
    trusted = f'[servers.default]\nurl = "http://x"\nredirect_hosts = ["{OTHER_HOST}"]\n'
    path = config(tmp_path, SYNC + trusted)
    with FakeMediaServer(kind=kind, token=TOKEN) as server:
        server.faults = Faults(redirect_to=other_host.url, http_faults_from=FAULT_FROM)
        env = {**CHUNKED, "CATALOG_SERVER_KIND": kind}
        out = cli("sync", "--config", path, url=server.url, env=env)
        assert out.exit_code == 1
        assert other_host.seen, "the trusted host was not asked"
        assert all(credential not in headers for headers in other_host.seen)
        assert all(TOKEN not in str(headers) for headers in other_host.seen)
        assert f"{server.kind} server at {server.url} answered HTTP 500" in out.stderr


def test_tagger_redirect_to_another_host_never_gets_the_bearer(
    cli, database_url, engine, other_host, tmp_path
):
    assert cli("sync", "--quiet").exit_code == 0
    with FakeTagger(token=TAGGER_TOKEN) as tagger:
        tagger.faults = TaggerFaults(redirect_to=other_host.url, http_faults_after=10)
        env = {"CATALOG_TAGGER_URL": tagger.url, "CATALOG_TAGGER_TOKEN": TAGGER_TOKEN}
        out = cli("retag", "--config", config(tmp_path, TAGGER), "--limit", "20", env=env)
        assert out.exit_code == 3, out.stderr
        assert other_host.seen == []
        assert any(
            f"redirected POST /tags from 127.0.0.1 to another host, {OTHER_HOST}" in error
            for error in process_errors(engine)
        )
        assert_tagged(engine, tagger, at_least=10)
        # Trusted: followed, but the bearer stays home (every call then fails: exit 1).
        trusted = config(tmp_path, TAGGER + f'redirect_hosts = ["{OTHER_HOST}"]\n')
        assert cli("retag", "--config", trusted, "--limit", "5", env=env).exit_code == 1
        assert other_host.seen and all("authorization" not in h for h in other_host.seen)
        tagger.faults = TaggerFaults()
        out = cli("retag", "--config", config(tmp_path, TAGGER), env=env)
        assert out.exit_code == 0, out.stderr
        assert_tagged(engine, tagger, at_least=104)


def test_same_host_https_upgrade_keeps_the_token_and_same_origin_redirects_are_followed():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.scheme == "http":
            return httpx.Response(301, headers={"Location": "https://media.test/Items?a=1"})
        if request.url.path == "/Items":
            return httpx.Response(302, headers={"Location": "/Items2"})
        return httpx.Response(200, content=b"ok")

    async def go() -> bytes:
        peer = Peer("the server", SOURCE_ERRORS)
        async with HttpClient(
            "http://media.test", peer=peer, credentials={"X-Emby-Token": "tok"},
            transport=httpx.MockTransport(handler),
        ) as http:  # fmt: skip
            return await http.get("/Items")

    assert asyncio.run(go()) == b"ok"
    assert [str(r.url) for r in seen] == [
        "http://media.test/Items",
        "https://media.test/Items?a=1",
        "https://media.test/Items2",
    ]
    assert all(r.headers["x-emby-token"] == "tok" for r in seen)


def test_https_downgrade_is_refused():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://media.test/Items"})

    async def go() -> bytes:
        peer = Peer("the server", SOURCE_ERRORS)
        async with HttpClient(
            "https://media.test", peer=peer, transport=httpx.MockTransport(handler)
        ) as http:
            return await http.get("/Items")

    with pytest.raises(SourceResponseError, match="redirected GET /Items"):
        asyncio.run(go())


def test_any_method_with_per_request_headers_and_a_trusted_hop_drops_every_credential():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "plex.test":
            return httpx.Response(307, headers={"Location": "http://cdn.test/put"})
        return httpx.Response(200, content=b"done")

    async def go() -> bytes:
        policy = RetryPolicy(redirect_hosts=frozenset({"cdn.test"}))
        async with HttpClient(
            "http://plex.test", peer=Peer("plex", SOURCE_ERRORS), policy=policy,
            credentials={"X-Plex-Token": "tok"}, transport=httpx.MockTransport(handler),
        ) as http:  # fmt: skip
            paging = {"X-Plex-Container-Start": "0", "X-Plex-Token": "per-request"}
            return await http.request("PUT", "/labels", json={"a": 1}, headers=paging)

    assert asyncio.run(go()) == b"done"
    first, hop = seen
    assert (first.method, first.headers["x-plex-token"]) == ("PUT", "tok")
    assert first.headers["x-plex-container-start"] == "0" and first.content == b'{"a":1}'
    assert hop.method == "PUT" and hop.content == b'{"a":1}', "307 keeps the method and body"
    assert "x-plex-token" not in hop.headers and hop.headers["x-plex-container-start"] == "0"


# -- huge Retry-After ----------------------------------------------------------------------------


def test_huge_retry_after_ends_the_request_at_once(database_url, engine, fake, tmp_path):
    path = config(tmp_path, SYNC)
    fake.faults = Faults(rate_limit_every=FAULT_FROM, retry_after_s=99999)
    started = time.monotonic()
    code, _, err = run_catalog(database_url, fake.url, "sync", "--config", path)
    assert code == 1
    assert time.monotonic() - started < 20, "waited for the Retry-After"
    assert (
        f"jellyfin server at {fake.url} answered HTTP 429 to GET /Items asking to wait "
        "99999 s (Retry-After), more than retry_after_max_s = 60 s"
    ) in err
    assert_kept_then_converges(
        engine, fake, lambda: run_catalog(database_url, fake.url, "sync", "--config", path)[0]
    )


def test_retry_after_over_a_configured_cap_fails_only_that_tagger_call(
    cli, database_url, engine, tmp_path
):
    assert cli("sync", "--quiet").exit_code == 0
    path = config(tmp_path, TAGGER + "retry_after_max_s = 5\n")
    with FakeTagger(token=TAGGER_TOKEN) as tagger:
        tagger.faults = TaggerFaults(rate_limit_requests=frozenset({3}), retry_after_s=30)
        env = {"CATALOG_TAGGER_URL": tagger.url, "CATALOG_TAGGER_TOKEN": TAGGER_TOKEN}
        started = time.monotonic()
        code, _, err = run_catalog(database_url, "http://unused", "retag", "--config", path, **env)
        assert code == 3, err
        assert time.monotonic() - started < 20
        (error,) = process_errors(engine)
        assert "answered HTTP 429 to POST /tags asking to wait 30 s (Retry-After)" in error
        assert "retry_after_max_s = 5 s" in error
        assert_tagged(engine, tagger, at_least=103)
        tagger.faults = TaggerFaults()
        code, _, err = run_catalog(database_url, "http://unused", "retag", "--config", path, **env)
        assert code == 0, err
        assert_tagged(engine, tagger, at_least=104)


# -- secrets in URLs and config files ------------------------------------------------------------


def test_password_in_the_server_url_is_refused_and_never_shown(cli, engine, fake):
    host = fake.url.removeprefix("http://")
    out = cli("sync", "--json", url=f"http://alice:pw-hunter22@{host}")
    assert out.exit_code == 2
    assert "CATALOG_SERVER_URL: holds a user name or password" in out.stderr
    assert "CATALOG_SERVER_TOKEN" in out.stderr
    assert "pw-hunter22" not in out.stdout + out.stderr
    with engine.connect() as conn:
        errors = conn.execute(select(RUN.c.error)).scalars().all()
    assert not any("pw-hunter22" in (e or "") for e in errors)
    assert catalog_names(engine) == {}


def test_password_in_a_configured_url_is_refused(cli, tmp_path):
    tables = {
        "servers.home.url": '[servers.home]\nurl = "http://bob:pw-s3cret9@media.test"\n',
        "tagger.url": '[tagger]\nurl = "https://bob:pw-s3cret9@tagger.test"\n',
    }
    for setting, text in tables.items():
        out = cli("sync", "--config", config(tmp_path, text))
        assert out.exit_code == 2
        assert f"{setting}: holds a user name or password" in out.stderr
        assert "pw-s3cret9" not in out.stderr


def test_config_file_with_a_token_readable_by_others_is_warned_about(cli, engine, tmp_path):
    path = Path(config(tmp_path, '[tagger]\ntoken = "tagger-tok3n"\n'))
    path.chmod(0o644)
    out = cli("sync", "--config", str(path))
    assert out.exit_code == 0
    warnings = [line for line in out.stderr.splitlines() if "chmod 600" in line]
    assert len(warnings) == 1 and str(path) in warnings[0]
    assert "readable by group or others" in warnings[0]
    path.chmod(0o600)
    assert "chmod 600" not in cli("sync", "--config", str(path)).stderr
