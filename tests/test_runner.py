"""The scoring mechanics (file mode, the DataFrame API, the registry, the CLI) with small honest fake
evaluators, plus the output format of the real `length` and `loop` evaluators once they exist."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from evaluators.base import Evaluator, ScoringContext, TextPair
from evaluators.registry import EVALUATORS, UnknownEvaluatorError, load_evaluators, parse_names
from evaluators.runner import EvaluatorFailedError, ScoreRunner, score_lines
from shadow.core.errors import ExitCode
from shadow.core.pairs import PairFormatError

ROOT = Path(__file__).resolve().parent.parent


# --- fakes: real (if tiny) metrics, so the tests check what lands where -----------------------------------


class CharRatio(Evaluator):
    """Pairwise: candidate length over reference length, in characters."""

    name: ClassVar[str] = "char_ratio"
    version: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "ratio"
    pairwise: ClassVar[bool] = True

    def __init__(self) -> None:
        self.calls: list[list[TextPair]] = []

    def score_pairs(self, pairs: Sequence[TextPair], context: ScoringContext) -> list[dict[str, Any]]:
        self.calls.append(list(pairs))
        return [
            {"ratio": round(len(p.candidate) / max(len(p.reference), 1), 3), "chars": len(p.candidate)}
            for p in pairs
        ]


class RepeatedSentence(Evaluator):
    """Per-text: does any sentence (split on 。 or '. ') occur twice?"""

    name: ClassVar[str] = "repeat"
    version: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "flag"
    pairwise: ClassVar[bool] = False

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score_texts(
        self, texts: Sequence[str], finish_reasons: Sequence[str | None], context: ScoringContext
    ) -> list[dict[str, Any]]:
        self.calls.append(list(texts))
        out = []
        for text, reason in zip(texts, finish_reasons, strict=True):
            parts = [
                s.strip() for s in text.replace("。", "。\n").replace(". ", ".\n").splitlines() if s.strip()
            ]
            out.append({"flag": len(parts) != len(set(parts)), "sentences": len(parts), "finish": reason})
        return out


class NeedsEncoder(CharRatio):
    name: ClassVar[str] = "needs_encoder"
    needs_encoder: ClassVar[bool] = True


class Broken(CharRatio):
    name: ClassVar[str] = "broken"

    def score_pairs(self, pairs: Sequence[TextPair], context: ScoringContext) -> list[dict[str, Any]]:
        raise ZeroDivisionError("division by zero")


FAKES = "tests.test_runner:CharRatio,tests.test_runner:RepeatedSentence"


def pair(
    pair_id: str,
    baseline: str | None,
    candidate: str | None,
    secondary: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": pair_id,
        "experiment": "exp",
        "created_at": "2024-05-01T10:00:00.000Z",
        "request": {"messages": [{"role": "user", "content": "问题 / question"}]},
        "prompt": "问题 / question",
        "baseline": baseline,
        "baseline_status": 200,
        "baseline_latency_ms": 812.5,
        "baseline_finish_reason": "stop",
        "candidate": candidate,
        "candidate_status": 200,
        "candidate_latency_ms": 640.0,
        "candidate_finish_reason": "stop",
        "user_bucket": 17,
        "segment": {"region": "cn"},
    }
    if secondary is not None:
        obj |= {"secondary": secondary, "secondary_status": 200, "secondary_finish_reason": "stop"}
    obj.update(extra)
    return obj


ZH = "今天天气很好。我们去公园散步吧。"
ZH_LOOP = "我们需要继续努力。我们需要继续努力。我们需要继续努力。"
EN = "The weather is fine today. Let us walk in the park."


def score(objs: list[dict[str, Any]], evaluators: Sequence[Evaluator], chunk_size: int = 2) -> list[dict]:
    runner = ScoreRunner(evaluators)
    lines = [json.dumps(o, ensure_ascii=False) for o in objs]
    return [json.loads(line) for line in score_lines(lines, runner, chunk_size=chunk_size)]


# --- output format ---------------------------------------------------------------------------------------


def test_each_pair_keeps_its_fields_and_gains_one_object_per_evaluator() -> None:
    objs = [pair("p1", ZH, ZH_LOOP, custom_field={"kept": True}), pair("p2", EN, EN + " Indeed.")]
    out = score(objs, [CharRatio(), RepeatedSentence()])

    assert [o["id"] for o in out] == ["p1", "p2"]
    for before, after in zip(objs, out, strict=True):
        assert {k: after[k] for k in before} == before  # input fields verbatim, unknown ones included
    assert out[0]["char_ratio"] == {"ratio": round(len(ZH_LOOP) / len(ZH), 3), "chars": len(ZH_LOOP)}
    assert out[0]["repeat"] == {
        "baseline": {"flag": False, "sentences": 2, "finish": "stop"},
        "candidate": {"flag": True, "sentences": 3, "finish": "stop"},
    }
    assert out[1]["repeat"]["candidate"]["flag"] is False
    assert out[0]["scored_by"] == {"char_ratio": "1", "repeat": "1"}
    assert "noise" not in out[0] and "secondary" not in out[0]["repeat"]


def test_secondary_adds_the_noise_section_and_a_secondary_per_text_result() -> None:
    out = score([pair("p1", ZH, EN, secondary=ZH + "好的。")], [CharRatio(), RepeatedSentence()])[0]

    assert out["char_ratio"]["chars"] == len(EN)
    assert out["noise"] == {
        "char_ratio": {"ratio": round(len(ZH + "好的。") / len(ZH), 3), "chars": len(ZH) + 3}
    }
    assert set(out["repeat"]) == {"baseline", "candidate", "secondary"}
    assert out["repeat"]["secondary"]["sentences"] == 3


@pytest.mark.parametrize(
    "failure",
    [
        {"candidate": None, "candidate_error": "timeout after 120 s", "candidate_status": None},
        {"candidate_status": 503, "candidate_error": "upstream returned 503"},
        {"candidate": None},
    ],
    ids=["error", "status-503", "no-text"],
)
def test_a_failed_candidate_gets_null_scores_and_keeps_its_operational_fields(failure: dict) -> None:
    obj = pair("p1", ZH, "partial", secondary=ZH) | failure
    out = score([obj], [CharRatio(), RepeatedSentence()])[0]

    assert out["char_ratio"] is None
    assert out["repeat"]["candidate"] is None
    assert out["repeat"]["baseline"]["flag"] is False
    assert out["noise"]["char_ratio"]["ratio"] == 1.0  # the secondary is fine, so the noise floor is scored
    for key in ("candidate_status", "candidate_error", "candidate_latency_ms"):
        assert out.get(key) == obj.get(key)


def test_missing_candidate_side_or_failed_baseline_never_crashes() -> None:
    no_candidate = {k: v for k, v in pair("p1", ZH, None).items() if not k.startswith("candidate")}
    failed_baseline = pair("p2", None, EN, baseline_status=500, baseline_error="boom")
    failed_secondary = pair("p3", EN, EN, secondary="x", secondary_status=429, secondary_error="rate limited")
    out = score([no_candidate, failed_baseline, failed_secondary], [CharRatio(), RepeatedSentence()])

    assert out[0]["char_ratio"] is None and out[0]["repeat"]["candidate"] is None
    assert out[1]["char_ratio"] is None and out[1]["repeat"]["baseline"] is None
    assert out[1]["repeat"]["candidate"]["sentences"] == 2
    assert out[2]["noise"] == {"char_ratio": None} and out[2]["repeat"]["secondary"] is None


def test_an_empty_answer_from_a_healthy_upstream_is_scored() -> None:
    out = score([pair("p1", EN, "")], [CharRatio()])[0]
    assert out["char_ratio"] == {"ratio": 0.0, "chars": 0}


def test_identical_texts_and_comparisons_are_scored_once_per_chunk() -> None:
    ratio, repeat = CharRatio(), RepeatedSentence()
    score([pair("p1", EN, EN, secondary=EN), pair("p2", EN, ZH)], [ratio, repeat], chunk_size=10)

    assert len(ratio.calls) == 1 and len(ratio.calls[0]) == 2  # (EN, EN) three times -> once; (EN, ZH)
    assert sorted(repeat.calls[0]) == sorted([EN, ZH])


def test_rescoring_a_scores_file_replaces_only_the_evaluators_run() -> None:
    first = score([pair("p1", ZH, EN, secondary=ZH)], [CharRatio(), RepeatedSentence()])[0]
    first["char_ratio"] = "stale"
    again = score([first], [CharRatio()])[0]
    assert again["char_ratio"]["chars"] == len(EN)
    assert again["repeat"] == first["repeat"] and again["noise"]["char_ratio"]["ratio"] == 1.0


def test_an_evaluator_that_raises_is_named_in_the_error() -> None:
    with pytest.raises(EvaluatorFailedError, match="'broken'.*pair p1.*division by zero"):
        score([pair("p1", ZH, EN)], [Broken()])


# --- streaming ---------------------------------------------------------------------------------------------


def test_input_streams_through_one_chunk_at_a_time() -> None:
    produced = 0

    def lines() -> Iterator[str]:
        nonlocal produced
        for index in range(1000):
            produced += 1
            yield json.dumps(pair(f"p{index:04d}", ZH * (index % 5 + 1), EN))

    chunk_size = 16
    ratio = CharRatio()
    consumed = 0
    most_ahead = 0
    for line in score_lines(lines(), ScoreRunner([ratio]), chunk_size=chunk_size):
        consumed += 1
        most_ahead = max(most_ahead, produced - consumed)
        assert json.loads(line)["id"] == f"p{consumed - 1:04d}"
    assert consumed == 1000
    assert most_ahead < chunk_size  # never more than the chunk in hand was read ahead of the output
    assert len(ratio.calls) == 1000 // chunk_size + 1


def test_bad_lines_name_their_line_number() -> None:
    good = json.dumps(pair("p1", ZH, EN))
    runner = ScoreRunner([CharRatio()])
    with pytest.raises(PairFormatError, match="line 3: not valid JSON"):
        list(score_lines([good, "", "{oops", good], runner))
    with pytest.raises(PairFormatError, match="line 2: missing required field 'experiment'"):
        list(score_lines([good, '{"baseline": "x"}'], runner))
    with pytest.raises(PairFormatError, match="line 1: not UTF-8"):
        list(score_lines([b"\xff\xfe{}"], runner))


# --- DataFrame API ---------------------------------------------------------------------------------------


def test_score_frame_adds_flat_metric_columns() -> None:
    import pandas as pd

    from evaluators.frame import score_frame

    objs = [
        pair("p1", ZH, ZH_LOOP, secondary=ZH),
        pair("p2", EN, None, candidate_error="timeout", candidate_status=None),
    ]
    df = pd.DataFrame(objs, index=["a", "b"])  # p2 has no secondary: NaN in the secondary columns
    scored = score_frame(df, evaluators=[CharRatio(), RepeatedSentence()])

    assert list(scored.index) == ["a", "b"]
    assert {"char_ratio.ratio", "repeat.candidate.flag", "repeat.baseline.sentences"} <= set(scored.columns)
    assert {"noise.char_ratio.ratio", "repeat.secondary.flag"} <= set(scored.columns)
    assert bool(scored.loc["a", "repeat.candidate.flag"]) is True
    assert math.isnan(scored.loc["b", "char_ratio.ratio"])
    assert math.isnan(scored.loc["b", "noise.char_ratio.ratio"])
    assert scored.loc["b", "candidate_error"] == "timeout"
    assert scored.loc["a", "noise.char_ratio.ratio"] == 1.0


def test_score_frame_reads_what_pandas_reads_from_jsonl(tmp_path: Path) -> None:
    import pandas as pd

    from evaluators.frame import score_frame

    path = tmp_path / "pairs.jsonl"
    objs = [pair("p1", ZH, EN), pair("p2", EN, EN, secondary=EN)]
    path.write_text("\n".join(json.dumps(o, ensure_ascii=False) for o in objs) + "\n", encoding="utf-8")
    scored = score_frame(pd.read_json(path, lines=True), evaluators=FAKES)
    assert scored["char_ratio.chars"].tolist() == [len(EN), len(EN)]
    assert scored["noise.char_ratio.ratio"].isna().tolist() == [True, False]


# --- registry --------------------------------------------------------------------------------------------


def test_registry_names_and_errors() -> None:
    assert list(EVALUATORS) == ["semantic", "length", "loop", "coherence", "tools", "refusal", "json"]
    assert parse_names("loop, length,loop") == ["loop", "length"]
    assert parse_names("") == list(EVALUATORS)
    with pytest.raises(
        UnknownEvaluatorError,
        match="known evaluators: semantic, length, loop, coherence, tools, refusal, json",
    ):
        parse_names("length,lenght")
    with pytest.raises(UnknownEvaluatorError, match="not installed"):
        load_evaluators("nowhere.module:Thing")
    with pytest.raises(UnknownEvaluatorError, match="used twice"):
        load_evaluators([CharRatio(), CharRatio()])


def test_text_evaluators_never_import_torch() -> None:
    code = (
        "import sys\n"
        "from evaluators.runner import ScoreRunner\n"
        "runner = ScoreRunner.build('length,loop', device='cuda')\n"
        "assert runner.context.encoder is None\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'sentence_transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# --- the real evaluators ---------------------------------------------------------------------------------


def test_real_length_and_loop_output_format() -> None:
    available = ["length", "loop"]
    loop_text = "答案如下。" + "我们需要继续努力学习。" * 12
    objs = [
        pair("p1", ZH + EN, loop_text, secondary=ZH + EN, candidate_finish_reason="length"),
        pair("p2", EN, None, candidate_error="connection reset", candidate_status=None),
    ]
    out = score(objs, load_evaluators(available))
    for name in available:
        evaluator = load_evaluators([name])[0]
        assert out[0]["scored_by"][name] == str(evaluator.version)
        if evaluator.pairwise:
            assert isinstance(out[0][name], dict) and isinstance(out[0]["noise"][name], dict)
            assert out[1][name] is None
            json.dumps(out[0][name])
        else:
            assert set(out[0][name]) == {"baseline", "candidate", "secondary"}
            assert out[1][name]["candidate"] is None and isinstance(out[1][name]["baseline"], dict)
    assert out[0]["loop"]["candidate"]["flag"] is True
    assert out[0]["loop"]["baseline"]["flag"] is False


@pytest.mark.slow  # loads the encoder
def test_all_real_evaluators_output_format() -> None:
    names = list(EVALUATORS)
    objs = [
        pair("p1", ZH, ZH + "我们明天再去。", secondary=ZH),
        pair("p2", EN, "I cannot help with that.", secondary=None),
        pair("p3", EN, None, secondary=EN, candidate_error="timeout", candidate_status=None),
    ]
    runner = ScoreRunner.build(names, device="cpu")
    lines = [json.dumps(o, ensure_ascii=False) for o in objs]
    out = [json.loads(line) for line in score_lines(lines, runner)]
    for evaluator in runner.evaluators:
        name = evaluator.name
        if name == "tools":  # no side called a tool: not applicable, on every pair
            assert out[0][name] is None and out[1][name] is None and out[2][name] is None
        elif evaluator.pairwise:
            assert isinstance(out[0][name], dict) and isinstance(out[0]["noise"][name], dict)
            assert isinstance(out[1][name], dict) and "noise" not in out[1]
            assert out[2][name] is None and isinstance(out[2]["noise"][name], dict)
        else:
            assert set(out[0][name]) == {"baseline", "candidate", "secondary"}
            assert set(out[1][name]) == {"baseline", "candidate"}
            assert out[2][name]["candidate"] is None and isinstance(out[2][name]["secondary"], dict)


# --- CLI ---------------------------------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    """`shadow score ARGV` through the CLI's one error boundary (`shadow.cli.main`)."""
    from shadow.cli import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return main(["score", *argv])
    finally:  # main() configures logging for the process; leave it as it was
        root.handlers[:] = handlers
        root.setLevel(level)


