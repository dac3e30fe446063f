"""The account of the benchmarks as an `eventsourcing` aggregate (imported only if installed)."""

from __future__ import annotations

from decimal import Decimal

from eventsourcing.domain import Aggregate, event


class EsAccount(Aggregate):
    @event("Opened")
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = Decimal(0)

    @event("Deposited")
    def deposit(self, amount: Decimal) -> None:
        self.balance += amount
