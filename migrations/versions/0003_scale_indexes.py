"""Indexes for large tables: page an experiment by (created_at, id); prune and window by created_at.

Revision ID: 0003_scale_indexes
Revises: 0002_scores
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_scale_indexes"
down_revision: str | None = "0002_scores"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_pairs_experiment_created_at_id", "pairs", ["experiment", "created_at", "id"])
    op.create_index("ix_pairs_created_at", "pairs", ["created_at"])
    # The new index starts with the same columns, so the old one only costs writes.
    op.drop_index("ix_pairs_experiment_created_at", table_name="pairs")


def downgrade() -> None:
    op.create_index("ix_pairs_experiment_created_at", "pairs", ["experiment", "created_at"])
    op.drop_index("ix_pairs_created_at", table_name="pairs")
    op.drop_index("ix_pairs_experiment_created_at_id", table_name="pairs")