def write_pairs(path: Path, objs: list[dict[str, Any]], extra_lines: Sequence[str] = ()) -> Path:
    lines = [json.dumps(o, ensure_ascii=False) for o in objs] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_file_mode_writes_one_scored_line_per_pair(tmp_path: Path) -> None:
    source = write_pairs(tmp_path / "pairs.jsonl", [pair("p1", ZH, EN), pair("p2", EN, ZH, secondary=EN)])
    target = tmp_path / "scores.jsonl"
    assert (
        run_cli("--input", str(source), "--output", str(target), "--evaluators", FAKES, "--chunk-size", "1")
        == 0
    )
    out = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [o["id"] for o in out] == ["p1", "p2"]
    assert "noise" in out[1] and out[0]["repeat"]["candidate"]["sentences"] == 2
    assert "今天" in target.read_text(encoding="utf-8")  # Chinese stays readable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl", "scores.jsonl"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600


def test_cli_file_mode_can_write_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_pairs(tmp_path / "pairs.jsonl", [pair("p1", ZH, EN), pair("p2", EN, ZH)])
    assert run_cli("--input", str(source), "--output", "-", "--evaluators", FAKES) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["id"] for line in captured.out.splitlines()] == ["p1", "p2"]
    assert "scored 2 pairs" in captured.err


