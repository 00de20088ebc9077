"""The stored shape of a pair, of its scores and of the scorers' claims on them, and the conversion between
a `Pair` and a table row.

Columns mirror the JSONL fields one to one (`shadow.core.pairs`), so a row converts to the same JSONL line it
came from. The migrations in `migrations/versions/` must describe exactly these tables: `check()` in
`shadow.store.database` fails when they drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shadow.core.pairs import PART_FIELDS, SIDE_FIELDS, SIDES, Pair, SideOutput
from shadow.core.storable import make_storable

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Named constraints let later migrations drop or alter them on every backend (SQLite batch mode needs it)."""

# JSONB on PostgreSQL: indexable and compact. `none_as_null` stores Python None as SQL NULL rather than the
# JSON literal `null`, so "no usage reported" is one thing, not two.
JsonType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# Timestamps are always stored in UTC. SQLite keeps no offset, so rows read back from it are naive and
# `row_to_pair` re-attaches UTC.
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class PairRow(Base):
    __tablename__ = "pairs"
    __table_args__ = (
        # The scorer and the gate page through one experiment in (created_at, id) order.
        Index("ix_pairs_experiment_created_at_id", "experiment", "created_at", "id"),
        # Retention (`shadow db prune`) and time windows across experiments.
        Index("ix_pairs_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)  # a ULID: sorts by creation time
    experiment: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    route: Mapped[str] = mapped_column(String(32))
    stream: Mapped[bool] = mapped_column(Boolean)
    request: Mapped[dict[str, Any]] = mapped_column(JsonType)
    prompt: Mapped[str] = mapped_column(Text)
    user_key_hash: Mapped[str | None] = mapped_column(String(64))
    user_bucket: Mapped[int | None] = mapped_column(Integer)
    segment: Mapped[dict[str, str]] = mapped_column(JsonType)
    user_cancelled: Mapped[bool] = mapped_column(Boolean)
    extra: Mapped[dict[str, Any]] = mapped_column(JsonType)
    # Nullable so that adding it was instant on a large table and rows written before it read as no notes.
    capture_notes: Mapped[list[str] | None] = mapped_column(JsonType)

    # Per side: the operational fields (`SIDE_FIELDS`), then the answer parts (`PART_FIELDS`, from 0005; NULL
    # when the answer had none, and on rows written before).
    baseline_text: Mapped[str | None] = mapped_column(Text)
    baseline_status: Mapped[int | None] = mapped_column(Integer)
    baseline_latency_ms: Mapped[float | None] = mapped_column(Float)
    baseline_ttft_ms: Mapped[float | None] = mapped_column(Float)
    baseline_finish_reason: Mapped[str | None] = mapped_column(String(64))
    baseline_usage: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    baseline_error: Mapped[str | None] = mapped_column(Text)
    baseline_model: Mapped[str | None] = mapped_column(String(200))
    baseline_started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    baseline_tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType)
    baseline_refusal: Mapped[str | None] = mapped_column(Text)
    baseline_reasoning: Mapped[str | None] = mapped_column(Text)
    baseline_choices: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType)
    baseline_logprobs: Mapped[Any | None] = mapped_column(JsonType)

    # A side is absent (None in the dataclass) exactly when its has_ flag is false; its columns are NULL.
    has_candidate: Mapped[bool] = mapped_column(Boolean)
    candidate_text: Mapped[str | None] = mapped_column(Text)
    candidate_status: Mapped[int | None] = mapped_column(Integer)
    candidate_latency_ms: Mapped[float | None] = mapped_column(Float)
    candidate_ttft_ms: Mapped[float | None] = mapped_column(Float)
    candidate_finish_reason: Mapped[str | None] = mapped_column(String(64))
    candidate_usage: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    candidate_error: Mapped[str | None] = mapped_column(Text)
    candidate_model: Mapped[str | None] = mapped_column(String(200))
    candidate_started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    candidate_tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType)
    candidate_refusal: Mapped[str | None] = mapped_column(Text)
    candidate_reasoning: Mapped[str | None] = mapped_column(Text)
    candidate_choices: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType)
    candidate_logprobs: Mapped[Any | None] = mapped_column(JsonType)

    has_secondary: Mapped[bool] = mapped_column(Boolean)
    secondary_text: Mapped[str | None] = mapped_column(Text)
    secondary_status: Mapped[int | None] = mapped_column(Integer)
    secondary_latency_ms: Mapped[float | None] = mapped_column(Float)
    secondary_ttft_ms: Mapped[float | None] = mapped_column(Float)
    secondary_finish_reason: Mapped[str | None] = mapped_column(String(64))
    secondary_usage: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    secondary_error: Mapped[str | None] = mapped_column(Text)
    secondary_model: Mapped[str | None] = mapped_column(String(200))
    secondary_started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    secondary_tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType)
    secondary_refusal: Mapped[str | None] = mapped_column(Text)
    secondary_reasoning: Mapped[str | None] = mapped_column(Text)
    secondary_choices: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType)
    secondary_logprobs: Mapped[Any | None] = mapped_column(JsonType)


