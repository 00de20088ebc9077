"""Hostile input on the admin listener: never a 5xx, always JSON with one sentence; bounded /metrics;
tokens compared safely; log lines without secrets. Loopback only; every request is bounded."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from shadow.core.auth import bearer_matches
from shadow.core.labels import OTHER, ExperimentLabels
from shadow.core.logs import LEVELS, ScrubbingFilter, configure_logging, safe_url, scrub
from shadow.core.settings import Settings, SettingsError
from shadow.gate import load_policy
from shadow.gate.http import add_gate_routes, parse_window, read_webhook
from shadow.sidecar.admin import create_admin_app
from shadow.sidecar.metrics import SidecarMetrics
from tests.gate_simulation import build_pool, simulate_records

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIGURED = "b-vs-a"


@pytest.fixture(scope="module")
def good_records() -> list[dict[str, Any]]:
    records = simulate_records("identical", 300, 3, pool=build_pool(12))
    for record in records:
        record["experiment"] = CONFIGURED
    return records


class SyncLoader:
    """A synchronous store read, as the sidecar's loader is; remembers the threads it ran on."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.threads: list[int] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, experiment: str) -> Iterator[dict[str, Any]]:
        self.threads.append(threading.get_ident())
        if not self.release.wait(timeout=10):
            raise TimeoutError("the test never released the loader")
        # A lazy generator: iterating it is part of the store read, and must not happen on the loop either.
        return (r for r in self.records if r["experiment"] == experiment)


@pytest.fixture
def loader(good_records) -> SyncLoader:
    return SyncLoader(good_records)


@pytest.fixture
async def admin(aiohttp_client, loader):
    settings = Settings().with_overrides(
        admin_listen="0.0.0.0:9090", admin_token=TOKEN, experiment=CONFIGURED
    )
    metrics = SidecarMetrics.create()
    app = create_admin_app(settings, metrics, health=lambda: {"experiment": CONFIGURED})
    add_gate_routes(
        app,
        load_records=loader,
        policy=load_policy(None),
        registry=metrics.registry,
        admin_token=TOKEN,
        require_token=True,
        configured_experiment=CONFIGURED,
    )
    return await aiohttp_client(app, timeout=None)


