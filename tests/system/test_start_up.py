"""What waiting cannot cure stops a service at once, with one line that says
why: here a parking lot left classic by an older release."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.system


async def _declare_classic_parking_lot(settings) -> None:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            settings.queue_dead, durable=True, arguments={"x-queue-type": "classic"}
        )


def _start_failed(log: str, event: str) -> dict:
    lines = [json.loads(line) for line in log.splitlines() if f'"{event}"' in line]
    assert len(lines) == 1, log[-3000:]
    return lines[0]


def test_a_queue_declared_with_other_arguments_stops_each_service_with_one_line(settings, tmp_path):
    asyncio.run(_declare_classic_parking_lot(settings))
    stack = Stack(settings, tmp_path / "logs")
    try:
        worker = stack.start_worker()
        janitor = stack.start_janitor()
        assert worker.wait(timeout=60) == 1
        assert janitor.wait(timeout=60) == 1
        for name in ("worker", "janitor"):
            line = _start_failed(stack.log(name), f"{name}.start_failed")
            assert settings.queue_dead in line["error"] and "docs/runbook.md" in line["error"]
            assert "Traceback" not in stack.log(name)
        with pytest.raises(RuntimeError, match="api did not start"):
            stack.start_api()
        line = _start_failed(stack.log("api"), "api.start_failed")
        assert settings.queue_dead in line["error"]
    finally:
        stack.stop()
