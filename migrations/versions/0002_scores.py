"""The scores table: evaluator results per pair, one row per (pair, evaluator, version).

Revision ID: 0002_scores
Revises: 0001_pairs
Create Date: 2025-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_scores"
down_revision: str | None = "0001_pairs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "scores",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pair_id", sa.String(length=26), nullable=False),
        sa.Column("evaluator", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("result", JSON_TYPE, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["pairs.id"], name=op.f("fk_scores_pair_id_pairs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scores")),
        sa.UniqueConstraint(
            "pair_id", "evaluator", "version", name=op.f("uq_scores_pair_id_evaluator_version")
        ),
    )
    op.create_index("ix_scores_evaluator_version", "scores", ["evaluator", "version"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_scores_evaluator_version", table_name="scores")
    op.drop_table("scores")
