"""The job repository: port, PostgreSQL adapter and migrations."""

from shared.repository.base import JobRepository
from shared.repository.migrate import apply_migrations, load_migrations
from shared.repository.postgres import PostgresJobRepository, connect_repository

__all__ = [
    "JobRepository",
    "PostgresJobRepository",
    "apply_migrations",
    "connect_repository",
    "load_migrations",
]
