"""One odd answer or header never stops storage (issue 11, acceptance 4): a candidate answer with a lone
surrogate escape, and a segment header with bytes that are not UTF-8. Every pair before and after is
stored, and `shadow export` and `shadow report` read the experiment cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

from yarl import URL

from shadow.core.pairs import loads
from tests.harness import capture_stack
from tests.rawhttp import RawMessage, RawPrimary, build_request, build_response, raw_request

POISON = '"before \\ud83d after"'  # a JSON string holding a lone high surrogate: valid JSON, not UTF-8-able


def _candidate(message: RawMessage) -> bytes:
    text = POISON if b"poison" in message.body else '"fine"'
    body = (
        '{"id":"c","object":"chat.completion","model":"c","choices":[{"index":0,"message":'
        f'{{"role":"assistant","content":{text}}},"finish_reason":"stop"}}]}}'
    ).encode()
    return build_response(200, [("Content-Type", "application/json")], body)


async def test_lone_surrogate_and_invalid_utf8_header_do_not_stop_storage(tmp_path):
    candidate = await RawPrimary(_candidate).start()
    try:
        async with capture_stack(
            tmp_path, candidate_url=candidate.url + "/v1", segment_headers=("X-Region=region",)
        ) as stack:
            url = URL(stack.url)
            prompts = ["first", "second", "poison", "third", "fourth"]
            for prompt in prompts:
                body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]}).encode()
                region = "cn-\xff\xfe-north" if prompt == "poison" else "cn-north"
                request = build_request(
                    "POST", "/v1/chat/completions", f"{url.host}:{url.port}",
                    [("Content-Type", "application/json"), ("X-Region", region)], body,
                )  # fmt: skip
                response = await raw_request(url.host or "", url.port or 0, request)
                assert response.start_line.startswith("HTTP/1.1 200")
            pairs = await stack.wait_for_pairs(len(prompts))
            await stack.stop()
    finally:
        await candidate.stop()

    assert sorted(p.prompt for p in pairs) == sorted(prompts)
    poisoned = next(p for p in pairs if p.prompt == "poison")
    assert poisoned.candidate is not None and poisoned.candidate.text == "before \ufffd after"
    assert "\ufffd" in poisoned.segment["region"]
    assert poisoned.capture_notes, "what was replaced is noted on the pair"
    assert all(not p.capture_notes for p in pairs if p.prompt != "poison")

    out = tmp_path / "pairs.jsonl"
    shadow = [sys.executable, "-m", "shadow.cli"]
    subprocess.run(
        [*shadow, "export", "--db", stack.settings.db, "--output", str(out)], check=True, timeout=60
    )
    lines = out.read_bytes().decode("utf-8").splitlines()  # strict: the file is valid UTF-8
    assert sorted(loads(line).prompt for line in lines) == sorted(prompts)
    report = tmp_path / "report.html"
    result = subprocess.run(
        [*shadow, "report", "--db", stack.settings.db, "--experiment", "default", "--output", str(report)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert report.stat().st_size > 1000
