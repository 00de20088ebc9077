"""The `shadow` CLI's one error boundary (`shadow.cli.main`): every mistake a user can fix is one line on
stderr, `shadow <command>: error: <what to change>`, with a documented exit code and no traceback.

Each case goes through the real CLI in process (`main([...])`); two go through `python -m shadow.cli` to show
that nothing between the boundary and the process exit prints a traceback. Exit codes (README, "Exit codes";
`shadow.core.errors.ExitCode`): 3 could not run (a file, setting, policy or database to fix), 4 a bad
command line, and the gate's 0 / 1 / 2 for pass / fail / inconclusive.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shadow.cli import main
from shadow.core.errors import ExitCode
from shadow.core.verdicts import Verdict

ROOT = Path(__file__).resolve().parent.parent
USAGE, COULD_NOT_RUN = ExitCode.USAGE, ExitCode.COULD_NOT_RUN


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each case runs in its own directory (the default store is ./shadow.db), with no SHADOW_* variable but
    a quiet log level, and leaves logging as it found it (`main()` configures it)."""
    for name in [name for name in os.environ if name.startswith("SHADOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SHADOW_LOG_LEVEL", "WARNING")  # migrations log at INFO; errors are what is tested
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    write_files(tmp_path)
    yield tmp_path
    root.handlers[:] = handlers
    root.setLevel(level)


def pair_line(**fields: object) -> str:
    base: dict[str, object] = {"experiment": "e", "prompt": "hi", "baseline": "hello", "candidate": "hey"}
    return json.dumps({**base, **fields}, ensure_ascii=False)


def write_files(tmp: Path) -> None:
    (tmp / "pairs.jsonl").write_text(pair_line(id="01GOOD00000000000000000000") + "\n", encoding="utf-8")
    (tmp / "scores.jsonl").write_text(pair_line(length={"ratio": 1.0}) + "\n", encoding="utf-8")
    (tmp / "empty.jsonl").write_text("", encoding="utf-8")
    (tmp / "list_text.jsonl").write_text(pair_line(baseline=["a", "b"]) + "\n", encoding="utf-8")
    (tmp / "number_text.jsonl").write_text(pair_line(candidate=5) + "\n", encoding="utf-8")
    # A valid ISO 8601 time whose UTC instant is in year 10000 (and one that is not ISO at all).
    (tmp / "year_10000.jsonl").write_text(pair_line(created_at="9999-12-31T23:59:59-01:00") + "\n")
    (tmp / "year_10000_text.jsonl").write_text(pair_line(created_at="10000-01-01T00:00:00Z") + "\n")
    deep = "[" * 5000 + "]" * 5000
    (tmp / "deep.jsonl").write_text(pair_line()[:-1] + f', "extra": {deep}}}\n', encoding="utf-8")
    (tmp / "not_utf8.jsonl").write_bytes(b'{"experiment": "e", "baseline": "\xff\xfe"}\n')
    lone = json.dumps(
        {"experiment": "e", "baseline": "lone \ud83d here", "candidate": "x"}
    )  # a \ud83d escape
    (tmp / "surrogate.jsonl").write_text(lone + "\n", encoding="ascii")
    (tmp / "a_directory").mkdir()
    (tmp / "a_file").write_text("not a directory\n")
    (tmp / "unmigrated.db").touch()  # an existing, empty SQLite file: never migrated
    (tmp / "bad_key.toml").write_text("confidence = 0.9\nbogus_key = 1\n")
    (tmp / "bad_syntax.toml").write_text("confidence = \n")
    (tmp / "negative.toml").write_text("[checks.length_ratio]\ntolerance = -0.5\n")
    (tmp / "settings_bad.toml").write_text("sample_rate = 5\n")


def db(name: str) -> str:
    return f"sqlite:///{Path.cwd() / name}"


def assert_one_line(capsys: pytest.CaptureFixture[str], code: int, expected: int, *needles: str) -> str:
    """The exit code, one non-empty stderr line (after argparse's usage lines), no traceback, the needles."""
    err = capsys.readouterr().err
    assert code == expected, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    if expected == USAGE:  # argparse prints its usage line(s) first, as it always does
        while len(lines) > 1 and (lines[0].startswith("usage:") or lines[0].startswith(" ")):
            lines.pop(0)
    assert len(lines) == 1, err
    assert lines[0].startswith("shadow") and ": error: " in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    return lines[0]


# --- a bad command line: exit 4 -----------------------------------------------------------------------------

USAGE_CASES = [
    ([], "required: COMMAND"),
    (["gate", "--bogus"], "--bogus"),
    (["gate", "--input", "scores.jsonl", "--last", "-1"], "--last"),
    (["gate", "--input", "scores.jsonl", "--last", "many"], "--last"),
    (["gate", "--input", "scores.jsonl", "--since", "soon"], "not a duration"),
    (["gate", "--input", "scores.jsonl", "--since", "99999999d"], "longer than"),
    (["gate", "--input", "scores.jsonl", "--segment", "lang"], "KEY=VALUE"),
    (["gate", "--input", "scores.jsonl", "--db", "sqlite:///x.db"], "not allowed with"),
    (["gate"], "give the scored pairs with --input"),  # no store where the default settings point
    (["score"], "give either --input and --output"),
    (["score", "--input", "pairs.jsonl"], "needs both --input PATH and --output PATH"),
    (["score", "--input", "pairs.jsonl", "--output", "o.jsonl", "--evaluators", "bleu"], "'bleu'"),
    (["score", "--input", "pairs.jsonl", "--output", "o.jsonl", "--batch-size", "0"], "--batch-size"),
    (["score", "--input", "pairs.jsonl", "--output", "o.jsonl", "--device", "gpu"], "--device"),
    (["score", "--input", "pairs.jsonl", "--output", "a_directory"], "is a directory"),
    (["report", "--output", "r.html"], "give the scored pairs with --input"),
    (
        ["report", "--input", "scores.jsonl", "--output", "r.html", "--max-table-pairs", "0"],
        "--max-table-pairs",
    ),
    (["report", "--input", "scores.jsonl", "--output", "r.html", "--sample-rate", "3"], "--sample-rate"),
    (["report", "--input", "scores.jsonl", "--output", "a_directory"], "is a directory"),
    (["export", "--scores", "--output", "table"], "--format csv"),  # no --format, no known suffix
    (["export", "--scores", "--output", "table.txt"], "'table.txt' names neither"),
    (["export", "--scores", "--format", "jsonl", "--output", "t.csv"], "--format csv or --format parquet"),
    (["export", "--output", "t.csv", "--format", "csv"], "needs --scores"),
    (["export", "--scores", "--output", "t.csv"], "there is no database at"),  # the default ./shadow.db
    (["db", "prune", "--older-than", "soon"], "not a duration"),
    (["db", "downgrade"], "revision"),
    (["replay", "--input", "pairs.jsonl", "--output", "r.jsonl", "--concurrency", "0"], "--concurrency"),
]


@pytest.mark.parametrize(
    ("argv", "needle"), USAGE_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_a_bad_command_line_exits_4(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line(capsys, main(argv), USAGE, needle)


# --- a file, setting, policy or database to fix: exit 3 ------------------------------------------------------

SERVE = ["serve", "--primary", "http://127.0.0.1:9/v1", "--candidate", "http://127.0.0.1:9/v1"]

COULD_NOT_RUN_CASES = [
    # policy files
    (["report", "--input", "scores.jsonl", "--output", "r.html", "--policy", "bad_key.toml"], "'bogus_key'"),
    (
        ["report", "--input", "scores.jsonl", "--output", "r.html", "--policy", "bad_syntax.toml"],
        "not valid TOML",
    ),
    (["gate", "--input", "scores.jsonl", "--policy", "negative.toml"], "checks.length_ratio.tolerance"),
    (["gate", "--input", "scores.jsonl", "--policy", "missing.toml"], "does not exist"),
    (["gate", "--input", "scores.jsonl", "--policy", "a_directory"], "a_directory"),
    # settings
    ([*SERVE, "--mirror-window", "25:00-01:00", "--db", "sqlite:///serve.db"], "mirror_window '25:00-01:00'"),
    ([*SERVE, "--redact", "email,ssn"], "'ssn'"),
    ([*SERVE, "--gate-policy", "bad_key.toml"], "'bogus_key'"),
    ([*SERVE, "--db", "nonsense"], "database URL 'nonsense'"),
    (["serve", "--primary", "not a url", "--candidate", "http://127.0.0.1:9/v1"], "primary must be"),
    (["serve", "--candidate", "http://127.0.0.1:9/v1"], "--primary is required"),
    ([*SERVE, "--sample-rate", "2"], "sample_rate"),
    ([*SERVE, "--log-level", "LOUD"], "log_level"),
    (["gate", "--config", "missing.toml", "--input", "scores.jsonl"], "missing.toml does not exist"),
    (["--config", "bad_syntax.toml", "gate", "--input", "scores.jsonl"], "not valid TOML"),
    (["gate", "--config", "settings_bad.toml", "--input", "scores.jsonl"], "sample_rate"),
    (["replay", "--input", "pairs.jsonl", "--output", "r.jsonl"], "--candidate is required"),
    # input files
    (["score", "--input", "missing.jsonl", "--output", "o.jsonl"], "missing.jsonl does not exist"),
    (["score", "--input", "a_directory", "--output", "o.jsonl"], "is a directory"),
    (["score", "--input", "list_text.jsonl", "--output", "o.jsonl", "--evaluators", "length"], "'baseline'"),
    (
        ["score", "--input", "number_text.jsonl", "--output", "o.jsonl", "--evaluators", "length"],
        "'candidate'",
    ),
    (
        ["score", "--input", "year_10000.jsonl", "--output", "o.jsonl", "--evaluators", "length"],
        "'created_at'",
    ),
    (
        ["score", "--input", "deep.jsonl", "--output", "o.jsonl", "--evaluators", "length"],
        "nested too deeply",
    ),
    (["score", "--input", "not_utf8.jsonl", "--output", "o.jsonl", "--evaluators", "length"], "not UTF-8"),
    (["score", "--input", "pairs.jsonl", "--output", "no/such/dir/o.jsonl"], "does not exist"),
    (["gate", "--input", "missing.jsonl"], "check the --input path"),
    (["gate", "--input", "a_directory"], "is a directory"),
    (["gate", "--input", "deep.jsonl"], "line 1: JSON nested too deeply"),
    (["gate", "--input", "not_utf8.jsonl"], "line 1: not UTF-8"),
    (["report", "--input", "empty.jsonl", "--output", "r.html"], "no scored pairs"),
    (["report", "--input", "a_directory", "--output", "r.html"], "is a directory"),
    (["report", "--input", "not_utf8.jsonl", "--output", "r.html"], "line 1: not UTF-8"),
    (["report", "--input", "deep.jsonl", "--output", "r.html"], "nested too deeply"),
    (["import", "missing.jsonl", "--db", "sqlite:///s.db"], "missing.jsonl: no such file"),
    (["import", "a_directory", "--db", "sqlite:///s.db"], "is a directory"),
    (
        ["replay", "--input", "a_directory", "--output", "r.jsonl", "--candidate", "http://127.0.0.1:9/v1"],
        "directory",
    ),
    (
        ["replay", "--input", "deep.jsonl", "--output", "r.jsonl", "--candidate", "http://127.0.0.1:9/v1"],
        "deeply",
    ),
    # databases
    (["export", "--output", "out.jsonl", "--db", "sqlite:///never.db"], "there is no database at"),
    (["export", "--output", "out.jsonl", "--db", "sqlite:///unmigrated.db"], "run `shadow db upgrade --db"),
    (["export", "--scores", "--output", "t.csv", "--db", "sqlite:///unmigrated.db"], "never been migrated"),
    (["gate", "--db", "postgresql://127.0.0.1:1/x"], "cannot reach the database"),
    (["gate", "--db", "sqlite:///a_file/x.db"], "there is no database at"),
    (["gate", "--db", "sqlite:///unmigrated.db"], "never been migrated"),
    (["score", "--db", "sqlite:///a_directory"], "cannot reach the database"),
    (["score", "--db", "sqlite:///unmigrated.db", "--evaluators", "length"], "shadow db upgrade"),
    (["report", "--db", "nonsense", "--experiment", "e", "--output", "r.html"], "database URL 'nonsense'"),
    (["report", "--db", "foo://x", "--experiment", "e", "--output", "r.html"], "unknown database"),
    (["db", "prune", "--older-than", "30d", "--db", "sqlite:///never.db"], "there is no database at"),
    (["db", "prune", "--older-than", "30d", "--db", "sqlite:///unmigrated.db"], "never been migrated"),
    (["db", "check", "--db", "sqlite:///never.db"], "there is no database at"),
    (["db", "upgrade", "--db", "sqlite:///a_file/x.db"], "a_file"),
    (["import", "pairs.jsonl", "--db", "sqlite:///a_file/x.db"], "a_file"),
]


@pytest.mark.parametrize(
    ("argv", "needle"), COULD_NOT_RUN_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_what_the_user_must_fix_exits_3_in_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_one_line(capsys, main(argv), COULD_NOT_RUN, needle)


def test_serve_checks_its_settings_before_touching_the_database(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*SERVE, "--mirror-window", "25:00-01:00", "--db", db("serve.db")])
    assert_one_line(capsys, code, COULD_NOT_RUN, "mirror_window", "22:00-06:00")
    assert not Path("serve.db").exists()  # nothing was migrated, no session was opened


def test_readers_never_create_an_empty_store(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["gate"], ["export", "--output", "o.jsonl"], ["score", "--db", db("asked.db")]):
        assert main(argv) in (USAGE, COULD_NOT_RUN)
    capsys.readouterr()
    assert not Path("shadow.db").exists() and not Path("asked.db").exists()


def test_a_downgrade_to_an_unknown_revision(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--db", db("s.db")]) == 0
    capsys.readouterr()
    assert_one_line(capsys, main(["db", "downgrade", "zzz", "--db", db("s.db")]), COULD_NOT_RUN, "'zzz'")


# --- import keeps the good lines and names the bad ones: exit 1 ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("year_10000.jsonl", "field 'created_at' is not an ISO 8601 time"),
        ("year_10000_text.jsonl", "field 'created_at' is not an ISO 8601 time"),
        ("deep.jsonl", "JSON nested too deeply"),
        ("not_utf8.jsonl", "not valid UTF-8"),
        ("list_text.jsonl", "field 'baseline' must be a string"),
        ("number_text.jsonl", "field 'candidate' must be a string"),
    ],
)
def test_import_rejects_a_bad_line_by_number(
    name: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = Path(name)
    source.write_bytes(Path("pairs.jsonl").read_bytes() + source.read_bytes())  # one good line, then the bad
    code = main(["import", name, "--db", db("s.db")])
    captured = capsys.readouterr()
    assert code == ExitCode.FAIL, captured.err
    assert "Traceback" not in captured.err and not captured.err.strip(), captured.err
    assert "imported 1 pairs" in captured.out and f"line 2: {reason}" in captured.out, captured.out
    assert Path(f"{name}.rejected.jsonl").exists()


def test_import_stores_a_lone_surrogate_as_a_replacement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "surrogate.jsonl", "--db", db("s.db")]) == ExitCode.OK
    assert main(["export", "--db", db("s.db"), "--output", "out.jsonl"]) == ExitCode.OK
    exported = json.loads(Path("out.jsonl").read_bytes().decode("utf-8"))  # strict UTF-8
    assert exported["baseline"] == "lone \ufffd here" and exported["capture_notes"]
    assert "Traceback" not in capsys.readouterr().err


def test_score_writes_a_lone_surrogate_back_as_its_escape(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["score", "--input", "surrogate.jsonl", "--output", "scores.out", "--evaluators", "length"])
    assert code == ExitCode.OK, capsys.readouterr().err
    line = Path("scores.out").read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert "\\ud83d" in line and json.loads(line)["baseline"] == "lone \ud83d here"


# --- end to end: no traceback between the boundary and the process exit --------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (
            ["report", "--input", "scores.jsonl", "--output", "r.html", "--policy", "bad_key.toml"],
            3,
            "bogus_key",
        ),
        (["gate", "--input", "scores.jsonl", "--last", "-1"], 4, "--last"),
    ],
)
def test_as_a_process(argv: list[str], code: int, needle: str, workdir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "shadow.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workdir,
        env=env,
    )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [
        line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("usage:", " "))
    ]
    assert len(lines) == 1 and lines[0].startswith("shadow") and needle in lines[0], result.stderr


