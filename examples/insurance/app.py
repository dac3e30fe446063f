"""Wiring: both contexts on one event bus, in memory or on a SQL database.

This is the composition root, the one place that knows every adapter. The policy context
stores policies through its relational mapper; billing needs no mapping code and uses
tactical's default JSON document storage. Both write their events to the outbox of the
same database.

Policies expire through durable timers (see :mod:`examples.insurance.policy.services`).
What fires them is :attr:`Insurance.timers`: in memory it takes the due timers from the
store and hands them to the policy service; on a database a
:class:`~tactical.outbox.TimerWorker` moves them into the outbox, and a relay delivers
them to the policy context's inbox consumer (:func:`policy_inbox`), in process here, or
through RabbitMQ and ``python -m examples.insurance.worker`` in a deployment.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from examples.insurance.billing.acl import PolicyEventsTranslator
from examples.insurance.billing.services import BillingService
from examples.insurance.policy.clock import SYSTEM_CLOCK, Clock
from examples.insurance.policy.events import (
    ClaimApproved,
    ClaimDenied,
    ClaimFiled,
    PolicyCancelled,
    PolicyCoverageEnded,
    PolicyExpired,
    PolicyIssued,
    PolicyReinstated,
    PolicyRenewed,
    PolicySuspended,
)
from examples.insurance.policy.services import (
    ActivePoliciesProjection,
    PolicyQueries,
    PolicyService,
    expire_at_coverage_end,
)
from examples.insurance.policy.sql import PolicyMapper, SqlPolicyQueries
from examples.insurance.policy.sql import metadata as policy_metadata
from tactical import DomainEvent, EventBus, InMemoryStore, InMemoryUnitOfWork, JsonCodec
from tactical.outbox import InboxConsumer, OutboxMessage, OutboxRelay, TimerWorker
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema


class Timers(Protocol):
    """Fires the durable timers that are due by the application's clock."""

    def fire_due(self) -> int:
        """Fire every timer due now and deliver what it can in process; how many fired."""
        ...


@dataclass(frozen=True)
class Insurance:
    """The running application: services of both contexts, the bus joining them, its timers."""

    policies: PolicyService
    queries: PolicyQueries
    billing: BillingService
    bus: EventBus
    timers: Timers


class InMemoryTimers:
    """The in-memory timer worker: due timers taken from the store, handled by the service."""

    def __init__(self, store: InMemoryStore, clock: Clock, policies: PolicyService) -> None:
        self._store = store
        self._clock = clock
        self._policies = policies

    def fire_due(self) -> int:
        """Take every timer due by the clock and expire its policy; how many fired."""
        due = self._store.take_due(self._clock.now())
        for timer in due:
            if isinstance(timer.message, PolicyCoverageEnded):
                self._policies.expire_at_coverage_end(timer.message)
        return len(due)


def in_memory(clock: Clock = SYSTEM_CLOCK) -> Insurance:
    """Both contexts in memory (one shared store), for tests and experiments."""
    bus, store = EventBus(), InMemoryStore()
    billing = BillingService(InMemoryUnitOfWork(bus, store=store))
    PolicyEventsTranslator(billing).subscribe_to(bus)
    projection = ActivePoliciesProjection()
    projection.subscribe_to(bus)
    policies = PolicyService(InMemoryUnitOfWork(bus, store=store), clock)
    return Insurance(policies, projection, billing, bus, InMemoryTimers(store, clock, policies))


def insurance_codec() -> JsonCodec:
    """The codec of both contexts: stable names for the events other processes read.

    The outbox, the broker's routing keys and the consumers use these names, so moving or
    renaming an event class does not break stored or in-flight messages.
    """
    codec = JsonCodec()
    for event_type in PUBLISHED_EVENTS:
        codec.register(event_type, name=f"insurance.{event_type.__name__}")
    return codec