def test_cli_bad_line_stops_with_its_number_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_pairs(tmp_path / "pairs.jsonl", [pair("p1", ZH, EN)] * 3, extra_lines=["not json"])
    target = tmp_path / "scores.jsonl"
    target.write_text("previous run\n")
    code = run_cli(
        "--input", str(source), "--output", str(target), "--evaluators", FAKES, "--chunk-size", "2"
    )
    assert code == ExitCode.COULD_NOT_RUN
    err = capsys.readouterr().err
    assert "line 4: not valid JSON" in err and "nothing was written" in err
    assert target.read_text() == "previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl", "scores.jsonl"]  # no temp file left


def test_cli_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert code == ExitCode.COULD_NOT_RUN
    err = capsys.readouterr().err
    assert "input file" in err and "nope.jsonl does not exist" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_unknown_evaluator_lists_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_pairs(tmp_path / "pairs.jsonl", [pair("p1", ZH, EN)])
    code = run_cli(
        "--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--evaluators", "length,bleu"
    )
    assert code == ExitCode.USAGE
    assert (
        "unknown evaluator 'bleu'; known evaluators: semantic, length, loop, coherence"
        in capsys.readouterr().err
    )


def test_cli_mode_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no store where the settings point by default (./shadow.db)
    monkeypatch.delenv("SHADOW_DB", raising=False)
    assert run_cli() == ExitCode.USAGE
    assert "give either --input and --output" in capsys.readouterr().err
    assert run_cli("--input", "x.jsonl") == ExitCode.USAGE
    assert "needs both --input PATH and --output PATH" in capsys.readouterr().err
    assert run_cli("--input", "x", "--output", "y", "--follow") == ExitCode.USAGE
    assert "store mode (--db) only" in capsys.readouterr().err
    assert run_cli("--input", "x", "--output", "y", "--device", "gpu") == ExitCode.USAGE
    assert "--device must be auto, cpu, cuda or cuda:N, not 'gpu'" in capsys.readouterr().err


@pytest.mark.slow  # imports torch and sentence-transformers (~10 s on a small CPU)
def test_cli_cuda_asked_but_absent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    source = write_pairs(tmp_path / "pairs.jsonl", [pair("p1", ZH, EN)])
    code = run_cli(
        "--input", str(source), "--output", str(tmp_path / "o.jsonl"),
        "--evaluators", "tests.test_runner:NeedsEncoder", "--device", "cuda",
    )  # fmt: skip
    assert code == ExitCode.COULD_NOT_RUN
    err = capsys.readouterr().err
    assert "cannot use device 'cuda'" in err and "no CUDA GPU" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_evaluator_failure_exits_3_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_pairs(tmp_path / "pairs.jsonl", [pair("p1", ZH, EN)])
    code = run_cli(
        "--input",
        str(source),
        "--output",
        str(tmp_path / "o.jsonl"),
        "--evaluators",
        "tests.test_runner:Broken",
    )
    assert code == ExitCode.COULD_NOT_RUN
    assert "evaluator 'broken'" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
