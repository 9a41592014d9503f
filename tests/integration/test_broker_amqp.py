"""The RabbitMQ adapter on a real broker."""

import asyncio
import socket
import threading
import uuid
from urllib.parse import quote, urlsplit

import aio_pika
import pytest
import uvloop

from shared.broker import AmqpBroker, DeadLetter
from shared.errors import CannotStart, DependencyUnavailable
from shared.payload import build_payload
from shared.settings import Settings
from shared.topology import build_topology
from tests.support.services import broker_setting, rabbit_get
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def amqp_settings(amqp_url):
    return Settings(amqp_url=amqp_url, retry_delays=(0.3, 0.6, 1.2))


@pytest.fixture
async def broker(amqp_settings):
    b = await AmqpBroker.connect(amqp_settings, app_id="videoq-test")
    yield b
    await b.close()


def vhost_of(url: str) -> str:
    return quote(urlsplit(url).path.lstrip("/"), safe="")


async def test_every_service_declares_the_same_topology_idempotently(amqp_settings, services_ready):
    first = await AmqpBroker.connect(amqp_settings, app_id="a")
    second = await AmqpBroker.connect(amqp_settings, app_id="b")  # same arguments: no error
    await first.close()
    await second.close()
    vhost = vhost_of(amqp_settings.amqp_url.get_secret_value())
    queues = {q["name"]: q for q in rabbit_get(services_ready, f"/api/queues/{vhost}")}
    expected = build_topology(amqp_settings)
    for queue in expected.queues:
        assert queues[queue.name]["durable"] is True
        assert queues[queue.name]["arguments"] == queue.arguments
    exchanges = {e["name"]: e for e in rabbit_get(services_ready, f"/api/exchanges/{vhost}")}
    for exchange in expected.exchanges:
        assert exchanges[exchange.name]["type"] == exchange.type
        assert exchanges[exchange.name]["durable"] is True


async def test_a_published_job_is_consumed_with_its_properties(broker):
    job_id = uuid.uuid4()
    received = asyncio.get_running_loop().create_future()

    async def handler(delivery):
        await delivery.ack()
        received.set_result(delivery)

    await broker.consume(handler, prefetch=1)
    await broker.publish_job(job_id, attempt=2)
    delivery = await asyncio.wait_for(received, 10)
    assert delivery.body == build_payload(job_id)
    assert delivery.message_id == str(job_id)
    assert delivery.headers["attempt"] == 2


async def test_a_retry_tier_delivers_back_to_the_work_queue_after_its_delay(broker):
    job_id = uuid.uuid4()
    arrivals = []
    done = asyncio.Event()

    async def handler(delivery):
        arrivals.append(asyncio.get_running_loop().time())
        await delivery.ack()
        done.set()

    await broker.consume(handler, prefetch=1)
    sent = asyncio.get_running_loop().time()
    await broker.publish_job(job_id, tier="600ms")
    await asyncio.wait_for(done.wait(), 10)
    assert arrivals[0] - sent >= 0.5


async def test_an_unroutable_publish_raises(amqp_settings):
    broken = amqp_settings.model_copy(update={"exchange_jobs": "videoq.nowhere"})
    broker = await AmqpBroker.connect(broken, app_id="t")
    try:
        # The exchange exists but nothing is bound with the key: returned, raised.
        await broker._channel.declare_exchange("videoq.orphan", aio_pika.ExchangeType.DIRECT)
        broker._exchanges[broken.exchange_jobs] = await broker._channel.get_exchange(
            "videoq.orphan"
        )
        with pytest.raises(DependencyUnavailable):
            await broker.publish_job(uuid.uuid4())
    finally:
        await broker.close()


async def test_dead_letters_are_listed_taken_and_purged(broker):
    ids = [uuid.uuid4() for _ in range(3)]
    for i, job_id in enumerate(ids):
        await broker.park(build_payload(job_id), reason=f"why {i}", job_id=str(job_id), attempt=5)
    await asyncio.sleep(0.2)
    listed = await broker.dead_letters(limit=10)
    assert [d.job_id for d in listed] == [str(i) for i in ids]
    assert [d.reason for d in listed] == ["why 0", "why 1", "why 2"]
    assert len(await broker.dead_letters(limit=10)) == 3  # listing leaves them there
    taken = await broker.take_dead_letters(limit=1)
    assert taken[0].job_id == str(ids[0])
    assert await broker.purge_dead() == 2
    assert await broker.dead_letters(limit=10) == []


