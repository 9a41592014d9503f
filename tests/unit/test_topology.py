import pytest

from shared.settings import Settings
from shared.topology import build_topology, tier_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "delay,name", [(10, "10s"), (60, "1m"), (600, "10m"), (7200, "2h"), (0.5, "500ms")]
)
def test_tier_names_read_like_their_delay(delay, name):
    assert tier_name(delay) == name


def test_the_default_topology_is_the_designs():
    topo = build_topology(Settings())
    assert {(e.name, e.type) for e in topo.exchanges} == {
        ("videoq.jobs", "direct"),
        ("videoq.retry", "direct"),
        ("videoq.dead", "fanout"),
        ("videoq.events", "topic"),
        ("videoq.webhooks", "direct"),
        ("videoq.webhooks.retry", "direct"),
        ("videoq.webhooks.dead", "fanout"),
    }
    queues = {q.name: q.arguments for q in topo.queues}
    assert set(queues) == {
        "videoq.jobs.process",
        "videoq.dead.jobs",
        "videoq.retry.10s",
        "videoq.retry.1m",
        "videoq.retry.10m",
        "videoq.webhooks.deliver",
        "videoq.dead.webhooks",
        *(f"videoq.webhooks.retry.{t}" for t in ("10s", "1m", "10m", "1h", "6h")),
    }
    work = queues["videoq.jobs.process"]
    assert work["x-queue-type"] == "quorum"
    assert work["x-dead-letter-exchange"] == "videoq.dead"
    assert work["x-delivery-limit"] == 10
    assert work["x-dead-letter-strategy"] == "at-least-once"
    assert work["x-overflow"] == "reject-publish"
    assert queues["videoq.retry.1m"]["x-message-ttl"] == 60_000
    assert queues["videoq.retry.1m"]["x-dead-letter-exchange"] == "videoq.jobs"
    assert topo.tiers == ("10s", "1m", "10m")
