"""Acceptance 7 (no secret stored, logged or sent to the candidate; redaction) and the bad-input rules."""

from __future__ import annotations

import json
import logging
import socket

import aiohttp
import openai

from shadow.simulator import STATE, SimulatedModel, start_simulator
from tests.harness import capture_stack

USER_KEY = "sk-user-SECRET-7f3a9c"
COOKIE = "session=COOKIE-SECRET-b41d"
PERSONAL = (
    "我叫王小明，手机13812345678，身份证11010519491231002X，银行卡6222 0214 0001 2345 678(测试)。"
    " Mail me at jane.doe@example.com or call (415) 555-0132; card 4111 1111 1111 1111."
)


async def test_no_secret_reaches_the_candidate_the_store_or_the_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with capture_stack(tmp_path, secondary_rate=1.0, segment_headers=("X-Region=region",)) as stack:
        client = openai.AsyncOpenAI(
            base_url=stack.url,
            api_key=USER_KEY,
            default_headers={"Cookie": COOKIE, "X-Region": "cn-north"},
            max_retries=0,
        )
        for stream in (False, True):
            result = await client.chat.completions.create(
                model="primary", messages=[{"role": "user", "content": PERSONAL}], stream=stream
            )
            if stream:
                async for _ in result:
                    pass
        await client.close()
        pairs = await stack.wait_for_pairs(2)
        candidate_requests = list(stack.candidate_state.received)
        primary_requests = list(stack.primary_state.received)
        await stack.stop()

    # The candidate gets its own key, never the user's, and no cookie.
    assert len(candidate_requests) == 2
    for request in candidate_requests:
        assert request.headers["Authorization"] == "Bearer sk-candidate-secret-0000"
        assert USER_KEY not in json.dumps(request.headers) and "COOKIE-SECRET" not in json.dumps(
            request.headers
        )
        assert json.loads(request.body)["model"] == "candidate-model"
    # The primary (user calls and secondaries) gets the user's own credentials: it is the user's model.
    assert all(r.headers["Authorization"] == f"Bearer {USER_KEY}" for r in primary_requests)

    stored = b""
    for path in tmp_path.iterdir():
        if path.is_file():
            stored += path.read_bytes()
    logs = caplog.text.encode()
    for secret in (USER_KEY, "COOKIE-SECRET", "sk-candidate-secret-0000"):
        assert secret.encode() not in stored, f"{secret} found in the store"
        assert secret.encode() not in logs, f"{secret} found in the logs"
    for personal in ("13812345678", "11010519491231002X", "jane.doe@example.com", "555-0132", "4111 1111"):
        assert personal.encode() not in stored, f"{personal} stored unredacted"

    pair = pairs[0]
    assert "[PHONE]" in pair.prompt and "[CN_ID]" in pair.prompt and "[EMAIL]" in pair.prompt
    assert "[BANK_CARD]" in pair.prompt
    assert "[PHONE]" in pair.request["messages"][0]["content"]
    assert pair.segment == {"region": "cn-north"}
    assert pair.secondary is not None and pair.secondary.status == 200


async def test_bad_input_goes_to_the_primary_untouched_and_is_not_mirrored(tmp_path):
    async with capture_stack(tmp_path, capture_max_bytes=2048) as stack, aiohttp.ClientSession() as http:
        # Not JSON: the primary decides (our simulator answers 400), we do not mirror.
        async with http.post(f"{stack.url}/chat/completions", data=b"{not json") as resp:
            assert resp.status == 400
            assert "not JSON" in (await resp.json())["error"]["message"]
        assert stack.primary_state.received[-1].body == b"{not json"
        # A JSON body that is not an object: same.
        async with http.post(f"{stack.url}/chat/completions", json=["a", "list"]) as resp:
            assert resp.status == 400
        # Larger than the capture bound: the primary still gets and answers it; we only do not mirror it.
        big = {"model": "m", "messages": [{"role": "user", "content": "长" * 4096}]}
        async with http.post(f"{stack.url}/chat/completions", json=big) as resp:
            assert resp.status == 200
        assert json.loads(stack.primary_state.received[-1].body) == big
        # A route we do not mirror: passed through only.
        async with http.get(f"{stack.url}/models") as resp:
            assert resp.status == 200
        # Forced off by header: answered, not mirrored.
        async with http.post(
            f"{stack.url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Shadow-Mirror": "off"},
        ) as resp:
            assert resp.status == 200
        assert stack.candidate_state.calls == 0
        await stack.stop()
        assert stack.pairs() == []


