"""The in-memory unit of work against a hand-written dict-based repository (goal: <= 5x).

Workload, one call: load one account, deposit (recording an event), commit with a version
check, publish the event to one subscriber. The baseline keeps ``(version, fields)`` rows in
a dict and rebuilds a plain object on load, so callers get copies, as the unit of work's do.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from benchmarks._domain import Account, Deposited, PlainAccount, PlainDeposited
from benchmarks._harness import Goal, Report, compare
from tactical import EventBus, InMemoryStore, InMemoryUnitOfWork


class DictRepository:
    """Rows of (version, state) in a dict; objects rebuilt on load, so callers get copies."""

    def __init__(self) -> None:
        self.rows: dict[UUID, tuple[int, dict[str, Any]]] = {}
        self.handlers: list[Callable[[PlainDeposited], object]] = []

    def load(self, account_id: UUID) -> PlainAccount:
        version, state = self.rows[account_id]
        return PlainAccount(account_id, state["owner"], state["balance"], version)

    def commit(self, account: PlainAccount) -> None:
        stored, _ = self.rows[account.id]
        if stored != account.version:
            raise RuntimeError(f"account {account.id} changed: version {stored}")
        account.version += 1
        self.rows[account.id] = (
            account.version,
            {"owner": account.owner, "balance": account.balance},
        )
        events, account.events = account.events, []
        for event in events:
            for handler in self.handlers:
                handler(event)


def run(report: Report) -> None:
    """Run the in-memory unit of work benchmark into ``report``."""
    amount = Decimal("1.25")
    seen = [0, 0]

    bus = EventBus()
    bus.subscribe(Deposited, lambda _: seen.__setitem__(0, seen[0] + 1))
    store = InMemoryStore()
    uow = InMemoryUnitOfWork(bus, store=store)
    account_id = uuid4()
    with uow:
        uow.repository(Account).add(Account(account_id, "ada"))
        uow.commit()

    def tactical_call() -> None:
        with uow:
            uow.repository(Account).require(account_id).deposit(amount)
            uow.commit()

    plain = DictRepository()
    plain.handlers.append(lambda _: seen.__setitem__(1, seen[1] + 1))
    plain_id = uuid4()
    plain.rows[plain_id] = (1, {"owner": "ada", "balance": Decimal(0)})

    def plain_call() -> None:
        account = plain.load(plain_id)
        account.deposit(amount)
        plain.commit(account)

    report.add(
        compare(
            "in-memory uow",
            "load + command (1 event) + commit",
            tactical_call,
            plain_call,
            against="dict repository",
            goal=Goal(5.0),
            rounds=200,
            seconds=1.0,
        )
    )
    if seen[0] == 0 or seen[1] == 0:
        raise RuntimeError("a unit of work benchmark published no event")
