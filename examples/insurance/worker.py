"""``python -m examples.insurance.worker``: the outbox relay, the timer worker and the consumers.

When billing runs as its own service, policy events cross the process boundary through the
transactional outbox and RabbitMQ instead of the in-process bus; the policies' expiry
timers take the same road::

    # the policy application commits changes, their events (outbox) and timers
    python -m examples.insurance.worker billing --database sqlite:///insurance.db
    python -m examples.insurance.worker policy --database sqlite:///insurance.db
    python -m examples.insurance.worker timers --database sqlite:///insurance.db
    python -m examples.insurance.worker relay --database sqlite:///insurance.db

``timers`` moves each expiry timer that is due (by the system clock) from
``tactical_scheduled`` into the outbox, deleting it in the same transaction, so it fires
once in effect even if the worker is killed. ``relay`` publishes unpublished outbox rows, in
order, to the ``insurance`` topic exchange and marks them only once RabbitMQ confirmed them.
``billing`` consumes the queue ``insurance.billing`` and runs the anti-corruption layer in
a unit of work together with an inbox record, so a redelivered event bills once; ``policy``
consumes ``insurance.policy`` (the fired expiry timers) and expires each policy the same
way, once. A message that keeps failing is parked in ``tactical_dead_letters``. All of them
log what they do and stop cleanly on Ctrl-C or SIGTERM. ``--once`` handles what is there
and exits (for scripts and tests).

(Start the consumers first the very first time: each declares and binds its queue, and a
topic exchange drops messages that no queue is bound for yet.)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import sqlalchemy as sa
from examples.insurance.app import insurance_codec, policy_inbox
from examples.insurance.billing.acl import extend_billing, start_billing, stop_billing
from examples.insurance.policy.clock import SYSTEM_CLOCK, Clock
from examples.insurance.policy.events import (
    PolicyCancelled,
    PolicyCoverageEnded,
    PolicyIssued,
    PolicyRenewed,
)
from tactical.outbox import InboxConsumer, OutboxRelay, TimerWorker
from tactical.outbox.rabbitmq import RabbitMQConsumer, RabbitMQPublisher
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema

EXCHANGE = "insurance"
BILLING_QUEUE = "insurance.billing"
POLICY_QUEUE = "insurance.policy"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"

_log = logging.getLogger("examples.insurance.worker")


def billing_inbox(engine: sa.Engine) -> InboxConsumer[SqlAlchemyUnitOfWork]:
    """The billing context's consumer: the ACL's handlers, each in a unit of work with an inbox row."""
    codec = insurance_codec()
    inbox = InboxConsumer(
        lambda: SqlAlchemyUnitOfWork(engine, codec=codec), "insurance.billing", codec=codec
    )
    inbox.subscribe(PolicyIssued, start_billing)
    inbox.subscribe(PolicyRenewed, extend_billing)
    inbox.subscribe(PolicyCancelled, stop_billing)
    return inbox


def billing_consumer(
    engine: sa.Engine, amqp: str, *, exchange: str = EXCHANGE, queue: str = BILLING_QUEUE
) -> RabbitMQConsumer:
    """The billing queue, bound to the policy events billing translates."""
    codec = insurance_codec()
    return RabbitMQConsumer(
        billing_inbox(engine),
        amqp,
        queue=queue,
        exchange=exchange,
        routing_keys=[
            codec.type_name(event_type)
            for event_type in (PolicyIssued, PolicyRenewed, PolicyCancelled)
        ],
    )


def policy_consumer(
    engine: sa.Engine, amqp: str, *, exchange: str = EXCHANGE, queue: str = POLICY_QUEUE
) -> RabbitMQConsumer:
    """The policy context's queue, bound to its fired expiry timers."""
    return RabbitMQConsumer(
        policy_inbox(engine),
        amqp,
        queue=queue,
        exchange=exchange,
        routing_keys=[insurance_codec().type_name(PolicyCoverageEnded)],
    )


def timer_worker(engine: sa.Engine, clock: Clock = SYSTEM_CLOCK) -> TimerWorker:
    """Fires the due expiry timers into the outbox, by ``clock`` (the system clock)."""
    return TimerWorker(engine, clock=clock, codec=insurance_codec())


def run_timers(
    engine: sa.Engine, amqp: str, stop: threading.Event, *, once: bool, exchange: str, queue: str
) -> int:
    """Fire due timers into the outbox until stopped (or, with ``once``, until none is due)."""
    worker = timer_worker(engine)
    if once:
        total = 0
        while (fired := worker.fire_due()) > 0:
            total += fired
        _log.info("fired %d timer(s)", total)
        return total
    worker.run(stop)
    return 0


def run_relay(
    engine: sa.Engine, amqp: str, stop: threading.Event, *, once: bool, exchange: str, queue: str
) -> int:
    """Relay the outbox to RabbitMQ until stopped (or, with ``once``, until it is empty)."""
    publisher = RabbitMQPublisher(amqp, exchange=exchange)
    relay = OutboxRelay(engine, publisher)
    try:
        if once:
            total = 0
            while (published := relay.relay_once()) > 0:
                total += published
            _log.info("relayed %d event(s)", total)
            return total
        relay.run(stop)
        return 0
    finally:
        publisher.close()


def run_billing(
    engine: sa.Engine, amqp: str, stop: threading.Event, *, once: bool, exchange: str, queue: str
) -> int:
    """Consume the billing queue until stopped (or, with ``once``, until it is idle)."""
    return _consume(billing_consumer(engine, amqp, exchange=exchange, queue=queue), stop, once)


def run_policy(
    engine: sa.Engine, amqp: str, stop: threading.Event, *, once: bool, exchange: str, queue: str
) -> int:
    """Consume the policy queue (fired expiry timers) until stopped, or once until idle."""
    return _consume(policy_consumer(engine, amqp, exchange=exchange, queue=queue), stop, once)


def _consume(consumer: RabbitMQConsumer, stop: threading.Event, once: bool) -> int:
    """Run ``consumer`` until ``stop`` is set (or, with ``once``, until it is idle), then close it."""
    try:
        if once:
            handled = consumer.consume_available(idle_timeout=1.0)
            _log.info("handled %d message(s)", handled)
            return handled
        consumer.run(stop)
        return 0
    finally:
        consumer.close()


WORKERS: dict[str, Any] = {
    "relay": run_relay,
    "billing": run_billing,
    "policy": run_policy,
    "timers": run_timers,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen worker; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m examples.insurance.worker")
    parser.add_argument("worker", choices=list(WORKERS), help="what to run")
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of the database")
    parser.add_argument("--amqp", default=DEFAULT_AMQP, help="RabbitMQ URL")
    parser.add_argument("--exchange", default=EXCHANGE, help="the topic exchange")
    parser.add_argument("--queue", default=BILLING_QUEUE, help="billing's queue")
    parser.add_argument("--policy-queue", default=POLICY_QUEUE, help="the policy context's queue")
    parser.add_argument("--once", action="store_true", help="handle what is there, then exit")
    arguments = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    logging.getLogger("pika").setLevel(logging.WARNING)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        _log.info("signal %d received, stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    engine = sa.create_engine(arguments.database)
    create_schema(engine)
    run: Any = WORKERS[arguments.worker]
    queue = arguments.policy_queue if arguments.worker == "policy" else arguments.queue
    try:
        run(
            engine,
            arguments.amqp,
            stop,
            once=arguments.once,
            exchange=arguments.exchange,
            queue=queue,
        )
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
