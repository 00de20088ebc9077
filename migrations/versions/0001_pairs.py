"""The pairs table: one row per mirrored exchange, columns matching the JSONL fields.

Revision ID: 0001_pairs
Revises:
Create Date: 2025-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_pairs"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from shadow.store.models: a migration must keep meaning what it
# meant when it was written, whatever the models become.
JSON_TYPE = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _side_columns(side: str) -> list[sa.Column]:
    return [
        sa.Column(f"{side}_text", sa.Text(), nullable=True),
        sa.Column(f"{side}_status", sa.Integer(), nullable=True),
        sa.Column(f"{side}_latency_ms", sa.Float(), nullable=True),
        sa.Column(f"{side}_ttft_ms", sa.Float(), nullable=True),
        sa.Column(f"{side}_finish_reason", sa.String(length=64), nullable=True),
        sa.Column(f"{side}_usage", JSON_TYPE, nullable=True),
        sa.Column(f"{side}_error", sa.Text(), nullable=True),
        sa.Column(f"{side}_model", sa.String(length=200), nullable=True),
        sa.Column(f"{side}_started_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "pairs",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("experiment", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("request", JSON_TYPE, nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("user_key_hash", sa.String(length=64), nullable=True),
        sa.Column("user_bucket", sa.Integer(), nullable=True),
        sa.Column("segment", JSON_TYPE, nullable=False),
        sa.Column("user_cancelled", sa.Boolean(), nullable=False),
        sa.Column("extra", JSON_TYPE, nullable=False),
        *_side_columns("baseline"),
        sa.Column("has_candidate", sa.Boolean(), nullable=False),
        *_side_columns("candidate"),
        sa.Column("has_secondary", sa.Boolean(), nullable=False),
        *_side_columns("secondary"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pairs")),
    )
    op.create_index("ix_pairs_experiment_created_at", "pairs", ["experiment", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pairs_experiment_created_at", table_name="pairs")
    op.drop_table("pairs")
