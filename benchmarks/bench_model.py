"""Value objects and aggregates against hand-written classes with the same behaviour."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID, uuid4

from benchmarks._harness import Goal, Report, compare
from tactical import AggregateRoot, DomainEvent, InvariantViolation, ValueObject

ROUNDS = 200  # short calls: many short rounds, a steady median
GOAL = Goal(1.10)


class Money(ValueObject):
    amount: Decimal
    currency: str

    def validate(self) -> None:
        if self.amount < 0:
            raise InvariantViolation(f"Money amount {self.amount} is negative")
        if len(self.currency) != 3:
            raise InvariantViolation(f"Currency {self.currency!r} is not a 3-letter code")


@dataclass(frozen=True, slots=True)
class PlainMoney:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError(f"Money amount {self.amount} is negative")
        if len(self.currency) != 3:
            raise ValueError(f"Currency {self.currency!r} is not a 3-letter code")


class Deposited(DomainEvent):
    account_id: UUID
    amount: Decimal


class Account(AggregateRoot[UUID]):
    balance: Decimal = Decimal(0)

    def deposit(self, amount: Decimal) -> None:
        self.balance += amount
        self.record(Deposited(self.id, amount))


@dataclass(frozen=True, slots=True)
class PlainDeposited:
    account_id: UUID
    amount: Decimal
    event_id: UUID
    occurred_at: object


class PlainAccount:
    def __init__(self, account_id: UUID) -> None:
        self.id = account_id
        self.balance = Decimal(0)
        self.events: list[PlainDeposited] = []

    def deposit(self, amount: Decimal) -> None:
        from datetime import UTC, datetime

        self.balance += amount
        self.events.append(PlainDeposited(self.id, amount, uuid4(), datetime.now(UTC)))


def run(report: Report) -> None:
    """Run the model benchmarks into ``report``."""
    amount = Decimal("12.50")
    report.add(
        compare(
            "value object",
            "construct (with validation)",
            lambda: Money(amount, "USD"),
            lambda: PlainMoney(amount, "USD"),
            against="dataclass",
            goal=GOAL,
            rounds=ROUNDS,
        )
    )
    a, b = Money(amount, "USD"), Money(amount, "USD")
    pa, pb = PlainMoney(amount, "USD"), PlainMoney(amount, "USD")
    report.add(
        compare(
            "value object",
            "equality",
            lambda: a == b,
            lambda: pa == pb,
            against="dataclass",
            goal=GOAL,
            rounds=ROUNDS,
        )
    )
    report.add(
        compare(
            "value object",
            "hash",
            lambda: hash(a),
            lambda: hash(pa),
            against="dataclass",
            goal=GOAL,
            rounds=ROUNDS,
        )
    )
    report.add(
        compare(
            "value object",
            "replace (validated copy)",
            lambda: a.replace(currency="EUR"),
            lambda: dataclasses.replace(pa, currency="EUR"),
            against="dataclasses.replace",
            rounds=ROUNDS,
        )
    )

    account, plain = Account(uuid4()), PlainAccount(uuid4())
    calls = [0, 0]

    def command() -> None:
        account.deposit(amount)
        calls[0] += 1
        if calls[0] % 1000 == 0:
            account.clear_events()

    def plain_command() -> None:
        plain.deposit(amount)
        calls[1] += 1
        if calls[1] % 1000 == 0:
            plain.events.clear()

    report.add(
        compare(
            "aggregate",
            "command recording an event",
            command,
            plain_command,
            against="plain class",
            rounds=ROUNDS,
        )
    )
