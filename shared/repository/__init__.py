"""The job repository: ports, PostgreSQL adapter and migrations."""

from shared.repository.base import (
    ExpiredLeases,
    JanitorRepository,
    JobRepository,
    LockedRows,
    Retained,
)
from shared.repository.migrate import apply_migrations, load_migrations
from shared.repository.postgres import PostgresJobRepository, connect_repository

__all__ = [
    "ExpiredLeases",
    "JanitorRepository",
    "JobRepository",
    "LockedRows",
    "PostgresJobRepository",
    "Retained",
    "apply_migrations",
    "connect_repository",
    "load_migrations",
]