PUBLISHED_EVENTS: tuple[type[DomainEvent], ...] = (
    PolicyIssued,
    PolicyCancelled,
    ClaimFiled,
    ClaimApproved,
    ClaimDenied,
    PolicySuspended,
    PolicyReinstated,
    PolicyRenewed,
    PolicyExpired,
    PolicyCoverageEnded,
)


POLICY_CONSUMER = "insurance.policy"
"""The inbox name of the policy context's own consumer (its expiry timers)."""


def policy_inbox(
    engine: sa.Engine, clock: Clock = SYSTEM_CLOCK, bus: EventBus | None = None
) -> InboxConsumer[SqlAlchemyUnitOfWork]:
    """The policy context's consumer: a fired expiry timer expires its policy, once.

    Each message is handled in a unit of work together with an inbox record, so a
    redelivered timer message has no second effect (and :func:`expire_at_coverage_end`
    ignores a late one). The ``PolicyExpired`` it records goes to the outbox, and to
    ``bus`` after the commit if given.
    """
    codec = insurance_codec()
    inbox = InboxConsumer(
        lambda: SqlAlchemyUnitOfWork(engine, bus, codec=codec, mappers=[PolicyMapper()]),
        POLICY_CONSUMER,
        codec=codec,
    )
    inbox.subscribe(
        PolicyCoverageEnded, lambda event, uow: expire_at_coverage_end(event, uow, clock)
    )
    return inbox


class InboxDelivery:
    """A :class:`~tactical.outbox.Publisher` in place of a broker: the outbox, to one inbox.

    The relay hands it every unpublished outbox message; it passes those of
    ``event_types`` (type names, as a queue's routing keys would) to ``inbox``.
    """

    def __init__(
        self, inbox: InboxConsumer[SqlAlchemyUnitOfWork], event_types: Collection[str]
    ) -> None:
        self._inbox = inbox
        self._event_types = frozenset(event_types)

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Hand each message of the bound types to the inbox, in order."""
        for message in messages:
            if message.event_type in self._event_types:
                self._inbox.handle(message)


class DatabaseTimers:
    """Fires due timers into the outbox; with a relay, delivers them in process too."""

    def __init__(self, worker: TimerWorker, relay: OutboxRelay | None) -> None:
        self._worker = worker
        self._relay = relay

    def fire_due(self) -> int:
        """Fire every timer due by the worker's clock, then relay the outbox; how many fired."""
        fired = 0
        while (batch := self._worker.fire_due()) > 0:
            fired += batch
        if self._relay is not None:
            while self._relay.relay_once() > 0:
                pass
        return fired


def on_database(
    engine: sa.Engine, clock: Clock = SYSTEM_CLOCK, *, billing_in_process: bool = True
) -> Insurance:
    """Both contexts on ``engine`` (SQLite or PostgreSQL); creates missing tables.

    With ``billing_in_process=False`` the policy events reach billing only through the
    outbox, a broker and the billing worker (``python -m examples.insurance.worker``), and
    ``timers`` only fires due timers into the outbox: the relay worker publishes them and
    the policy worker expires the policies. Otherwise ``timers`` also relays the outbox
    in process, to :func:`policy_inbox`.
    """
    create_schema(engine)
    policy_metadata.create_all(engine, checkfirst=True)
    bus, codec = EventBus(), insurance_codec()
    billing = BillingService(SqlAlchemyUnitOfWork(engine, bus, codec=codec))
    relay: OutboxRelay | None = None
    if billing_in_process:
        PolicyEventsTranslator(billing).subscribe_to(bus)
        delivery = InboxDelivery(
            policy_inbox(engine, clock, bus), [codec.type_name(PolicyCoverageEnded)]
        )
        relay = OutboxRelay(engine, delivery)
    policies = PolicyService(
        SqlAlchemyUnitOfWork(engine, bus, codec=codec, mappers=[PolicyMapper()]), clock
    )
    timers = DatabaseTimers(TimerWorker(engine, clock=clock, codec=codec), relay)
    return Insurance(policies, SqlPolicyQueries(engine), billing, bus, timers)
