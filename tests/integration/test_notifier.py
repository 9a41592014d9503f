"""Signed webhooks on a real RabbitMQ and PostgreSQL: the notifier delivers
job events to a loopback receiver that verifies them with ``standardwebhooks``."""

import argparse
import hashlib
import uuid

import asyncpg
import httpx
import pytest
import standardwebhooks
from pydantic import SecretStr

from services.api.app import create_app
from services.cli.dlq import run_dlq
from services.notifier.notifier import Notifier
from shared import outbox
from shared.backends import open_backends
from shared.broker import AmqpBroker
from shared.metrics import Metrics
from shared.repository import connect_repository
from shared.settings import Settings
from tests.support.jobs import add_job
from tests.support.receiver import receiver
from tests.support.stack import _env
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    # Loopback only: http allowed, and 127.0.0.0/8 let through the SSRF guard.
    return settings.model_copy(
        update={
            "webhook_secrets": SecretStr(f"acme:{SECRET},other:{OTHER_SECRET}"),
            "webhook_retry_delays": (0.3, 0.6),
            "webhook_allow_http": True,
            "webhook_allow_networks": ("127.0.0.0/8",),
            "webhook_timeout_seconds": 2.0,
        }
    )


@pytest.fixture
async def stack(hook_settings):
    repo = await connect_repository(hook_settings.database_url.get_secret_value(), migrate=True)
    broker = await AmqpBroker.connect(hook_settings, app_id="videoq-test")
    notifier = Notifier(settings=hook_settings, repo=repo, broker=broker, metrics=Metrics())
    await notifier.start()
    yield repo, broker
    await notifier.stop(grace_seconds=5)
    await broker.close()
    await repo.close()


async def finished_job(repo, broker, *, callback_url, client_id="acme", fail=False) -> uuid.UUID:
    """A job that ran and ended, its events published as the janitor does."""
    job_id = await add_job(
        repo,
        client_id=client_id,
        tag="cam-7",
        metadata={"site": "north"},
        callback_url=callback_url,
    )
    await repo.claim(job_id, owner="w", lease_seconds=30)
    if fail:
        await repo.fail(job_id, owner="w", error="Unable to read video file")
    else:
        await repo.complete(job_id, owner="w", output_path=f"results/{job_id}.json")
    await outbox.publish_owed_events(broker, repo, limit=100)
    return job_id


def verified(received) -> dict:
    """The body, checked by the independent Standard Webhooks implementation."""
    return standardwebhooks.Webhook(SECRET).verify(received.body, received.headers)


async def test_a_receiver_failing_twice_gets_three_signed_attempts_and_one_success(stack):
    repo, broker = stack
    with receiver([500, 503, 204]) as hook:
        job_id = await finished_job(repo, broker, callback_url=hook.url)
        log = await async_wait_until(
            lambda: _log_when(repo, job_id, 3), timeout=30, what="three attempts logged"
        )
    assert [r.status for r in hook.received] == [500, 503, 204]
    bodies = [verified(r) for r in hook.received]  # every attempt is validly signed
    assert bodies[-1] == {
        "type": "job.completed",
        "timestamp": bodies[-1]["timestamp"],
        "data": {
            "job_id": str(job_id),
            "status": "completed",
            "tag": "cam-7",
            "metadata": {"site": "north"},
            "attempt": 1,
            "error_message": None,
        },
    }
    assert len({r.headers["webhook-id"] for r in hook.received}) == 1, "stable across retries"
    assert [a.attempt for a in log] == [1, 2, 3]
    assert [a.status_code for a in log] == [500, 503, 204]
    assert [a.error for a in log][:2] == ["HTTP 500", "HTTP 503"] and log[2].error is None
    assert all(a.next_attempt_at is not None for a in log[:2]) and log[2].next_attempt_at is None
    assert {a.webhook_id for a in log} == {hook.received[0].headers["webhook-id"]}


async def _log_when(repo, job_id, count):
    log = await repo.list_deliveries(job_id, limit=100)
    return log if len(log) >= count else None