# --- the gate's verdicts are its exit codes ----------------------------------------------------------------


@pytest.mark.parametrize(("verdict", "code"), [("pass", 0), ("fail", 1), ("inconclusive", 2)])
def test_gate_verdicts_map_to_0_1_2(
    verdict: str, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shadow.gate import command

    real = command.evaluate_gate

    def judged(records, policy, **window):  # the real judge, then the verdict under test
        return {**real(records, policy, **window), "verdict": verdict}

    monkeypatch.setattr(command, "evaluate_gate", judged)
    assert main(["gate", "--input", "scores.jsonl", "--json"]) == code
    assert json.loads(capsys.readouterr().out)["verdict"] == verdict
    assert Verdict(verdict).exit_code == code


def test_gate_on_too_few_pairs_is_inconclusive_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", "--input", "empty.jsonl"]) == ExitCode.INCONCLUSIVE
    assert "Traceback" not in capsys.readouterr().err


# --- score, gate, report and export read the settings serve reads --------------------------------------------


@pytest.fixture
def stores(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """Store A holds 6 scored pairs of experiment `e`; store B is migrated and empty."""
    lines = [pair_line(id=f"01PAIR{i:020d}", created_at=f"2026-01-01T00:00:0{i}Z") for i in range(6)]
    Path("six.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    a, b = db("a.db"), db("b.db")
    assert main(["import", "six.jsonl", "--db", a]) == 0
    assert main(["db", "upgrade", "--db", b]) == 0
    capsys.readouterr()
    return a, b


def gate_pairs(capsys: pytest.CaptureFixture[str], *argv: str) -> int:
    code = main(["gate", *argv, "--json"])
    captured = capsys.readouterr()
    assert code == ExitCode.INCONCLUSIVE, captured.err  # six pairs: too few for a verdict
    return int(json.loads(captured.out)["n_pairs"])


def test_shadow_db_and_config_are_read_by_score_gate_report_and_export(
    stores: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = stores
    Path("a.toml").write_text(f'[store]\ndb = "{a}"\n')
    Path("b.toml").write_text(f'db = "{b}"\n')

    monkeypatch.setenv("SHADOW_DB", a)
    assert main(["score", "--evaluators", "length"]) == 0  # store mode, on SHADOW_DB
    assert "scored 6 pairs" in capsys.readouterr().err
    assert gate_pairs(capsys) == 6
    assert gate_pairs(capsys, "--config", "b.toml") == 6  # the variable wins over the file
    assert gate_pairs(capsys, "--db", b) == 0  # the flag wins over the variable
    assert main(["report", "--experiment", "e", "--output", "r.json", "--format", "json"]) == 0
    assert json.loads(Path("r.json").read_text())["summary"]["counts"]["pairs"] == 6
    assert main(["export", "--output", "out.jsonl"]) == 0
    assert len(Path("out.jsonl").read_text().splitlines()) == 6
    # A file mode is still a file mode with SHADOW_DB set.
    assert main(["score", "--input", "pairs.jsonl", "--output", "o.jsonl", "--evaluators", "length"]) == 0
    assert gate_pairs(capsys, "--input", "scores.jsonl") == 1

    monkeypatch.delenv("SHADOW_DB")
    capsys.readouterr()
    assert gate_pairs(capsys, "--config", "a.toml") == 6
    assert gate_pairs(capsys, "--config", "b.toml") == 0
    assert gate_pairs(capsys, "--config", "a.toml", "--db", b) == 0  # the flag wins over the file
    assert main(["--config", "a.toml", "score", "--evaluators", "length"]) == 0  # nothing left to score
    assert "scored 0 pairs" in capsys.readouterr().err
    assert (
        main(["report", "--config", "a.toml", "--experiment", "e", "-o", "r2.json", "--format", "json"]) == 0
    )
    assert json.loads(Path("r2.json").read_text())["summary"]["counts"]["pairs"] == 6


def test_the_gate_policy_setting_is_the_gates_default_policy(capsys: pytest.CaptureFixture[str]) -> None:
    Path("policy.toml").write_text('gate_policy = "negative.toml"\n')
    code = main(["gate", "--config", "policy.toml", "--input", "scores.jsonl"])
    assert_one_line(capsys, code, COULD_NOT_RUN, "negative.toml", "tolerance")
    assert main(["gate", "--config", "policy.toml", "--input", "scores.jsonl", "--policy", "none.toml"]) == 3
    assert "none.toml" in capsys.readouterr().err  # --policy wins over the setting
