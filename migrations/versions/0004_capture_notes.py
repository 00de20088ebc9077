"""pairs.capture_notes: what capture or storage changed in a pair (a truncated body, a replaced character).

Nullable, with no default: adding it rewrites nothing on a large table, and rows from before read as no notes.

Revision ID: 0004_capture_notes
Revises: 0003_scale_indexes
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_capture_notes"
down_revision: str | None = "0003_scale_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.add_column("pairs", sa.Column("capture_notes", JSON_TYPE, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), not batch mode: batch mode recreates the table, and dropping the old
    # one with foreign keys on would cascade-delete every score.
    op.drop_column("pairs", "capture_notes")
