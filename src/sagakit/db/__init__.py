"""PostgreSQL plumbing shared by every service: connection pools, transactions that tell an
outage from a failing statement, and schema migrations."""

from sagakit.db.migrations import Migration, MigrationSet, migrate
from sagakit.db.pool import Connection, connect_pool, redact, transaction
from sagakit.errors import DatabaseUnavailable

__all__ = [
    "Connection",
    "DatabaseUnavailable",
    "Migration",
    "MigrationSet",
    "connect_pool",
    "migrate",
    "redact",
    "transaction",
]
