"""PostgreSQL plumbing shared by every service: connection pools and schema migrations."""

from sagakit.db.migrations import Migration, MigrationSet, migrate
from sagakit.db.pool import Connection, connect_pool

__all__ = ["Connection", "Migration", "MigrationSet", "connect_pool", "migrate"]
