"""The pair store: typed tables, Alembic migrations, a writer that keeps storing off the request path and
never loses a finished pair, and JSONL export/import.

Start here: `PairWriter(settings, migrate=True)` (`start`, `submit`, `close`, `health`): it brings the schema
to head in the background, so a database that is down at start-up blocks nothing. Importing this package
creates no engine and touches no database.
"""

from shadow.store.database import (
    SchemaDriftError,
    StoreError,
    check,
    current_revision,
    downgrade,
    make_engine,
    scored_pair_ids,
    store_scores,
    upgrade,
)
from shadow.store.jsonl import ImportReport, export_pairs, import_pairs
from shadow.store.models import PairRow, ScoreRow, pair_to_row, row_to_pair
from shadow.store.writer import PairWriter

__all__ = [
    "ImportReport",
    "PairRow",
    "PairWriter",
    "SchemaDriftError",
    "ScoreRow",
    "StoreError",
    "check",
    "current_revision",
    "downgrade",
    "export_pairs",
    "import_pairs",
    "make_engine",
    "pair_to_row",
    "row_to_pair",
    "scored_pair_ids",
    "store_scores",
    "upgrade",
]