async def send_raw(client: Any, raw: bytes) -> tuple[int, bytes]:
    """One raw HTTP/1.1 request (bytes no client library would send) and the status and body of its answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(client.host, client.port), 5)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_one_sentence(text: str) -> None:
    assert text and len(text) < 400 and "Traceback" not in text and "\n" not in text, text


# --- GET /api/v1/gate: always 200, inconclusive with the reason --------------------------------------------

HOSTILE_QUERIES = [
    {"since": "99999999999d"},
    {"since": "9" * 400 + "d"},
    {"since": "36501d"},
    {"since": "soon"},
    {"since": "-5m"},
    {"last": "-1"},
    {"last": "0"},
    {"last": "abc"},
    {"last": str(10**30)},
    {"last": "1" * 5000},
    {"last": "١٢"},  # Arabic-Indic digits: int() reads them, we do not
    {"segment": "="},
    {"segment": "lang"},
    {"segment": "=zh"},
    {"segment": ",".join(f"k{i}=v" for i in range(50))},
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=lambda q: repr(q)[:40])
async def test_bad_gate_queries_are_inconclusive_with_a_reason(admin, query) -> None:
    response = await admin.get("/api/v1/gate", params={"experiment": CONFIGURED, **query}, headers=AUTH)
    assert response.status == 200
    data = (await response.json())["data"]
    assert data["verdict"] == "inconclusive" and data["n_pairs"] == 0
    assert_one_sentence(data["reason"])
    assert data["reason"].startswith(tuple(query)), data["reason"]


async def test_good_windows_still_judge(admin) -> None:
    for query in ({"last": "200"}, {"since": "3650d"}, {"segment": "lang=zh"}, {"last": " 50 "}):
        response = await admin.get("/api/v1/gate", params={"experiment": CONFIGURED, **query}, headers=AUTH)
        data = (await response.json())["data"]
        assert response.status == 200 and data["n_pairs"] > 0, (query, data["reason"])


@pytest.mark.parametrize(
    "raw_query",
    [
        "experiment=" + "x" * 5000,
        "experiment=a%00b",
        "experiment=%ff%fe",
        "experiment=%",
        "experiment=%zz&last=%ff",
    ],
)
async def test_odd_experiment_names_answer_200(admin, raw_query) -> None:
    response = await admin.get(URL(f"/api/v1/gate?{raw_query}", encoded=True), headers=AUTH)
    assert response.status == 200
    data = (await response.json())["data"]
    assert data["verdict"] == "inconclusive"
    assert_one_sentence(data["reason"])
    assert len(data["experiment"]) <= 201  # a long name is not echoed back whole


async def test_raw_hostile_requests_stay_under_500(admin) -> None:
    long_name = b"GET /api/v1/gate?experiment=" + b"x" * 10240 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    undecodable = b"GET /api/v1/gate?experiment=\xff\xfe HTTP/1.1\r\nHost: a\r\n\r\n"
    cookie = b"GET /metrics HTTP/1.1\r\nHost: a\r\nCookie: " + b"c" * 70000 + b"\r\n\r\n"
    for raw in (long_name, undecodable, cookie):
        status, _body = await send_raw(admin, raw)
        assert 400 <= status < 500  # aiohttp's parser refuses these before any handler runs


async def test_unknown_paths_and_methods_answer_json(admin) -> None:
    for method, path, status in (
        ("GET", "/nope", 404),
        ("PUT", "/api/v1/gate", 405),
        ("GET", "/api/v1/gate/flagger", 405),
    ):
        response = await admin.request(method, path, headers=AUTH)
        assert response.status == status
        assert_one_sentence((await response.json())["error"])


# --- POST /api/v1/gate/flagger: 400 with one sentence ------------------------------------------------------

HOSTILE_WEBHOOKS: list[bytes] = [
    b"",
    b"not json",
    b"\xff\xfe{}",
    b"[]",
    b'"a string"',
    b"null",
    b"123",
    b"[" * 20000 + b"]" * 20000,
    json.dumps({"name": "x", "metadata": []}).encode(),
    json.dumps({"name": "x", "metadata": "experiment=b-vs-a"}).encode(),
    json.dumps({"name": "x", "metadata": 7}).encode(),
    json.dumps({"metadata": {"experiment": ["b-vs-a"]}}).encode(),
    json.dumps({"metadata": {"experiment": CONFIGURED, "since": {"m": 5}}}).encode(),
    json.dumps({"metadata": {"experiment": CONFIGURED, "last": True}}).encode(),
    json.dumps({"name": 5}).encode(),
    json.dumps({"name": ["x"]}).encode(),
    json.dumps({"name": "x" * 10240}).encode(),
    json.dumps({"metadata": {"experiment": "x" * 10240}}).encode(),
    json.dumps({"name": "bad\x00name"}).encode(),
    json.dumps({"phase": "Progressing"}).encode(),
]


@pytest.mark.parametrize("body", HOSTILE_WEBHOOKS, ids=lambda b: repr(b[:30]))
async def test_bad_webhooks_are_400_with_a_sentence(admin, body) -> None:
    response = await admin.post("/api/v1/gate/flagger", data=body, headers=AUTH)
    assert response.status == 400
    assert_one_sentence((await response.json())["error"])


@pytest.mark.parametrize(
    "metadata",
    [{"since": "99999999999d"}, {"last": "-1"}, {"last": "abc"}, {"segment": "lang"}, {"last": 10**30}],
    ids=repr,
)
async def test_webhooks_with_a_bad_window_are_inconclusive(admin, metadata) -> None:
    body = {"name": "canary", "metadata": {"experiment": CONFIGURED, **metadata}}
    response = await admin.post("/api/v1/gate/flagger", json=body, headers=AUTH)
    assert response.status == 409
    answer = await response.json()
    assert answer["verdict"] == "inconclusive"
    assert_one_sentence(answer["reason"])


async def test_webhook_numbers_and_a_big_body(admin) -> None:
    body = {"name": "canary", "metadata": {"experiment": CONFIGURED, "last": 300}}
    response = await admin.post("/api/v1/gate/flagger", json=body, headers=AUTH)
    assert response.status == 200 and (await response.json())["verdict"] == "pass"
    response = await admin.post("/api/v1/gate/flagger", data=b" " * 200_000, headers=AUTH)
    assert response.status == 413
    assert_one_sentence((await response.json())["error"])


def test_parsers_directly() -> None:
    assert parse_window({"since": "15m", "last": "10", "segment": "lang=zh,region=cn"})[1:] == (
        10,
        {"lang": "zh", "region": "cn"},
    )
    assert parse_window({}) == (None, None, None)
    assert read_webhook(b'{"name": "c", "metadata": {"experiment": "e", "last": "5"}}') == (
        "e",
        {"last": "5"},
    )
    assert read_webhook(b'{"name": "c"}') == ("c", {})


# --- the loader runs off the event loop -------------------------------------------------------------------


async def test_a_sync_loader_never_blocks_the_event_loop(admin, loader) -> None:
    loader.release.clear()
    gate = asyncio.create_task(admin.get("/api/v1/gate", params={"experiment": CONFIGURED}, headers=AUTH))
    try:
        for _ in range(100):  # wait until the loader is running (and blocked)
            if loader.threads:
                break
            await asyncio.sleep(0.02)
        assert loader.threads and loader.threads[0] != threading.get_ident()
        # The loader is stuck in its thread; the listener still answers.
        health = await asyncio.wait_for(admin.get("/healthz"), 5)
        assert health.status == 200
        assert not gate.done()
    finally:
        loader.release.set()
    response = await asyncio.wait_for(gate, 10)
    assert (await response.json())["data"]["verdict"] == "pass"


async def test_async_and_callable_loaders(aiohttp_client, good_records) -> None:
    class AsyncCallable:
        async def __call__(self, experiment: str) -> list[dict[str, Any]]:
            return good_records

    async def async_function(experiment: str) -> list[dict[str, Any]]:
        return good_records

    for load_records in (AsyncCallable(), async_function, lambda e: async_function(e)):
        app = web.Application()
        add_gate_routes(
            app,
            load_records=load_records,
            policy=load_policy(None),
            registry=SidecarMetrics.create().registry,
            admin_token=None,
            require_token=False,
        )
        client = await aiohttp_client(app)
        response = await client.get("/api/v1/gate", params={"experiment": CONFIGURED})
        assert (await response.json())["data"]["verdict"] == "pass"


# --- bounded metrics --------------------------------------------------------------------------------------


async def test_metrics_stay_small_whatever_names_are_asked_for(admin) -> None:
    await admin.get("/api/v1/gate", params={"experiment": CONFIGURED}, headers=AUTH)
    for start in range(0, 500, 50):
        await asyncio.gather(
            *(
                admin.get("/api/v1/gate", params={"experiment": f"exp-{i:04d}-" + "y" * 150}, headers=AUTH)
                for i in range(start, start + 50)
            )
        )
    text = await (await admin.get("/metrics", headers=AUTH)).text()
    assert len(text.encode()) < 60_000, len(text)
    assert f'shadow_gate_verdict{{experiment="{CONFIGURED}",verdict="pass"}} 1.0' in text
    assert 'shadow_gate_pairs{experiment="other"}' in text
    names = {
        line.split('experiment="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if "experiment=" in line
    }
    assert len(names) <= 22  # the configured one, at most 20 others, and "other"


def test_experiment_labels_keep_the_configured_one_and_recent_ones() -> None:
    now = [0.0]
    evicted: list[str] = []
    labels = ExperimentLabels("main", max_names=3, idle_s=60, clock=lambda: now[0])
    labels.on_evict(evicted.append)
    assert [labels.label(n) for n in ("a", "b", "c", "d", "main")] == ["a", "b", "c", OTHER, "main"]
    now[0] = 30
    assert labels.label("a") == "a"  # refreshed: now b is the least recently used
    now[0] = 70
    assert labels.label("e") == "e" and evicted == ["b"]
    assert labels.label("f") == "f" and evicted == ["b", "c"]
    assert labels.label("g") == OTHER  # a was used at 30: not idle yet
    assert labels.label("x" * 201) == OTHER and labels.label("\udcff") == OTHER and labels.label("") == OTHER
    assert labels.kept == ["a", "e", "f"]


def test_every_label_of_the_sidecar_metrics_comes_from_a_closed_set() -> None:
    from prometheus_client import generate_latest

    metrics = SidecarMetrics.create()
    for i in range(500):
        metrics.requests.labels(route=f"/v1/evil/{i}", status_class=f"{i + 6}xx").inc()
        metrics.requests.labels(f"/x{i}", "9xx").inc()
        metrics.mirrored.labels(route=f"r{i}").inc()
        metrics.dropped.labels(reason=f"reason-{i}").inc()
        metrics.candidate_errors.labels(kind=f"http_{i}xx").inc()
        metrics.latency.labels(side=f"side-{i}").observe(0.1)
        metrics.time_to_first_byte.labels(side=f"side-{i}").observe(0.1)
    metrics.requests.labels(route="/chat/completions", status_class="2xx").inc()
    metrics.dropped.labels(reason="queue_full").inc()
    text = generate_latest(metrics.registry).decode()
    assert len(text) < 20_000
    assert 'shadow_requests_total{route="/chat/completions",status_class="2xx"} 1.0' in text
    assert 'shadow_requests_total{route="other",status_class="other"} 1000.0' in text
    assert 'shadow_mirror_dropped_total{reason="queue_full"} 1.0' in text


# --- the bearer token -------------------------------------------------------------------------------------


def test_bearer_matches() -> None:
    assert bearer_matches(f"Bearer {TOKEN}", TOKEN) and bearer_matches(f"bearer  {TOKEN} ", TOKEN)
    for header in (
        "",
        "Bearer",
        f"Basic {TOKEN}",
        "Bearer nope",
        "Bearer ü",
        "Bearer \udcff\udcfe",
        "\ud800",
    ):
        assert not bearer_matches(header, TOKEN)
    assert not bearer_matches("Bearer ", "")


async def test_odd_authorization_headers_are_401(admin) -> None:
    response = await admin.get("/metrics", headers={"Authorization": "Bearer ü-ñ-中文"})
    assert response.status == 401
    for value in (
        b"Bearer \xff\xfe\xfd",
        b"Bearer \xc3\xbc",
        b"\xe4\xb8\xad",
        b"Bearer " + TOKEN.encode() + b"\xff",
    ):
        for path in (b"/metrics", b"/api/v1/gate?experiment=b-vs-a"):
            status, body = await send_raw(
                admin, b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nAuthorization: " + value + b"\r\n\r\n"
            )
            assert status == 401, (value, path)
            assert json.loads(body)["error"] == "missing or wrong bearer token"
    assert (await admin.get("/healthz")).status == 200
    assert (await admin.get("/metrics", headers=AUTH)).status == 200


async def test_gate_routes_alone_check_odd_tokens_too(aiohttp_client) -> None:
    app = web.Application()
    add_gate_routes(
        app,
        load_records=lambda _e: [],
        policy=load_policy(None),
        registry=SidecarMetrics.create().registry,
        admin_token=TOKEN,
        require_token=True,
    )
    client = await aiohttp_client(app)
    raw = b"GET /api/v1/gate?experiment=e HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \xff\r\n\r\n"
    assert (await send_raw(client, raw))[0] == 401
    response = await client.post(
        "/api/v1/gate/flagger", json={"name": "e"}, headers={"Authorization": "Bearer é"}
    )
    assert response.status == 401


# --- logging ----------------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    aiohttp_filters = {
        name: list(logging.getLogger(name).filters) for name in ("aiohttp.server", "aiohttp.access")
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, filters in aiohttp_filters.items():
        logging.getLogger(name).filters[:] = filters


def test_log_level_is_applied_and_configuring_twice_replaces(restore_logging) -> None:
    log = logging.getLogger("shadow.test_logs")
    first = io.StringIO()
    configure_logging("debug", stream=first)
    log.debug("a debug line")
    log.info("an info line")
    assert "DEBUG shadow.test_logs: a debug line" in first.getvalue() and "an info line" in first.getvalue()

    second = io.StringIO()
    configure_logging("WARNING", stream=second)
    configure_logging("WARNING", stream=second)  # idempotent: one handler, one line per record
    log.info("hidden")
    log.warning("shown")
    assert "hidden" not in second.getvalue() and second.getvalue().count("shown") == 1
    assert "shown" not in first.getvalue()  # the first handler is gone
    assert len(logging.getLogger("aiohttp.server").filters) == len(
        {id(f) for f in logging.getLogger("aiohttp.server").filters}
    )
    assert sum(isinstance(f, ScrubbingFilter) for f in logging.getLogger("aiohttp.server").filters) == 1


def test_a_bad_level_is_one_sentence_and_changes_nothing(restore_logging) -> None:
    level = logging.getLogger().level
    for bad in ("LOUD", "", "10", "info!"):
        with pytest.raises(
            SettingsError, match="log_level must be one of DEBUG, INFO, WARNING, ERROR or CRITICAL"
        ):
            configure_logging(bad)
    assert logging.getLogger().level == level
    assert LEVELS == ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def test_log_lines_carry_no_secret(restore_logging, caplog) -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    log = logging.getLogger("shadow.test_logs")
    log.warning(
        "calling %s with %s", "https://bob:hunter2@vllm:8000/v1/chat?api-key=sk-live-1", "Bearer sk-tok-2"
    )
    try:
        raise ConnectionError("refused: http://u:pw3@db/x?token=sk-3")
    except ConnectionError:
        log.exception("store down")
    text = out.getvalue()
    for secret in ("hunter2", "sk-live-1", "sk-tok-2", "pw3", "sk-3"):
        assert secret not in text
        assert secret not in caplog.text  # other handlers get the scrubbed record too
    assert "https://***@vllm:8000/v1/chat?<redacted>" in text and "Traceback" in text


async def test_aiohttp_bad_request_logs_keep_no_header_bytes(aiohttp_client, restore_logging) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", stream=out)

    async def empty(_request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/", empty)
    client = await aiohttp_client(app)
    for raw in (
        b"GET / HTTP/1.1\r\nHost: a\r\nCookie: session=" + b"topsecretcookie" * 1000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key: sk-hidden\x01tail\r\n\r\n",
        b"GET /?api-key=sk-query HTTP/1.1\r\nHost: a\r\n\r\n",
    ):
        status, _ = await send_raw(client, raw)
        assert status < 500
    await asyncio.sleep(0.05)
    text = out.getvalue()
    assert "topsecretcookie" not in text and "sk-hidden" not in text and "sk-query" not in text
    assert "LineTooLong" in text or "BadHttpMessage" in text


def test_scrub_and_safe_url() -> None:
    cases = {
        "GET http://bob:pw@vllm:8000/v1/chat?api-key=sk-1 done": "GET http://***@vllm:8000/v1/chat?<redacted> done",
        'GET /v1/models?key=abc&x=1 HTTP/1.1" 200': 'GET /v1/models?<redacted> HTTP/1.1" 200',
        "postgresql+psycopg://u:p@ss@db:5432/x?sslmode=require": "postgresql+psycopg://***@db:5432/x?<redacted>",
        "Authorization: Bearer abc.def-ghi, next": "Authorization: Bearer <redacted>, next",
        "authorization: bearer abc": "authorization: bearer <redacted>",
        "it needs a bearer token: set admin_token": "it needs a bearer token: set admin_token",
        "why? is it a file from `shadow score`?": "why? is it a file from `shadow score`?",
        "mail bob@example.com": "mail bob@example.com",
    }
    for text, expected in cases.items():
        assert scrub(text) == expected
        assert scrub(scrub(text)) == expected
    assert (
        safe_url("https://bob:pw@vllm.internal:8443/v1/chat?api-key=sk#frag")
        == "https://vllm.internal:8443/v1/chat"
    )
    assert safe_url("http://u:p@[::1]:8080/v1?x=1") == "http://[::1]:8080/v1"
    assert safe_url("http://h:99999/v1?k=sk") == "http://h:99999/v1"
    assert safe_url("sqlite:///data/shadow.db") == "sqlite:///data/shadow.db"
    assert safe_url("") == ""


def test_logs_import_nothing_heavy() -> None:
    code = (
        "import sys, logging; before = set(logging.getLogger().handlers); import shadow.core.logs; "
        "assert not {'aiohttp', 'prometheus_client', 'sqlalchemy'} & set(sys.modules), sys.modules.keys(); "
        "assert set(logging.getLogger().handlers) == before"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