async def test_an_unreachable_broker_is_a_dependency_error():
    settings = Settings(amqp_url="amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(DependencyUnavailable):
        await AmqpBroker.connect(settings, app_id="t")


@pytest.fixture
def hang_up_listener():
    """A port that accepts each connection and closes it at once, as a node
    still booting does, or a load balancer with no ready node behind it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for _ in range(100):
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
    listener.close()
    thread.join(timeout=5)


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_a_broker_that_hangs_up_during_the_handshake_is_a_dependency_error(
    hang_up_listener, loop_factory
):
    # Services wait out a DependencyUnavailable at start-up; any other error
    # (aiormq's StopAsyncIteration on uvloop, before the fix) ended them.
    settings = Settings(amqp_url=f"amqp://guest:guest@127.0.0.1:{hang_up_listener}/")
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        for _ in range(3):
            with pytest.raises(DependencyUnavailable):
                runner.run(AmqpBroker.connect(settings, app_id="t"))


async def test_a_parking_lot_left_classic_by_an_older_version_stops_start_up_with_the_fix(
    amqp_settings,
):
    # Before 0.2 videoq.dead.jobs was a classic queue; RabbitMQ refuses to
    # redeclare it as quorum, and no amount of waiting changes that.
    connection = await aio_pika.connect(amqp_settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            amqp_settings.queue_dead, durable=True, arguments={"x-queue-type": "classic"}
        )
    with pytest.raises(CannotStart) as raised:
        await AmqpBroker.connect(amqp_settings, app_id="videoq-test")
    assert amqp_settings.queue_dead in str(raised.value)
    assert "docs/runbook.md" in str(raised.value)


async def test_a_parked_message_survives_any_number_of_looks(broker):
    # Each look hands the message back, and a quorum queue counts returns
    # toward its delivery limit (20 by default on RabbitMQ 4): an operator
    # listing the parking lot must never make it drop what it holds.
    job_id = str(uuid.uuid4())
    await broker.park(build_payload(uuid.UUID(job_id)), reason="looked at", job_id=job_id)
    for _ in range(25):
        listed = await broker.dead_letters(limit=10)
        assert [(d.job_id, d.reason) for d in listed] == [(job_id, "looked at")]


async def test_a_dead_letter_with_no_route_waits_for_one_instead_of_being_dropped(amqp_settings):
    # The work queue dead-letters "at-least-once": the broker keeps a rejected
    # job until the parking lot confirms it. "at-most-once" (the default)
    # would drop it if the lot could not take it just then. The dead-letter
    # worker retries on its confirm timeout (3 min by default): 1 s here, for
    # the queues this test declares.
    with broker_setting("dead_letter_worker_publisher_confirm_timeout", 1000):
        broker = await AmqpBroker.connect(amqp_settings, app_id="videoq-test")
    connection = await aio_pika.connect(amqp_settings.amqp_url.get_secret_value())
    try:
        channel = await connection.channel()
        lot = await channel.get_queue(amqp_settings.queue_dead)
        await lot.unbind(amqp_settings.exchange_dead, routing_key="")  # no route
        job_id = uuid.uuid4()
        await broker.publish_job(job_id)
        work = await channel.get_queue(amqp_settings.queue_process)
        message = await work.get(timeout=10)
        await message.reject(requeue=False)

        await asyncio.sleep(3)  # three of the dead-letter worker's retries
        assert await broker.dead_letters(limit=10) == []
        await lot.bind(amqp_settings.exchange_dead, routing_key="")

        async def parked() -> list[DeadLetter]:
            return await broker.dead_letters(limit=10)

        found = await async_wait_until(parked, timeout=20, interval=0.5, what="the dead letter")
        assert [(d.job_id, d.reason) for d in found] == [
            (str(job_id), f"broker: rejected from {amqp_settings.queue_process}")
        ]
    finally:
        await connection.close()
        await broker.close()
