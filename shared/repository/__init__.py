"""The job repository: ports, PostgreSQL adapter and migrations."""

from shared.repository.base import ExpiredLeases, JanitorRepository, JobRepository, LockedRows
from shared.repository.migrate import apply_migrations, load_migrations
from shared.repository.postgres import PostgresJobRepository, connect_repository

__all__ = [
    "ExpiredLeases",
    "JanitorRepository",
    "JobRepository",
    "LockedRows",
    "PostgresJobRepository",
    "apply_migrations",
    "connect_repository",
    "load_migrations",
]
