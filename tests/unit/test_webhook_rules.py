"""The webhook parts that need no service: the SSRF guard's judgement of
every address range (nothing is connected to), the signature (checked by
the independent ``standardwebhooks``), the secrets' secrecy and the topology."""

import ipaddress
import json
import uuid
from datetime import UTC, datetime

import pytest
import standardwebhooks
from pydantic import SecretStr, ValidationError

from shared.errors import CallbackRefused
from shared.jobs import Job, JobStatus
from shared.settings import Settings, parse_webhook_secrets
from shared.topology import WEBHOOK_EVENTS, build_topology
from shared.webhooks.model import build_body, webhook_id
from shared.webhooks.signing import signed_headers
from shared.webhooks.ssrf import CallbackPolicy, refusal

pytestmark = pytest.mark.unit

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "not globally reachable"),  # shared address space (CGNAT)
        ("192.0.2.10", "private"),  # documentation
        ("198.18.0.1", "private"),  # benchmarking
        # Cloud metadata services.
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.170.2", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("192.0.0.192", "a cloud metadata address"),
        ("168.63.129.16", "a cloud metadata address"),
        # IPv4 inside IPv6 is judged as the IPv4 address.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "a cloud metadata address"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused_with_the_reason(address, why):
    assert refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_let_their_addresses_through_and_nothing_else():
    policy = CallbackPolicy(allow_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    policy.check_address(ipaddress.ip_address("10.20.3.4"))
    with pytest.raises(CallbackRefused, match=r"private address 10\.21\.0\.1"):
        policy.check_address(ipaddress.ip_address("10.21.0.1"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/", "must use https"),
        ("ftp://example.com/", "must use https"),
        ("https://user:pw@example.com/", "must not hold credentials"),
        ("https:///path", "has no host"),
        ("https://[::1]:8443/", "loopback"),
        ("https://169.254.169.254/latest", "cloud metadata"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com/" + "a" * 2048, "at most 2048 characters"),
    ],
)
def test_urls_are_refused_in_form_before_any_lookup(url, message):
    with pytest.raises(CallbackRefused, match=message):
        CallbackPolicy().check_url(url)


def test_http_is_refused_unless_allowed():
    assert CallbackPolicy(allow_http=True).check_url("http://example.com/x") == (
        "http",
        "example.com",
        80,
    )


async def test_resolving_checks_the_host_s_addresses():
    # An IP literal and localhost resolve without DNS traffic.
    with pytest.raises(CallbackRefused, match="loopback"):
        await CallbackPolicy().resolve("https://localhost:8443/hook")
    allowed = CallbackPolicy(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    target = await allowed.resolve("https://127.0.0.1:8443/hook")
    assert (target.host, target.port, target.address) == ("127.0.0.1", 8443, "127.0.0.1")


def test_the_signature_verifies_with_the_standard_webhooks_library():
    body = b'{"type":"job.completed"}'
    headers = signed_headers(
        secret=parse_webhook_secrets(SecretStr(f"acme:{SECRET}"))["acme"],
        webhook_id="msg_1",
        timestamp=int(datetime.now(UTC).timestamp()),
        body=body,
    )
    assert standardwebhooks.Webhook(SECRET).verify(body, headers) == {"type": "job.completed"}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(body + b" ", headers)


def test_secrets_never_show_in_repr_redacted_settings_or_errors():
    settings = Settings(webhook_secrets=f"acme:{SECRET}")
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert settings.redacted()["webhook_secrets"] == "***"
    assert SECRET[6:] not in repr(parse_webhook_secrets(settings.webhook_secrets))
    with pytest.raises(ValidationError) as refused:
        Settings(webhook_secrets="acme:whsec_not!base64")
    assert "not!base64" not in str(refused.value)
    assert "entry 1" in str(refused.value)


def test_the_body_is_built_from_the_row_and_the_id_is_stable():
    now = datetime.now(UTC)
    job = Job(
        job_id=uuid.uuid4(),
        status=JobStatus.FAILED,
        created_at=now,
        updated_at=now,
        input_path="x",
        output_path=None,
        error_message="Unable to read video file",
        progress=0,
        attempts=2,
        pipeline="basic",
        tag="t",
        metadata={"k": 1},
    )
    body = json.loads(build_body("job.failed", job, timestamp=now, attempt=2))
    assert body == {
        "type": "job.failed",
        "timestamp": now.isoformat(),
        "data": {
            "job_id": str(job.job_id),
            "status": "failed",
            "tag": "t",
            "metadata": {"k": 1},
            "attempt": 2,
            "error_message": "Unable to read video file",
        },
    }
    assert webhook_id(str(job.job_id), 7) == webhook_id(str(job.job_id), 7)
    assert webhook_id(str(job.job_id), 7) != webhook_id(str(job.job_id), 8)


def test_webhook_tiers_return_to_the_delivery_queue_and_only_terminal_events_feed_it():
    settings = Settings(webhook_retry_delays=(10, 60, 600, 3600, 21600))
    topology = build_topology(settings)
    assert topology.webhook_tiers == ("10s", "1m", "10m", "1h", "6h")
    queues = {q.name: q.arguments for q in topology.queues}
    for tier, delay in zip(topology.webhook_tiers, settings.webhook_retry_delays, strict=True):
        arguments = queues[f"videoq.webhooks.retry.{tier}"]
        assert arguments["x-message-ttl"] == delay * 1000
        assert arguments["x-dead-letter-exchange"] == "videoq.webhooks"
    fed = {
        (b.exchange, b.routing_key)
        for b in topology.bindings
        if b.queue == "videoq.webhooks.deliver"
    }
    # Only the janitor's owed webhooks and the tiers feed it: integrators'
    # events never queue there for jobs without a callback.
    assert fed == {("videoq.webhooks", "deliver")}
    assert set(WEBHOOK_EVENTS) == {"job.completed", "job.failed"}
    assert queues["videoq.webhooks.deliver"]["x-queue-type"] == "quorum"
    assert queues["videoq.webhooks.deliver"]["x-dead-letter-exchange"] == "videoq.webhooks.dead"
