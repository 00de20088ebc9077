"""pairs.<side>_tool_calls, _refusal, _reasoning, _choices, _logprobs: every part of an answer, per side.

All nullable, with no default: adding them rewrites nothing on a large table, and rows from before read as
answers without those parts (all None), which is what they were captured as.

Revision ID: 0005_answer_parts
Revises: 0004_capture_notes
Create Date: 2026-12-15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_answer_parts"
down_revision: str | None = "0004_capture_notes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

SIDES = ("baseline", "candidate", "secondary")
# Written out rather than imported: a migration describes the schema as it was at this revision.
PART_COLUMNS = (
    ("tool_calls", JSON_TYPE),
    ("refusal", sa.Text()),
    ("reasoning", sa.Text()),
    ("choices", JSON_TYPE),
    ("logprobs", JSON_TYPE),
)


def upgrade() -> None:
    for side in SIDES:
        for name, column_type in PART_COLUMNS:
            op.add_column("pairs", sa.Column(f"{side}_{name}", column_type, nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMNs (SQLite 3.35+), not batch mode: batch mode recreates the table, and dropping the old
    # one with foreign keys on would cascade-delete every score.
    for side in reversed(SIDES):
        for name, _ in reversed(PART_COLUMNS):
            op.drop_column("pairs", f"{side}_{name}")
