"""Every part of an answer in the pair format and the store: tool calls, refusal, reasoning, the other
choices and logprobs round-trip through JSONL, the spool, SQLite (writer, `shadow import` / `shadow export`)
and PostgreSQL; lines and rows from before the fields read as before; bad shapes are named; text no
database can hold is replaced and noted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from shadow.cli import main
from shadow.core import pairs
from shadow.core.pairs import PART_FIELDS, SIDE_FIELDS, SIDES, Pair, PairFormatError, SideOutput
from shadow.core.settings import Settings
from shadow.core.storable import make_storable
from shadow.store import PairWriter, export_pairs, import_pairs, make_engine, upgrade
from shadow.store.database import check, downgrade
from shadow.store.models import pair_to_row, pairs_table, row_to_pair
from shadow.store.spool import Spool

DATA = Path(__file__).parent / "data"
AT = datetime(2026, 12, 15, 9, 30, 0, 250000, tzinfo=UTC)

INVALID_ARGUMENTS = '{"city": "北京", "unit": '  # cut off mid-object: not JSON, kept as sent
PARALLEL_CALLS = [
    {"id": "call_1", "type": "function", "name": "get_weather", "arguments": '{"city": "上海", "天": 2}'},
    {"id": "call_2", "type": "function", "name": "get_weather", "arguments": INVALID_ARGUMENTS},
    {"id": None, "type": "custom", "name": "run_sql", "arguments": "SELECT 1;\n-- 注释"},
]
CHAT_LOGPROBS = [
    {"token": "好", "logprob": -0.0123, "bytes": [229, 165, 189], "top_logprobs": []},
    {
        "token": "的",
        "logprob": -1.5,
        "bytes": [231, 154, 132],
        "top_logprobs": [{"token": "了", "logprob": -2.0}],
    },
]
OTHER_CHOICES = [
    {
        "index": 1,
        "text": None,
        "tool_calls": [{"id": "call_9", "type": "function", "name": "lookup", "arguments": '{"q":"天气"}'}],
        "refusal": None,
        "reasoning": "先查一下",
        "finish_reason": "tool_calls",
    },
    {
        "index": 2,
        "text": "我不能帮你做这件事。",
        "tool_calls": None,
        "refusal": "I can't help with that.",
        "reasoning": None,
        "finish_reason": "stop",
    },
]


def agent_pair(experiment: str = "agents") -> Pair:
    """A baseline that answered in plain text, and a candidate and secondary that used every part."""
    return Pair(
        experiment=experiment,
        request={"model": "m", "n": 3, "messages": [{"role": "user", "content": "北京和上海天气怎么样？"}]},
        prompt="北京和上海天气怎么样？",
        baseline=SideOutput(text="北京晴，上海多云。", status=200, finish_reason="stop", started_at=AT),
        candidate=SideOutput(
            text=None,
            status=200,
            latency_ms=812.5,
            finish_reason="tool_calls",
            usage={"prompt_tokens": 20, "completion_tokens": 41},
            model="cand-1",
            started_at=AT,
            tool_calls=[dict(call) for call in PARALLEL_CALLS],
            refusal="部分请求无法完成",
            reasoning="用户问了两个城市：并行调用两次。",
            choices=[dict(choice) for choice in OTHER_CHOICES],
            logprobs=[dict(entry) for entry in CHAT_LOGPROBS],
        ),
        secondary=SideOutput(
            text="晴",
            status=200,
            # completions-style logprobs: an object, not a list
            logprobs={"tokens": ["晴"], "token_logprobs": [-0.25], "top_logprobs": None, "text_offset": [0]},
            tool_calls=[],
        ),
        segment={"agent": "weather"},
        created_at=AT,
    )


def by_content(found: list[Pair]) -> Pair:
    [pair] = [p for p in found if p.experiment == "agents"]
    return pair


# --- JSONL -----------------------------------------------------------------------------------------------


def test_every_part_round_trips_through_jsonl() -> None:
    pair = agent_pair()
    line = pairs.dumps(pair)
    assert pairs.loads(line) == pair
    assert pairs.dumps(pairs.loads(line)) == line

    obj = json.loads(line)
    assert [c["arguments"] for c in obj["candidate_tool_calls"]] == [c["arguments"] for c in PARALLEL_CALLS]
    assert obj["candidate_tool_calls"][1]["arguments"] == INVALID_ARGUMENTS  # verbatim, not parsed
    assert '"arguments":"{\\"city\\": \\"北京\\", \\"unit\\": "' in line  # readable Chinese, as a string
    assert obj["candidate_refusal"] == "部分请求无法完成"
    assert obj["candidate_reasoning"].startswith("用户问了两个城市")
    assert obj["candidate_choices"] == OTHER_CHOICES
    assert obj["candidate_logprobs"] == CHAT_LOGPROBS
    assert obj["secondary_logprobs"]["token_logprobs"] == [-0.25]
    assert obj["secondary_tool_calls"] == []  # "asked, none made" is kept apart from "not captured"
    assert "secondary_refusal" not in obj and "secondary_choices" not in obj
    # A plain text answer carries none of the new keys: lines stay as small as before.
    assert not any(f"baseline_{f}" in obj for f in PART_FIELDS)
    assert all(f"baseline_{f}" in obj for f in SIDE_FIELDS)
    assert pairs.loads(line).extra == {}  # the parts are fields, not unknown extras


def test_a_side_with_only_parts_is_a_side() -> None:
    line = json.dumps(
        {"experiment": "e", "baseline": "hi", "candidate_tool_calls": [{"name": "f", "arguments": "{}"}]}
    )
    pair = pairs.loads(line)
    assert pair.candidate is not None and pair.candidate.text is None
    assert pair.candidate.tool_calls == [{"name": "f", "arguments": "{}"}]  # missing keys stay missing
    assert pair.secondary is None


def test_old_lines_load_without_parts_and_are_written_back_as_they_were() -> None:
    lines = (DATA / "pairs_before_layers.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        pair = pairs.loads(line)
        for name in SIDES:
            side = pair.side(name)
            if side is not None:
                assert all(getattr(side, f) is None for f in PART_FIELDS), (pair.id, name)
        assert pairs.dumps(pair) == line  # byte for byte: no new key, nothing reordered


BAD_SHAPES = [
    ("candidate_tool_calls", {"name": "f", "arguments": "{}"}, "'candidate_tool_calls' must be a list"),
    ("candidate_tool_calls", "[]", "'candidate_tool_calls' must be a list"),
    ("candidate_tool_calls", ["call"], "'candidate_tool_calls[0]' must be a tool-call object"),
    (
        "candidate_tool_calls",
        [{"name": "f", "arguments": "{}"}, {"name": "g", "arguments": {"x": 1}}],
        "'candidate_tool_calls[1].arguments' must be a string",
    ),
    ("baseline_tool_calls", [{"name": "f"}], "'baseline_tool_calls[0].arguments' must be a string"),
    (
        "candidate_tool_calls",
        [{"name": 7, "arguments": ""}],
        "'candidate_tool_calls[0].name' must be a string",
    ),
    (
        "candidate_tool_calls",
        [{"id": ["x"], "arguments": ""}],
        "'candidate_tool_calls[0].id' must be a string",
    ),
    ("candidate_refusal", 1, "'candidate_refusal' must be a string (or null), got a number"),
    ("secondary_reasoning", {"summary": "x"}, "'secondary_reasoning' must be a string"),
    ("candidate_choices", {"index": 1}, "'candidate_choices' must be a list"),
    ("candidate_choices", [None], "'candidate_choices[0]' must be a choice object, got null"),
    ("candidate_choices", [{"index": "1"}], "'candidate_choices[0].index' must be an integer"),
    ("candidate_choices", [{"index": 1, "text": ["a"]}], "'candidate_choices[0].text' must be a string"),
    (
        "candidate_choices",
        [{"index": 1, "tool_calls": [{"arguments": None}]}],
        "'candidate_choices[0].tool_calls[0].arguments' must be a string",
    ),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_SHAPES)
def test_bad_shapes_are_named_in_one_line(key: str, value: object, message: str) -> None:
    obj = agent_pair().to_json()
    obj[key] = value
    with pytest.raises(PairFormatError) as info:
        pairs.loads(json.dumps(obj, ensure_ascii=False), line_number=7)
    reason = str(info.value)
    assert reason.startswith("line 7: field ") and message in reason
    assert "\n" not in reason and len(reason) < 200


def test_logprobs_are_kept_as_sent_whatever_their_shape() -> None:
    for logprobs in ([], {"content": None}, [[-1.0]], {"tokens": []}):
        obj = agent_pair().to_json()
        obj["candidate_logprobs"] = logprobs
        assert pairs.loads(json.dumps(obj)).candidate.logprobs == logprobs  # type: ignore[union-attr]


# --- text no database can hold -----------------------------------------------------------------------------


def test_a_lone_surrogate_in_tool_call_arguments_is_replaced_and_noted() -> None:
    obj = agent_pair().to_json()
    # JSON escapes decode to what no UTF-8 encoder and no database takes: a lone surrogate, NUL.
    line = json.dumps(obj, ensure_ascii=False)
    line = line.replace('"{\\"city\\": \\"上海\\"', '"{\\"city\\": \\"\\ud83d上海\\"', 1)
    line = line.replace('"部分请求无法完成"', '"部分\\u0000请求"', 1)
    line = line.replace('"先查一下"', '"先查\\udcff一下"', 1)
    pair = pairs.loads(line)
    assert "\ud83d" in pair.candidate.tool_calls[0]["arguments"]  # type: ignore[index, union-attr]
    make_storable(pair)
    side = pair.candidate
    assert side is not None and side.tool_calls is not None and side.choices is not None
    assert side.tool_calls[0]["arguments"] == '{"city": "\ufffd上海", "天": 2}'
    assert side.tool_calls[1]["arguments"] == INVALID_ARGUMENTS  # the others are untouched
    assert side.refusal == "部分\ufffd请求"
    assert side.choices[0]["reasoning"] == "先查\ufffd一下"
    assert pair.capture_notes == [
        "candidate.refusal: 1 invalid code point replaced with U+FFFD",
        "candidate.tool_calls: 1 invalid code point replaced with U+FFFD",
        "candidate.choices: 1 invalid code point replaced with U+FFFD",
    ]
    pairs.dumps(pair).encode("utf-8")  # now writable
    before = list(pair.capture_notes)
    make_storable(pair)
    assert pair.capture_notes == before  # a storable pair is left as it was


def test_names_reasoning_and_non_finite_logprobs_are_made_storable() -> None:
    pair = agent_pair()
    assert pair.candidate is not None and pair.candidate.tool_calls is not None
    pair.candidate.tool_calls[2]["name"] = "run\x00sql"
    pair.candidate.reasoning = "\udcff思考"
    pair.candidate.logprobs = [{"token": "x", "logprob": float("-inf")}]
    make_storable(pair)
    assert pair.candidate.tool_calls[2]["name"] == "run\ufffdsql"
    assert pair.candidate.reasoning == "\ufffd思考"
    assert pair.candidate.logprobs == [{"token": "x", "logprob": None}]
    assert pair.capture_notes == [
        "candidate.reasoning: 1 invalid code point replaced with U+FFFD",
        "candidate.tool_calls: 1 invalid code point replaced with U+FFFD",
        "candidate.logprobs: 1 non-finite number replaced with null",
    ]


# --- the store -------------------------------------------------------------------------------------------


def test_row_conversion_keeps_every_part() -> None:
    pair = agent_pair()
    row = pair_to_row(pair)
    assert row["candidate_tool_calls"] == PARALLEL_CALLS and row["candidate_refusal"] == "部分请求无法完成"
    assert row["baseline_tool_calls"] is None and row["secondary_tool_calls"] == []
    assert set(row) == {column.key for column in pairs_table.columns}
    assert row_to_pair(row) == pair


def test_sqlite_import_and_export_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    old_line = (DATA / "pairs_before_layers.jsonl").read_text(encoding="utf-8").splitlines()[0]
    source = tmp_path / "pairs.jsonl"
    source.write_text(pairs.dumps(agent_pair()) + "\n" + old_line + "\n", encoding="utf-8")
    assert main(["import", "--db", db, str(source)]) == 0
    exported = tmp_path / "exported.jsonl"
    assert main(["export", "--db", db, "--output", str(exported)]) == 0
    capsys.readouterr()

    lines = exported.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    found = [pairs.loads(line) for line in lines]
    original = agent_pair()
    stored = by_content(found)
    original.id = stored.id
    assert stored == original
    assert old_line in lines  # the old pair comes back byte for byte, without the new keys

    # A second store, from the export, exports the same bytes.
    db2 = f"sqlite:///{tmp_path / 'again.db'}"
    assert main(["import", "--db", db2, str(exported)]) == 0
    again = tmp_path / "again.jsonl"
    assert main(["export", "--db", db2, "--output", str(again)]) == 0
    assert again.read_bytes() == exported.read_bytes()


def test_import_rejects_a_bad_part_with_its_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    good = agent_pair().to_json()
    bad = agent_pair().to_json()
    bad["candidate_tool_calls"] = [{"name": "f", "arguments": {"city": "北京"}}]
    source = tmp_path / "pairs.jsonl"
    source.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    assert main(["import", "--db", db, str(source)]) == 1  # done, but not all of it
    out = capsys.readouterr().out
    assert "imported 1 pairs" in out
    assert "line 2: field 'candidate_tool_calls[0].arguments' must be a string" in out
    assert (tmp_path / "pairs.jsonl.rejected.jsonl").read_text(encoding="utf-8") == json.dumps(bad) + "\n"


async def test_writer_and_spool_keep_every_part(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "lost.spool")
    spooled = agent_pair()
    spool.append([spooled])
    replay = spool.start_replay()
    assert replay is not None
    assert replay.next_batch(10) == [spooled]
    replay.finish()

    settings = Settings(db=f"sqlite:///{tmp_path}/shadow.db", spool_path=str(tmp_path / "pairs.spool"))
    upgrade(settings.db)
    writer = PairWriter(settings)
    await writer.start()
    written = agent_pair()
    writer.submit(written)
    await writer.close()
    assert writer.written_total == 1 and writer.spooled_total == 0
    engine = make_engine(settings.db)
    with engine.connect() as connection:
        [row] = connection.execute(select(pairs_table)).mappings().all()
    engine.dispose()
    assert row_to_pair(row) == written


@pytest.mark.timeout(120)
def test_postgres_keeps_every_part(postgres_url: str, tmp_path: Path) -> None:
    upgrade(postgres_url)
    check(postgres_url)
    engine = make_engine(postgres_url)
    try:
        columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("pairs")}
        for side in SIDES:
            assert type(columns[f"{side}_tool_calls"]).__name__ == "JSONB"
            assert type(columns[f"{side}_logprobs"]).__name__ == "JSONB"
            assert type(columns[f"{side}_refusal"]).__name__ == "TEXT"

        # Through the store's own import and export; a lone surrogate in the arguments must not stop it.
        poisoned = agent_pair().to_json()
        poisoned["id"] = pairs.new_pair_id()
        poisoned["experiment"] = "poisoned"
        poisoned["candidate_tool_calls"][0]["arguments"] = '{"city": "\ud83d上海"}'
        source = tmp_path / "pairs.jsonl"
        with open(source, "w", encoding="utf-8") as handle:
            handle.write(pairs.dumps(agent_pair()) + "\n")
            handle.write(json.dumps(poisoned) + "\n")  # ASCII escapes: the \ud83d stays an escape
        report = import_pairs(engine, source)
        assert (report.imported, report.rejected) == (2, ())
        exported = tmp_path / "exported.jsonl"
        assert export_pairs(engine, exported) == 2
        found = [pairs.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]

        stored = by_content(found)
        original = agent_pair()
        original.id = stored.id
        assert stored == original  # JSONB reorders object keys; the values, and every string, are kept
        assert stored.candidate is not None and stored.candidate.tool_calls is not None
        assert stored.candidate.tool_calls[1]["arguments"] == INVALID_ARGUMENTS

        [cleaned] = [p for p in found if p.experiment == "poisoned"]
        assert cleaned.candidate.tool_calls[0]["arguments"] == '{"city": "\ufffd上海"}'  # type: ignore[index, union-attr]
        assert cleaned.capture_notes == ["candidate.tool_calls: 1 invalid code point replaced with U+FFFD"]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.timeout(120)
def test_rows_from_before_the_columns_read_as_no_parts(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/shadow.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    )
    upgrade(url, "0004_capture_notes")
    engine = make_engine(url)
    try:
        old = agent_pair()
        row = pair_to_row(old)
        for name in SIDES:
            for f in PART_FIELDS:
                del row[f"{name}_{f}"]
        with engine.begin() as connection:  # a row written by the previous version, and a score on it
            connection.execute(pairs_table.insert(), [row])  # only the columns given: those of 0004
            connection.execute(
                text(
                    "INSERT INTO scores (pair_id, evaluator, version, result, scored_at)"
                    " VALUES (:id, 'length', '1', '{}', '2026-01-01 00:00:00+00')"
                ),
                {"id": old.id},
            )
        upgrade(url)
        check(url)
        with engine.connect() as connection:
            read = row_to_pair(connection.execute(select(pairs_table)).mappings().one())
        for name in SIDES:
            side = read.side(name)
            assert side is not None and all(getattr(side, f) is None for f in PART_FIELDS)
        assert read.candidate is not None and read.candidate.text == old.candidate.text  # type: ignore[union-attr]
        line = json.loads(pairs.dumps(read))
        assert not any(f"{s}_{f}" in line for s in SIDES for f in PART_FIELDS)

        # Going back drops the columns only: the pair and its score stay.
        downgrade(url, "0004_capture_notes")
        engine.dispose()
        engine = make_engine(url)
        names = {c["name"] for c in inspect(engine).get_columns("pairs")}
        assert not any(f"{s}_{f}" in names for s in SIDES for f in PART_FIELDS)
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM pairs")) == 1
            assert connection.scalar(text("SELECT count(*) FROM scores")) == 1
    finally:
        engine.dispose()
