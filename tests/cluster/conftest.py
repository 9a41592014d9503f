"""The cluster lane: a three-node RabbitMQ 4 cluster of containers behind a
TCP balancer (tests/support/cluster.py), with the machine's PostgreSQL and
the session's S3 as in the system tests.

The image comes from ``scripts/containers.sh`` (which also starts the Docker
engine): run ``eval "$(bash scripts/containers.sh)"`` first, it sets
``VIDEOQ_TEST_RABBITMQ4_IMAGE``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.cluster import RabbitCluster


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    image = os.environ.get("VIDEOQ_TEST_RABBITMQ4_IMAGE")
    if not image:
        pytest.fail(
            "VIDEOQ_TEST_RABBITMQ4_IMAGE is not set: run"
            ' `eval "$(bash scripts/containers.sh)"` first (it builds the image).',
            pytrace=False,
        )
    cluster = RabbitCluster(image, tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def amqp_url(rabbit_cluster: RabbitCluster) -> Iterator[str]:
    """This test's own vhost on the cluster, reached through the balancer
    (overrides the machine's broker for the ``settings`` fixture)."""
    vhost = rabbit_cluster.new_vhost()
    yield rabbit_cluster.amqp_url(vhost)
    rabbit_cluster.drop_vhost(vhost)