async def test_a_receiver_down_past_every_tier_is_parked_listed_and_redelivered(
    stack, hook_settings, monkeypatch, capsys
):
    repo, broker = stack
    with receiver([500, 500, 500, 200]) as hook:
        job_id = await finished_job(repo, broker, callback_url=hook.url, fail=True)

        async def parked():
            return await broker.dead_letters(limit=10, lot="webhooks")

        letters = await async_wait_until(parked, timeout=30, what="the delivery parked")
        assert [r.status for r in hook.received] == [500, 500, 500]  # first try + 2 tiers
        assert letters[0].job_id == str(job_id)
        assert "HTTP 500 (gave up after 3 attempts)" in letters[0].reason

        for name, value in _env(hook_settings).items():
            if name.startswith("VIDEOQ_"):
                monkeypatch.setenv(name, value)
        listing = argparse.Namespace(dlq_command="list", webhooks=True, limit=10)
        assert await run_dlq(listing) == 0
        listed = capsys.readouterr().out
        assert str(job_id) in listed and hook.received[0].headers["webhook-id"] in listed

        replay = argparse.Namespace(dlq_command="replay", webhooks=True, job=None, limit=10)
        assert await run_dlq(replay) == 0
        assert "redelivered 1 of 1" in capsys.readouterr().out
        log = await async_wait_until(
            lambda: _log_when(repo, job_id, 4), timeout=30, what="the redelivery"
        )
    assert [r.status for r in hook.received] == [500, 500, 500, 200]
    assert verified(hook.received[-1])["type"] == "job.failed"
    assert verified(hook.received[-1])["data"]["error_message"] == "Unable to read video file"
    assert [a.attempt for a in log] == [1, 2, 3, 1]  # fresh tiers after a redelivery
    assert await broker.dead_letters(limit=10, lot="webhooks") == []


async def test_a_callback_that_turned_bad_fails_for_good_without_connecting(stack, hook_settings):
    repo, broker = stack
    with receiver([200]) as hook:
        # localhost, but outside the allowed networks: refused as loopback.
        bad = hook.url.replace("127.0.0.1", "localhost")
        guarded = hook_settings.model_copy(update={"webhook_allow_networks": ()})
        notifier = Notifier(settings=guarded, repo=repo, broker=broker, metrics=Metrics())
        # The fixture's notifier allows loopback; this test's job goes to one that does not.
        job_id = await add_job(repo, client_id="acme", callback_url=bad)
        from services.notifier.notifier import OwedWebhook

        job = await repo.get(job_id)
        assert job is not None
        owed = OwedWebhook(job_id, 1, "job.completed", job.created_at, 1, 0)
        await notifier._deliver(owed, b"{}")
        log = await repo.list_deliveries(job_id, limit=10)
    assert hook.received == []
    assert len(log) == 1 and log[0].status_code is None and log[0].next_attempt_at is None
    assert "loopback" in log[0].error


async def test_an_erased_job_gets_no_webhook(stack, hook_settings):
    repo, broker = stack
    with receiver([200]) as hook:
        job_id = await add_job(repo, client_id="acme", callback_url=hook.url)
        await repo.claim(job_id, owner="w", lease_seconds=30)
        await repo.complete(job_id, owner="w", output_path="y")
        # Erased before its webhook reaches the notifier: the event row goes with
        # the job (cascade), so hold a copy and publish it after the delete.
        async with repo.lock_unpublished_events(limit=100) as owed:
            events = [e for e in owed.rows if e.job_id == job_id]
            await owed.record(owed.rows)
        conn = await asyncpg.connect(hook_settings.database_url.get_secret_value())
        await conn.execute("DELETE FROM jobs WHERE job_id = $1", job_id)
        await conn.close()
        for event in events:
            if event.webhook:
                await broker.publish_webhook(
                    event.body(), message_id=f"{event.job_id}:{event.event_id}", attempts=0
                )
        # A second job's webhook comes after the first in the queue: once it
        # is delivered, the first was handled (dropped).
        later = await finished_job(repo, broker, callback_url=hook.url)
        await async_wait_until(lambda: _log_when(repo, later, 1), timeout=30, what="later job")
    assert [verified(r)["data"]["job_id"] for r in hook.received] == [str(later)]


