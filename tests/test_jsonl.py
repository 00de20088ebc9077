"""JSONL export and import: byte-identical round trips, unknown fields kept, bad lines reported and kept."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from shadow.core import pairs
from shadow.core.pairs import Pair, SideOutput
from shadow.store import StoreError, export_pairs, import_pairs, make_engine, upgrade


def sample_pair(index: int, experiment: str = "exp-a") -> Pair:
    at = datetime(2025, 3, 1, 8, 0, tzinfo=UTC) + timedelta(minutes=index)
    return Pair(
        experiment=experiment,
        request={
            "model": "m",
            "messages": [{"role": "user", "content": f"请把第{index}段翻译成英文"}],
            "z": 1,
        },
        prompt=f"请把第{index}段翻译成英文",
        baseline=SideOutput(
            text=f"第{index}段：你好世界 🌏", status=200, latency_ms=10.5, usage={"total": 3}
        ),
        candidate=SideOutput(text=f"Paragraph {index}", status=200, started_at=at) if index % 3 else None,
        secondary=SideOutput(error="upstream timeout", status=504) if index % 5 == 0 else None,
        segment={"地区": "华东"},
        created_at=at,
        extra={"label": "好", "review": {"by": "李", "ok": index % 2 == 0}} if index % 2 else {},
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/shadow.db"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    return url


def fresh_engine(url: str) -> Engine:
    upgrade(url)
    return make_engine(url)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_round_trip_is_byte_identical(database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "source.jsonl"
    write_lines(source, [pairs.dumps(sample_pair(i)).encode() for i in range(25)])
    engine = make_engine(database_url)
    report = import_pairs(engine, source)
    assert (report.imported, report.duplicates, report.rejected) == (25, 0, ())

    first = tmp_path / "first.jsonl"
    assert export_pairs(engine, first) == 25
    second_engine = fresh_engine(f"sqlite:///{tmp_path}/second.db")
    assert import_pairs(second_engine, first).imported == 25
    second = tmp_path / "second.jsonl"
    export_pairs(second_engine, second)
    assert second.read_bytes() == first.read_bytes()

    text = first.read_text(encoding="utf-8")
    assert "请把第1段翻译成英文" in text and "🌏" in text  # readable, not \u escapes
    exported = [pairs.loads(line) for line in text.splitlines()]
    assert [p.id for p in exported] == sorted(p.id for p in exported)
    by_id = {p.id: p for p in exported}
    for original in (sample_pair(i) for i in range(3)):  # ids differ; compare by content
        match = next(p for p in by_id.values() if p.prompt == original.prompt)
        assert match.extra == original.extra
        assert (match.candidate is None) == (original.candidate is None)
    engine.dispose()
    second_engine.dispose()


def test_unknown_fields_are_kept(tmp_path: Path) -> None:
    engine = fresh_engine(f"sqlite:///{tmp_path}/shadow.db")
    line = {
        "id": "01JNMR0000000000000000TEST",
        "experiment": "imported",
        "created_at": "2025-01-02T03:04:05.678Z",
        "request": {"messages": [{"role": "user", "content": "天气怎么样？"}]},
        "baseline": "晴天",
        "baseline_status": 200,
        "human_label": "better",
        "scores": {"judge": 0.8},
    }
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    assert import_pairs(engine, source).imported == 1
    out = io.StringIO()
    assert export_pairs(engine, out) == 1
    exported = json.loads(out.getvalue())
    assert exported["human_label"] == "better" and exported["scores"] == {"judge": 0.8}
    assert exported["prompt"] == "天气怎么样？" and exported["baseline"] == "晴天"
    assert exported["created_at"] == "2025-01-02T03:04:05.678Z"
    assert "candidate" not in exported
    engine.dispose()


def test_bad_lines_are_reported_and_kept(database_url: str, tmp_path: Path) -> None:
    good = [pairs.dumps(sample_pair(i)).encode() for i in range(4)]
    bad_json = b'{"experiment": "a", "baseline": "x",'
    not_object = b"[1, 2, 3]"
    no_baseline = json.dumps({"experiment": "a"}).encode()
    bad_time = json.dumps({"experiment": "a", "baseline": "x", "created_at": "yesterday"}).encode()
    bad_bucket = json.dumps(
        {"experiment": "a", "baseline": "x", "user_bucket": "七"}, ensure_ascii=False
    ).encode()
    too_long = json.dumps({"experiment": "e" * 201, "baseline": "x"}).encode()
    not_utf8 = b'{"experiment": "a", "baseline": "\xff\xfe"}'
    lines = [good[0], bad_json, good[1], not_object, b"", no_baseline, bad_time, good[2]]
    lines += [bad_bucket, too_long, not_utf8, good[3]]
    source = tmp_path / "mixed.jsonl"
    write_lines(source, lines)

    engine = make_engine(database_url)
    report = import_pairs(engine, source)
    assert report.imported == 4 and report.duplicates == 0
    numbers = [int(message.split(":")[0].removeprefix("line ")) for message in report.rejected]
    assert numbers == [2, 4, 6, 7, 9, 10, 11]
    assert "not valid JSON" in report.rejected[0]
    assert "baseline" in report.rejected[2]
    assert "created_at" in report.rejected[3]
    assert "user_bucket" in report.rejected[4]
    assert "experiment" in report.rejected[5] and "200" in report.rejected[5]
    assert "UTF-8" in report.rejected[6]
    assert report.rejected_path == tmp_path / "mixed.jsonl.rejected.jsonl"
    assert report.rejected_path.read_bytes() == b"".join(
        line + b"\n" for line in [bad_json, not_object, no_baseline, bad_time, bad_bucket, too_long, not_utf8]
    )

    summary = report.summary(max_reasons=2)
    assert summary.startswith("imported 4 pairs, skipped 0 already stored, rejected 7 lines")
    assert "  line 2: not valid JSON" in summary and "... and 5 more" in summary

    again = import_pairs(engine, source)  # a re-import skips what is stored
    assert (again.imported, again.duplicates, len(again.rejected)) == (0, 4, 7)
    engine.dispose()


def test_duplicates_within_a_file_and_across_imports(tmp_path: Path) -> None:
    engine = fresh_engine(f"sqlite:///{tmp_path}/shadow.db")
    pair = sample_pair(1)
    source = tmp_path / "dup.jsonl"
    write_lines(source, [pairs.dumps(pair).encode()] * 3)
    report = import_pairs(engine, source)
    assert (report.imported, report.duplicates, report.rejected_path) == (1, 2, None)
    assert not (tmp_path / "dup.jsonl.rejected.jsonl").exists()
    engine.dispose()


def test_experiment_filter_and_override(tmp_path: Path) -> None:
    engine = fresh_engine(f"sqlite:///{tmp_path}/shadow.db")
    source = tmp_path / "mixed.jsonl"
    write_lines(source, [pairs.dumps(sample_pair(i, experiment=f"exp-{i % 2}")).encode() for i in range(6)])
    assert import_pairs(engine, source).imported == 6
    out = io.StringIO()
    assert export_pairs(engine, out, experiment="exp-1") == 3
    assert all(json.loads(line)["experiment"] == "exp-1" for line in out.getvalue().splitlines())

    other = fresh_engine(f"sqlite:///{tmp_path}/other.db")
    assert import_pairs(other, source, experiment="golden").imported == 6
    assert export_pairs(other, io.StringIO(), experiment="golden") == 6
    engine.dispose()
    other.dispose()


def test_import_of_a_missing_file_says_so(tmp_path: Path) -> None:
    engine = fresh_engine(f"sqlite:///{tmp_path}/shadow.db")
    with pytest.raises(StoreError, match="no such file"):
        import_pairs(engine, tmp_path / "missing.jsonl")
    engine.dispose()


def test_import_into_an_unmigrated_database_stops_with_a_clear_error(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/empty.db")
    source = tmp_path / "one.jsonl"
    write_lines(source, [pairs.dumps(sample_pair(1)).encode()])
    with pytest.raises(StoreError, match="run it again"):
        import_pairs(engine, source)
    engine.dispose()