class ScoreRow(Base):
    """One evaluator's verdict on one pair; re-scoring with a new evaluator version adds a row."""

    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("pair_id", "evaluator", "version"),
        Index("ix_scores_evaluator_version", "evaluator", "version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pair_id: Mapped[str] = mapped_column(String(26), ForeignKey("pairs.id", ondelete="CASCADE"))
    evaluator: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    result: Mapped[dict[str, Any]] = mapped_column(JsonType)
    scored_at: Mapped[datetime] = mapped_column(Timestamp)


class ScoreClaimRow(Base):
    """A scorer's lease on a score row not written yet: `claimed_by` is scoring (pair, evaluator, version)
    until `expires_at`. Deleted when the score is stored; a lapsed one is taken by the next scorer
    (`shadow.store.claims`)."""

    __tablename__ = "score_claims"
    __table_args__ = (
        PrimaryKeyConstraint("pair_id", "evaluator", "version"),  # the key of the score row it stands for
        Index("ix_score_claims_claimed_by", "claimed_by"),  # one scorer renews and releases its own
    )

    pair_id: Mapped[str] = mapped_column(String(26), ForeignKey("pairs.id", ondelete="CASCADE"))
    evaluator: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    claimed_by: Mapped[str] = mapped_column(String(200))  # hostname:pid:random
    claimed_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)


pairs_table = PairRow.__table__
scores_table = ScoreRow.__table__
score_claims_table = ScoreClaimRow.__table__


def pair_to_row(pair: Pair) -> dict[str, Any]:
    """The column values for one pair, ready for a Core `insert(pairs_table)`."""
    row: dict[str, Any] = {
        "id": pair.id,
        "experiment": pair.experiment,
        "created_at": _to_utc(pair.created_at),
        "route": pair.route,
        "stream": pair.stream,
        "request": pair.request,
        "prompt": pair.prompt,
        "user_key_hash": pair.user_key_hash,
        "user_bucket": pair.user_bucket,
        "segment": dict(pair.segment),
        "user_cancelled": pair.user_cancelled,
        "extra": dict(pair.extra),
        "capture_notes": list(pair.capture_notes),
    }
    for name in SIDES:
        side = pair.side(name)
        if name != "baseline":
            row[f"has_{name}"] = side is not None
        side = side or SideOutput()
        row[f"{name}_text"] = side.text
        for f in SIDE_FIELDS:
            value = getattr(side, f)
            row[f"{name}_{f}"] = _to_utc(value) if isinstance(value, datetime) else value
        for f in PART_FIELDS:
            row[f"{name}_{f}"] = getattr(side, f)
    return row


def row_to_pair(row: Mapping[str, Any] | Any) -> Pair:
    """Rebuild the `Pair` from a row mapping (or a Core `Row`, or a `PairRow`).

    The pair is made storable on the way out: rows written before capture sanitized its input can hold lone
    surrogates in JSON columns (SQLite keeps the `\\udcff` escape), which would break every writer of the
    JSONL, report and score outputs that read them. What was replaced is noted in `capture_notes`."""
    values: Mapping[str, Any]
    if isinstance(row, Mapping):
        values = row
    elif hasattr(row, "_mapping"):
        values = row._mapping
    else:
        values = {column.key: getattr(row, column.key) for column in pairs_table.columns}
    sides: dict[str, SideOutput | None] = {}
    for name in SIDES:
        if name != "baseline" and not values[f"has_{name}"]:
            sides[name] = None
            continue
        fields = {f: values[f"{name}_{f}"] for f in SIDE_FIELDS}
        fields["started_at"] = _from_db_time(fields["started_at"])
        # .get: a mapping built by hand (or a query from before 0005) may lack the part columns.
        fields.update({f: values.get(f"{name}_{f}") for f in PART_FIELDS})
        sides[name] = SideOutput(text=values[f"{name}_text"], **fields)
    pair = Pair(
        id=values["id"],
        experiment=values["experiment"],
        created_at=_to_utc(values["created_at"]),
        route=values["route"],
        stream=bool(values["stream"]),
        request=values["request"],
        prompt=values["prompt"],
        baseline=sides["baseline"] or SideOutput(),
        candidate=sides["candidate"],
        secondary=sides["secondary"],
        user_key_hash=values["user_key_hash"],
        user_bucket=values["user_bucket"],
        segment=dict(values["segment"] or {}),
        user_cancelled=bool(values["user_cancelled"]),
        extra=dict(values["extra"] or {}),
        capture_notes=list(values.get("capture_notes") or []),
    )
    return make_storable(pair)


def _to_utc(value: datetime) -> datetime:
    # SQLite's DATETIME drops the offset without converting, so convert before it gets the chance.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _from_db_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return _to_utc(value)


__all__ = [
    "Base",
    "JsonType",
    "NAMING_CONVENTION",
    "PairRow",
    "ScoreClaimRow",
    "ScoreRow",
    "pair_to_row",
    "pairs_table",
    "row_to_pair",
    "score_claims_table",
    "scores_table",
]
