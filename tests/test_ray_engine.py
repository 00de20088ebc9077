"""`shadow score --engine ray` gives the local engine's scores: file mode line for line (float metrics of the
encoder evaluators to 1e-5), store mode only the unscored pairs, a re-run a no-op. One small local Ray
(2 CPUs, no dashboard, a 200 MB object store) serves the whole module."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="ray is not installed (pip install 'shadow-eval[ray]')")

import ray  # noqa: E402
from sqlalchemy import select  # noqa: E402

from evaluators.runner import ScoreRunner, score_lines  # noqa: E402
from evaluators.store_mode import score_pending  # noqa: E402
from shadow import score_command  # noqa: E402
from shadow.core.pairs import Pair  # noqa: E402
from shadow.store.database import insert_pairs, make_engine, upgrade  # noqa: E402
from shadow.store.models import scores_table  # noqa: E402
from tests.test_runner import EN, ZH, ZH_LOOP, pair  # noqa: E402

ALL = "semantic,length,loop,coherence"

ZH_NEWS = "今天股市大幅下跌，上证指数收跌百分之三。分析人士认为，这次下跌主要受到海外市场走弱的影响。"
EN_NEWS = "Stocks fell sharply today. Analysts blamed weak overseas markets and currency swings."


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, logging_level="ERROR"
    )
    yield
    ray.shutdown()


def sample_pairs(count: int = 40) -> list[dict[str, Any]]:
    answers = [ZH, ZH_LOOP, EN, ZH_NEWS, EN_NEWS, EN + " " + EN, ZH_NEWS[:20], ""]
    objs = []
    for index in range(count):
        baseline = answers[index % len(answers)]
        candidate = answers[(index * 3 + 1) % len(answers)]
        extra: dict[str, Any] = {}
        if index % 7 == 3:
            extra = {"candidate_error": "timeout", "candidate_status": None}
        secondary = answers[(index + 2) % len(answers)] if index % 5 == 0 else None
        obj = pair(f"01HX{index:022d}", baseline, None if extra else candidate, secondary=secondary, **extra)
        objs.append(obj | {"experiment": "zh" if index % 2 else "en"})
    return objs


def write_jsonl(path: Path, objs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    return path


def cli_args(**overrides: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    score_command.add_arguments(parser)
    args = parser.parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def assert_close(local: Any, distributed: Any, where: str) -> None:
    if isinstance(local, float) and isinstance(distributed, float):
        assert math.isclose(local, distributed, abs_tol=1e-5), f"{where}: {local} != {distributed}"
    elif isinstance(local, dict) and isinstance(distributed, dict):
        assert list(local) == list(distributed), f"{where}: keys differ"
        for key in local:
            assert_close(local[key], distributed[key], f"{where}.{key}")
    elif isinstance(local, list) and isinstance(distributed, list):
        assert len(local) == len(distributed), f"{where}: lengths differ"
        for index, (a, b) in enumerate(zip(local, distributed, strict=True)):
            assert_close(a, b, f"{where}[{index}]")
    else:
        assert local == distributed, f"{where}: {local!r} != {distributed!r}"


def test_file_mode_equals_the_local_engine(local_ray: Any, tmp_path: Path) -> None:
    objs = sample_pairs()
    source = write_jsonl(tmp_path / "pairs.jsonl", objs)
    local_lines = list(score_lines(source.read_text().splitlines(), ScoreRunner.build(ALL, device="cpu")))

    output = tmp_path / "scores.jsonl"
    args = cli_args(input=str(source), output=str(output), evaluators=ALL, device="cpu")
    args.engine, args.ray_workers, args.chunk_size = "ray", 2, 16  # several batches, two workers
    assert score_command.run(args) == 0

    ray_lines = output.read_text(encoding="utf-8").splitlines()
    assert len(ray_lines) == len(objs)
    for local_line, ray_line in zip(local_lines, ray_lines, strict=True):
        local, distributed = json.loads(local_line), json.loads(ray_line)
        assert list(local) == list(distributed)  # same keys in the same order
        for key in ("length", "loop", "scored_by", "id", "candidate", "request"):
            assert local.get(key) == distributed.get(key), key  # exact for the CPU evaluators
        assert_close(local, distributed, local["id"])


def test_store_mode_scores_only_unscored_pairs_and_a_rerun_is_a_no_op(
    local_ray: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objs = sample_pairs()
    engine, local_engine = store(tmp_path / "ray.db", objs), store(tmp_path / "local.db", objs)
    # The local engine has already scored one experiment's 20 pairs: ray scores the other 20 only.
    assert score_pending(engine, ScoreRunner.build("length,loop"), experiment="en") == 20
    before = rows_of(engine)

    args = cli_args(db=str(engine.url), evaluators="length,loop", chunk_size=8)
    args.engine, args.ray_workers = "ray", 2
    assert score_command.run(args) == 0
    assert "scored 20 pairs" in capsys.readouterr().err
    after = rows_of(engine)
    assert len(after) == 2 * len(objs)
    assert {key: after[key] for key in before} == before  # the earlier rows untouched (same scored_at)

    assert score_command.run(args) == 0  # nothing pending: a no-op
    assert "scored 0 pairs" in capsys.readouterr().err
    assert rows_of(engine) == after

    score_pending(local_engine, ScoreRunner.build("length,loop"), chunk_size=8)
    assert {k: v[0] for k, v in rows_of(local_engine).items()} == {k: v[0] for k, v in after.items()}
    engine.dispose()
    local_engine.dispose()


def store(path: Path, objs: list[dict[str, Any]]) -> Any:
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        insert_pairs(connection, [Pair.from_json(o) for o in objs])
    return engine


def rows_of(engine: Any) -> dict[tuple[str, str, str], tuple[Any, Any]]:
    """(pair, evaluator, version) -> (result, scored_at)."""
    columns = (scores_table.c.pair_id, scores_table.c.evaluator, scores_table.c.version)
    query = select(*columns, scores_table.c.result, scores_table.c.scored_at)
    with engine.connect() as connection:
        return {(p, e, v): (r, t) for p, e, v, r, t in connection.execute(query)}
