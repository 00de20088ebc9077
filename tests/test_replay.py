"""`shadow replay`: captured prompts sent to another candidate offline, resumable after an interruption."""

from __future__ import annotations

import json

import pytest

from shadow.core.pairs import Pair, SideOutput, dumps
from shadow.core.settings import Settings
from shadow.replay import ReplayError, already_replayed, replay, run
from shadow.simulator import STATE, SimulatedModel, start_simulator


def _pairs(count: int) -> list[Pair]:
    pairs = []
    for i in range(count):
        zh = i % 2 == 0
        prompt = f"第{i}个问题：为什么要灰度发布？" if zh else f"Question {i}: why pilot before rollout?"
        request = {
            "model": "primary",
            "messages": [{"role": "user", "content": prompt}],
            "stream": i % 3 == 0,
        }
        pairs.append(
            Pair(
                experiment="live",
                request=request,
                prompt=prompt,
                stream=request["stream"],
                baseline=SideOutput(text=f"primary answer {i}", status=200, latency_ms=40.0),
                candidate=SideOutput(text="old candidate", status=200),
                secondary=SideOutput(text=f"primary again {i}", status=200) if i < 3 else None,
                extra={"semantic": {"divergence": 0.5}},  # from a scores file: must not survive a replay
            )
        )
    return pairs


async def test_replay_keeps_the_baseline_and_resumes(tmp_path):
    runner, url = await start_simulator(SimulatedModel(name="model-c"))
    try:
        source = tmp_path / "pairs.jsonl"
        originals = _pairs(10)
        source.write_text("".join(dumps(p) + "\n" for p in originals), encoding="utf-8")
        settings = Settings(candidate=url, candidate_model="model-c", candidate_params='{"temperature": 0}')
        output = tmp_path / "replayed.jsonl"

        report = await replay(source, output, settings, concurrency=3, experiment=None)
        assert report.replayed == 10 and report.candidate_errors == 0
        lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
        by_origin = {line["replayed_from"]: line for line in lines}
        assert set(by_origin) == {p.id for p in originals}
        for original in originals:
            new = by_origin[original.id]
            assert new["id"] != original.id and new["experiment"] == "live-replay"
            assert new["baseline"] == original.baseline.text  # the primary's answer stays the baseline
            assert new["candidate"] and new["candidate"] != "old candidate" and new["candidate_status"] == 200
            assert new["candidate_model"] == "model-c"
            assert (new.get("secondary") is not None) == (original.secondary is not None)
            assert "semantic" not in new
        sent = [json.loads(r.body) for r in runner.app[STATE].received]
        assert {b["model"] for b in sent} == {"model-c"} and all(b["temperature"] == 0 for b in sent)

        # An interruption: 4 complete lines and a torn fifth are left. The re-run replays only the rest.
        kept = output.read_text(encoding="utf-8").splitlines(keepends=True)[:4]
        output.write_text("".join(kept) + '{"id": "torn', encoding="utf-8")
        assert len(already_replayed(output)) == 4
        calls_before = runner.app[STATE].calls
        report = await replay(source, output, settings, concurrency=2, experiment="c-on-last-week")
        assert (report.replayed, report.already_done) == (6, 4)
        assert runner.app[STATE].calls - calls_before == 6
        final = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
        assert sorted(line["replayed_from"] for line in final) == sorted(p.id for p in originals)
    finally:
        await runner.cleanup()


def test_replay_errors_are_sentences(tmp_path):
    import argparse

    args = argparse.Namespace(
        input=str(tmp_path / "missing.jsonl"), output=str(tmp_path / "o.jsonl"), concurrency=2, experiment=None,
        config=None, candidate="http://127.0.0.1:9/v1", candidate_model=None, candidate_params=None,
        candidate_api_key=None, candidate_timeout_s=None,
    )  # fmt: skip
    with pytest.raises(ReplayError, match="does not exist"):
        run(args)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"experiment": "e", "baseline": "x"}\nnot json\n', encoding="utf-8")
    args.input = str(bad)
    with pytest.raises(ReplayError, match="line 2: not valid JSON"):
        run(args)
