"""What the peer's api and worker share: configuration from the environment,
the S3 client, the database pool and the table.

- ``PEER_DATABASE_URL``: a PostgreSQL URL (libpq form)
- ``PEER_AMQP_URL``: the RabbitMQ URL (a vhost of its own)
- ``PEER_S3_ENDPOINT``, ``PEER_BUCKET``: the S3 server and bucket
  (credentials: boto3's usual ``AWS_*`` variables)
- ``PEER_PLUGINS``: ``module:function`` pipeline plugins, comma-separated
  (the fault runs add videoq's test pipelines: ``crash``, ``slow``)
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3  # type: ignore[import-untyped]
from psycopg_pool import ConnectionPool

__all__ = ["BUCKET", "SCHEMA", "db", "s3"]

BUCKET = os.environ.get("PEER_BUCKET", "peer")

# The column names of videoq's table where they mean the same thing, so the
# benchmark reads both sides' timings with one query.
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id uuid PRIMARY KEY,
    status text NOT NULL DEFAULT 'queued',
    pipeline text NOT NULL,
    frame_stride integer NOT NULL DEFAULT 1,
    input_key text NOT NULL,
    results_key text,
    error text,
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


@functools.cache
def db() -> ConnectionPool[Any]:
    """The process's connection pool, made on first use (after Celery's fork)."""
    return ConnectionPool(os.environ["PEER_DATABASE_URL"], min_size=1, max_size=8, open=True)


@functools.cache
def s3() -> Any:
    """The process's boto3 S3 client (thread-safe), made on first use."""
    return boto3.client("s3", endpoint_url=os.environ.get("PEER_S3_ENDPOINT"))