async def test_primary_unreachable_becomes_a_502_in_openai_shape(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    async with capture_stack(tmp_path, primary=f"http://127.0.0.1:{closed_port}/v1") as stack:
        client = openai.AsyncOpenAI(base_url=stack.url, api_key="k", max_retries=0)
        try:
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        except openai.APIStatusError as exc:
            assert exc.status_code == 502
            assert exc.body["code"] == "bad_gateway"
        else:
            raise AssertionError("expected a 502")
        finally:
            await client.close()


QUERY_SECRET = "QUERY-SECRET-3e1"
PRIMARY_PASSWORD = "PRIMARY-PW-9d2"
CANDIDATE_PASSWORD = "CANDIDATE-PW-5a7"
OVERSIZE_SECRET = "OVERSIZE-SECRET-77c"


async def test_query_strings_url_credentials_and_oversize_headers_stay_out_of_logs_and_store(
    tmp_path, caplog, capfd
):
    """Extends acceptance 7 of issue 2: the user's query string (`?api-key=…`), credentials in the
    primary's and the candidate's URLs, and the first bytes of an oversize header reach no log line (of
    either process) and no stored text — not even an error text."""
    caplog.set_level(logging.DEBUG)
    with socket.socket() as sock:  # the candidate: a port nobody listens on, so its error text is stored
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    primary_runner, primary_url = await start_simulator(SimulatedModel(name="p"))
    primary_state = primary_runner.app[STATE]
    primary = primary_url.replace("http://", f"http://shadow:{PRIMARY_PASSWORD}@")
    candidate = f"http://shadow:{CANDIDATE_PASSWORD}@127.0.0.1:{closed_port}/v1"
    async with (
        capture_stack(
            tmp_path / "second", primary=primary, candidate_url=candidate, log_level="DEBUG"
        ) as stack,
        aiohttp.ClientSession() as http,
    ):
        body = {"model": "m", "messages": [{"role": "user", "content": "你好"}]}
        url = f"{stack.url}/chat/completions?api-key={QUERY_SECRET}"
        async with http.post(url, json=body) as resp:
            assert resp.status == 200
        # The primary got the operator's basic credentials, as an Authorization the user did not send.
        assert primary_state.received[-1].headers["Authorization"].startswith("Basic ")
        oversize = {"Cookie": f"{OVERSIZE_SECRET}=" + "c" * (70 * 1024)}
        async with http.post(url, json=body, headers=oversize) as resp:
            assert resp.status == 400  # over max_header_bytes: refused by the parser before any handler
        pairs = await stack.wait_for_pairs(1)
        assert pairs[0].candidate is not None and pairs[0].candidate.error, (
            "the candidate's failure is stored"
        )
        await stack.stop()
    await primary_runner.cleanup()

    stored = b"".join(p.read_bytes() for p in (tmp_path / "second").rglob("*") if p.is_file())
    logs = "\n".join(record.getMessage() for record in caplog.records) + capfd.readouterr().err
    for secret in (QUERY_SECRET, PRIMARY_PASSWORD, CANDIDATE_PASSWORD, OVERSIZE_SECRET):
        assert secret.encode() not in stored, f"{secret} found in the store"
        assert secret not in logs, f"{secret} found in the logs"
    assert "capture worker" in logs, "the worker's log lines were read too"
