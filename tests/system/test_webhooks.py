"""Signed webhooks on the whole stack, the notifier a process of its own."""

import httpx
import pytest
import standardwebhooks
from pydantic import SecretStr

from tests.support.receiver import HANG, receiver
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.system

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def hook_settings(settings):
    return settings.model_copy(
        update={
            "webhook_secrets": SecretStr(f"anonymous:{SECRET}"),
            "webhook_retry_delays": (0.5, 1.0),
            "webhook_allow_http": True,
            "webhook_allow_networks": ("127.0.0.0/8", "::1/128"),
            "webhook_timeout_seconds": 30.0,
        }
    )


def test_a_notifier_killed_mid_delivery_loses_no_webhook(hook_settings, sample_mp4, tmp_path):
    stack = Stack(hook_settings, tmp_path / "logs")
    try:
        url = stack.start_all()
        stack.start_notifier("notifier-1")
        # The first notifier is killed while the receiver holds its request.
        with receiver([HANG, 204]) as hook:
            response = httpx.post(
                f"{url}/video/submit",
                files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")},
                data={"callback_url": hook.url, "tag": "cam-7"},
                timeout=30,
            )
            assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            wait_until(lambda: hook.received, timeout=60, what="the first attempt")
            stack.kill("notifier-1")
            hook.release()
            stack.start_notifier("notifier-2")
            wait_until(lambda: len(hook.received) == 2, timeout=60, what="the redelivery")

            def logged():
                answer = httpx.get(f"{url}/video/jobs/{job_id}/deliveries", timeout=10)
                return answer.json()["deliveries"]

            log = wait_until(logged, timeout=30, what="the attempt logged")
        first, second = hook.received
        verifier = standardwebhooks.Webhook(SECRET)
        assert verifier.verify(first.body, first.headers)["data"]["job_id"] == job_id
        body = verifier.verify(second.body, second.headers)
        assert (body["type"], body["data"]["status"], body["data"]["tag"]) == (
            "job.completed",
            "completed",
            "cam-7",
        )
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        # The killed attempt never reached the log; the one that succeeded did.
        assert [(a["attempt"], a["status_code"], a["error"]) for a in log] == [(1, 204, None)]
        assert log[0]["webhook_id"] == second.headers["webhook-id"]
    finally:
        stack.stop()
