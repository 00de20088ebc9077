"""Scale-out on PostgreSQL: several sidecars on one database, and the indexes the scorer, the gate and
retention rely on, checked with EXPLAIN at 1,000,000 pairs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import select, text

from evaluators.store_queries import page, pending_filter
from shadow.core.settings import Settings
from shadow.sidecar.server import start_sidecar
from shadow.simulator import SimulatedModel, start_simulator
from shadow.store.database import make_engine, upgrade
from shadow.store.models import pairs_table
from shadow.store.retention import prune_pairs
from tests.harness import read_pairs


@pytest.mark.timeout(240)
async def test_three_sidecars_on_one_postgres_lose_and_duplicate_nothing(postgres_url, tmp_path):
    primary_runner, primary_url = await start_simulator(SimulatedModel(name="p"))
    candidate_runner, candidate_url = await start_simulator(SimulatedModel(name="c", first_byte_delay_s=0.02))
    settings = [
        Settings(
            primary=primary_url, candidate=candidate_url, candidate_model="c", db=postgres_url,
            spool_path=str(tmp_path / f"sidecar{i}.spool"), listen="127.0.0.1:0", admin_listen="127.0.0.1:0",
            sample_rate=1.0, secondary_rate=0.0, store_batch_size=16, store_flush_interval_s=0.1,
        )
        for i in range(3)
    ]  # fmt: skip
    # All three start at once on an empty database: their migrations race, the advisory lock orders them.
    sidecars = await asyncio.gather(*(start_sidecar(s) for s in settings))
    sent: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            gate = asyncio.Semaphore(12)

            async def user(i: int) -> None:
                marker = f"q{i:04d}"
                body = {
                    "model": "p",
                    "messages": [{"role": "user", "content": f"{marker} 为什么要灰度发布?"}],
                }
                body["stream"] = i % 2 == 0
                async with gate, http.post(f"{sidecars[i % 3].user_url}/chat/completions", json=body) as resp:
                    assert resp.status == 200
                    await resp.read()
                sent.append(marker)

            await asyncio.gather(*(user(i) for i in range(240)))
    finally:
        await asyncio.gather(*(s.stop() for s in sidecars))
        await primary_runner.cleanup()
        await candidate_runner.cleanup()
    engine = make_engine(postgres_url)
    pairs = read_pairs(engine)
    engine.dispose()
    markers = [p.prompt.split()[0] for p in pairs]
    assert len(markers) == len(set(markers)) == 240
    assert sorted(markers) == sorted(sent)


MILLION = 1_000_000


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_scorer_gate_and_prune_queries_use_indexes_at_a_million_pairs(postgres_url):
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    with engine.begin() as connection:
        # 1,000,000 pairs over 10 experiments and 100 days; a third of them scored by `length` v1.0.
        connection.execute(
            text(
                """
                INSERT INTO pairs (id, experiment, created_at, route, stream, request, prompt, segment,
                                   user_cancelled, extra, has_candidate, has_secondary)
                SELECT lpad(to_hex(g), 26, '0'), 'exp-' || (g % 10),
                       timestamptz '2026-01-01' + (g * interval '8.64 seconds'), 'chat', false,
                       '{}'::jsonb, 'p', '{}'::jsonb, false, '{}'::jsonb, true, false
                FROM generate_series(1, :n) AS g
                """
            ),
            {"n": MILLION},
        )
        connection.execute(
            text(
                """
                INSERT INTO scores (pair_id, evaluator, version, result, scored_at)
                SELECT id, 'length', '1.0', '{}'::jsonb, now() FROM pairs WHERE ('x' || right(id, 4))::bit(16)::int % 3 = 0
                """
            )
        )
        connection.execute(text("ANALYZE pairs; ANALYZE scores"))

    def plan(query: object) -> str:
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]
        with engine.connect() as connection:
            return "\n".join(row[0] for row in connection.execute(text(f"EXPLAIN {sql}")))

    versions = {"length": "1.0"}
    cursor = (datetime(2026, 2, 1, tzinfo=UTC), "0" * 26)
    # The scorer: one page of unscored pairs of an experiment, after a cursor.
    scorer = plan(
        page(select(pairs_table).where(pending_filter(versions, None)), "exp-3", cursor).limit(1024)
    )
    assert "Seq Scan on pairs" not in scorer and "using ix_pairs_" in scorer, scorer
    assert "using uq_scores_pair_id_evaluator_version" in scorer, (
        scorer
    )  # the anti-join probes the unique index
    # The gate and the report: one experiment's pairs in time order, page by page.
    gate = plan(page(select(pairs_table), "exp-3", cursor).limit(1024))
    assert "Seq Scan on pairs" not in gate and "using ix_pairs_" in gate, gate
    # A time window (`--since`) and retention (`shadow db prune`).
    recent = plan(select(pairs_table.c.id).where(pairs_table.c.created_at > datetime(2026, 4, 9, tzinfo=UTC)))
    assert "Seq Scan on pairs" not in recent and "ix_pairs_created_at" in recent, recent

    deleted = prune_pairs(engine, datetime(2026, 1, 2, tzinfo=UTC) - timedelta(seconds=1))
    assert deleted == 9_999  # one day of pairs at 8.64 s apart, minus the boundary
    engine.dispose()
