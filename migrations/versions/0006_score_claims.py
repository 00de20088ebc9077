"""The score_claims table: scorers' leases on score rows not written yet, so several scorers share the work.

One row per (pair, evaluator, version) being scored, naming the scorer (hostname:pid:random) and when its
lease lapses. Rows live only while a batch is scored; a new, empty table, so adding it costs nothing on a
large store.

Revision ID: 0006_score_claims
Revises: 0005_answer_parts
Create Date: 2026-12-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_score_claims"
down_revision: str | None = "0005_answer_parts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "score_claims",
        sa.Column("pair_id", sa.String(length=26), nullable=False),
        sa.Column("evaluator", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["pairs.id"], name=op.f("fk_score_claims_pair_id_pairs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pair_id", "evaluator", "version", name=op.f("pk_score_claims")),
    )
    op.create_index("ix_score_claims_claimed_by", "score_claims", ["claimed_by"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_score_claims_claimed_by", table_name="score_claims")
    op.drop_table("score_claims")