async def test_the_delivery_log_is_its_owner_s_and_callback_url_is_checked_at_submit(
    hook_settings, sample_mp4
):
    keys = {"acme": "acme-key", "other": "other-key"}
    settings = hook_settings.model_copy(
        update={
            "webhook_allow_http": False,
            "webhook_allow_networks": (),
            "auth_disabled": False,
            "api_keys": SecretStr(
                ",".join(f"{c}:{hashlib.sha256(k.encode()).hexdigest()}" for c, k in keys.items())
            ),
        }
    )
    acme = {"Authorization": "Bearer acme-key"}
    app = create_app(settings)
    app.state.backends = await open_backends(settings, app_id="videoq-api")
    body = sample_mp4.read_bytes()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://videoq"
        ) as api:
            for url, why in [
                ("http://example.com/hook", "must use https"),
                ("https://127.0.0.1/hook", "loopback"),
                ("https://[::1]/hook", "loopback"),
                ("https://10.1.2.3/hook", "private"),
                ("https://169.254.169.254/latest/meta-data", "cloud metadata"),
                ("https://user:pw@example.com/", "credentials"),
                ("https://localhost/hook", "loopback"),  # resolved, then refused
            ]:
                refused = await api.post(
                    "/video/submit",
                    headers=acme,
                    files={"file": ("a.mp4", body, "video/mp4")},
                    data={"callback_url": url},
                )
                assert refused.status_code == 422, url
                assert "callback_url" in refused.json()["detail"], url
                assert why in refused.json()["detail"], url
            ok = await api.post(
                "/video/submit",
                headers=acme,
                files={"file": ("a.mp4", body, "video/mp4")},
                data={"callback_url": "https://8.8.8.8/hook"},  # public: accepted, never called
            )
            assert ok.status_code == 202, ok.text
            job_id = ok.json()["job_id"]
            listed = await api.get(f"/video/jobs/{job_id}/deliveries", headers=acme)
            assert (listed.status_code, listed.json()) == (200, {"deliveries": []})
            theirs = await api.get(
                f"/video/jobs/{job_id}/deliveries", headers={"Authorization": "Bearer other-key"}
            )
            assert theirs.status_code == 404
            missing = await api.get(f"/video/jobs/{uuid.uuid4()}/deliveries", headers=acme)
            assert missing.status_code == 404
    finally:
        await app.state.backends.close()


async def test_videoq_dev_s_memory_broker_delivers_retries_and_parks_the_same_way(hook_settings):
    from shared.broker import MemoryBroker

    repo = await connect_repository(hook_settings.database_url.get_secret_value(), migrate=True)
    broker = MemoryBroker(hook_settings)
    notifier = Notifier(settings=hook_settings, repo=repo, broker=broker, metrics=Metrics())
    await notifier.start()
    try:
        with receiver([500, 204, 500]) as hook:
            delivered = await finished_job(repo, broker, callback_url=hook.url)
            await async_wait_until(
                lambda: _log_when(repo, delivered, 2), timeout=30, what="retried, delivered"
            )
            parked = await finished_job(repo, broker, callback_url=hook.url, fail=True)

            async def letters():
                return await broker.dead_letters(limit=10, lot="webhooks")

            letter = (await async_wait_until(letters, timeout=30, what="parked"))[0]
        assert [r.status for r in hook.received] == [500, 204, 500, 500, 500]
        assert [verified(r)["type"] for r in hook.received] == ["job.completed"] * 2 + [
            "job.failed"
        ] * 3
        assert letter.job_id == str(parked)
        assert [a.attempt for a in await repo.list_deliveries(parked, limit=10)] == [1, 2, 3]
    finally:
        await notifier.stop(grace_seconds=5)
        await broker.close()
        await repo.close()
