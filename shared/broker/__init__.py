"""The broker: port, RabbitMQ adapter and in-process adapter."""

from shared.broker.amqp import AmqpBroker
from shared.broker.base import Broker, DeadLetter, Delivery, Handler
from shared.broker.memory import MemoryBroker

__all__ = ["AmqpBroker", "Broker", "DeadLetter", "Delivery", "Handler", "MemoryBroker"]
