"""One settings object from flags, TOML and SHADOW_* variables; the CLI's help and its errors."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from shadow.cli import build_parser, main, settings_from
from shadow.core.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`main()` configures logging for the process; each test leaves it as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_precedence_flags_over_environment_over_toml(tmp_path):
    config = tmp_path / "shadow.toml"
    config.write_text(
        '[mirror]\nsample_rate = 0.3\nsegment_headers = ["X-Region=region"]\n'
        '[store]\ndb = "sqlite:///from-toml.db"\nexperiment = "toml"\n'
    )
    env = {"SHADOW_SAMPLE_RATE": "0.4", "SHADOW_EXPERIMENT": "env", "SHADOW_CANDIDATE_API_KEY": "sk-env"}
    settings = load_settings(config_path=config, flags={"experiment": "flag", "db": None}, environ=env)
    assert settings.sample_rate == 0.4
    assert settings.experiment == "flag"
    assert settings.db == "sqlite:///from-toml.db"
    assert settings.segment_headers == ("X-Region=region",)
    assert settings.candidate_api_key == "sk-env"
    with pytest.raises(AttributeError):
        settings.sample_rate = 1.0  # type: ignore[misc]  # frozen


def test_bad_values_say_what_is_wrong(tmp_path):
    with pytest.raises(SettingsError, match="sample_rate must be between 0 and 1"):
        Settings(sample_rate=1.5)
    with pytest.raises(SettingsError, match="listen must be HOST:PORT"):
        Settings(listen="8080")
    bad = tmp_path / "bad.toml"
    bad.write_text("sample_rate = [")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config_path=bad, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("sample_rat = 0.1")
    with pytest.raises(SettingsError, match="unknown setting 'sample_rat'"):
        load_settings(config_path=unknown, environ={})
    with pytest.raises(SettingsError, match="cannot use 'lots'"):
        load_settings(flags={"sample_rate": "lots"}, environ={})


def test_serve_flags_named_in_the_issue_parse_into_settings(monkeypatch):
    monkeypatch.delenv("SHADOW_SAMPLE_RATE", raising=False)
    args = build_parser().parse_args(
        [
            "serve",
            "--primary",
            "http://a/v1",
            "--candidate",
            "http://b/v1",
            "--candidate-model",
            "b",
            "--listen",
            "127.0.0.1:8080",
            "--admin-listen",
            "127.0.0.1:9090",
            "--sample-rate",
            "0.25",
            "--db",
            "sqlite:///x.db",
            "--experiment",
            "e1",
            "--forward-user-auth-to-candidate",
        ]
    )
    settings = settings_from(args)
    assert (settings.primary, settings.candidate, settings.candidate_model) == (
        "http://a/v1",
        "http://b/v1",
        "b",
    )
    assert settings.sample_rate == 0.25 and settings.experiment == "e1" and settings.db == "sqlite:///x.db"
    assert settings.forward_user_auth_to_candidate is True


def test_help_is_complete_and_secrets_are_not_shown():
    help_text = subprocess.run(
        [sys.executable, "-m", "shadow.cli", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (
        "--primary",
        "--candidate-model",
        "--sample-rate",
        "--secondary-rate",
        "--mirror-window",
        "--budget-candidate-tokens-per-hour",
        "--redact",
        "--drain-timeout-s",
        "--log-level",
        "--config",
    ):
        assert flag in help_text
    assert "<secret>" in help_text


def test_errors_are_one_sentence_with_exit_code_3(tmp_path, capsys):
    assert main(["serve", "--candidate", "http://b/v1"]) == 3  # ExitCode.COULD_NOT_RUN
    assert "--primary is required" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "missing.jsonl"), "--db", f"sqlite:///{tmp_path}/x.db"]) == 3
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and "Traceback" not in err


def test_export_and_import_round_trip_through_the_cli(tmp_path, capsys):
    from shadow.core.pairs import Pair, SideOutput, dumps

    source = tmp_path / "in.jsonl"
    pair = Pair(
        experiment="e",
        request={"messages": [{"role": "user", "content": "你好"}]},
        prompt="你好",
        baseline=SideOutput(text="您好！", status=200),
        candidate=SideOutput(text="你好呀", status=200),
    )
    source.write_text(dumps(pair) + "\n", encoding="utf-8")
    db = f"sqlite:///{tmp_path}/s.db"
    assert main(["import", str(source), "--db", db]) == 0
    out = tmp_path / "out.jsonl"
    assert main(["export", "--db", db, "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == source.read_text(encoding="utf-8")


def test_readme_configuration_table_matches_the_settings():
    from pathlib import Path

    from shadow.config_reference import markdown_rows

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for row in markdown_rows():
        assert row in readme, (
            f"README configuration table is stale; regenerate with python -m shadow.config_reference:\n{row}"
        )


def test_help_of_every_command_still_works():
    for command in ([], ["serve"], ["db"], ["db", "prune"], ["import"], ["export"], ["gate"], ["simulate"]):
        result = subprocess.run(
            [sys.executable, "-m", "shadow.cli", *command, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0 and "usage: shadow" in result.stdout, (command, result.stderr[-2000:])


def test_log_level_is_applied_and_a_bad_one_is_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SHADOW_LOG_LEVEL", raising=False)
    assert (
        main(["serve", "--log-level", "LOUD", "--primary", "http://a/v1", "--candidate", "http://b/v1"]) == 3
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "log_level must be one of DEBUG, INFO, WARNING, ERROR or CRITICAL" in err

    missing = ["import", str(tmp_path / "missing.jsonl"), "--db", f"sqlite:///{tmp_path}/x.db"]
    monkeypatch.setenv("SHADOW_LOG_LEVEL", "warning")  # commands without the flag read the variable
    assert main(missing) == 3
    assert logging.getLogger().level == logging.WARNING
    monkeypatch.setenv("SHADOW_LOG_LEVEL", "chatty")
    assert main(missing) == 3
    assert "log_level must be one of" in capsys.readouterr().err
