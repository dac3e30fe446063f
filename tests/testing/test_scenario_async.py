"""The scenario helper in async tests: it runs there, and refuses what would never be awaited."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tactical import (
    AggregateRoot,
    AsyncInMemoryUnitOfWork,
    AsyncUnitOfWork,
    DomainEvent,
    EventBus,
    InMemoryStore,
    InvalidStateError,
)
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, configure_engine, metadata
from tactical.testing import given

UnitOfWorkMaker = Callable[[EventBus], AsyncUnitOfWork]


@pytest.fixture(params=["memory", "aiosqlite"])
async def make_uow(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[UnitOfWorkMaker]:
    """Async units of work on one store: in memory, or an aiosqlite file database."""
    if request.param == "memory":
        store = InMemoryStore()
        yield lambda bus: AsyncInMemoryUnitOfWork(bus, store=store)
        return
    engine = configure_engine(create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db'}"))
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield lambda bus: AsyncSqlAlchemyUnitOfWork(engine, bus)
    await engine.dispose()


class Deposited(DomainEvent):
    account_id: UUID
    amount: int


class Account(AggregateRoot[UUID]):
    balance: int = 0
    frozen: bool = False

    def deposit(self, amount: int) -> None:
        if self.frozen:
            raise InvalidStateError(f"Account {self.id} is frozen")
        self.balance += amount
        self.record(Deposited(self.id, amount))

    def freeze(self) -> None:
        self.frozen = True


async def deposit_later(account: Account, amount: int = 5) -> None:
    """An async service: the slip is passing it where an aggregate command belongs."""
    account.deposit(amount)


async def open_account() -> Account:
    return Account(uuid4())


def closed(coroutine: Coroutine[Any, Any, Any]) -> bool:
    return inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


class Captured:
    """A command that calls the async service and keeps the coroutine it got back."""

    def __init__(self) -> None:
        self.coroutines: list[Coroutine[Any, Any, None]] = []

    def __call__(self, account: Account) -> Coroutine[Any, Any, None]:
        coroutine = deposit_later(account)
        self.coroutines.append(coroutine)
        return coroutine


class TestScenarioInAsyncTests:
    async def test_a_scenario_runs_inside_an_async_test(self) -> None:
        """given/when/then needs no await: it runs unchanged inside a running event loop."""
        account_id = uuid4()
        account = (
            given(Account(account_id)).when(lambda a: a.deposit(3)).then(Deposited(account_id, 3))
        )
        assert account.balance == 3

    async def test_an_aggregate_loaded_from_an_async_unit_of_work_is_tested_then_committed(
        self, make_uow: UnitOfWorkMaker
    ) -> None:
        """An aggregate awaited from an async repository is a scenario's start; its commit
        stores the change and publishes the event the scenario checked."""
        bus = EventBus()
        published: list[DomainEvent] = []
        bus.subscribe(Deposited, published.append)
        uow = make_uow(bus)
        account_id = uuid4()
        async with uow:
            uow.repository(Account).add(Account(account_id))
            await uow.commit()

        async with uow:
            loaded = await uow.repository(Account).require(account_id)
            given(loaded).when(lambda a: a.deposit(7)).then(Deposited(account_id, 7))
            await uow.commit()

        async with uow:
            stored = await uow.repository(Account).require(account_id)
        assert (stored.balance, stored.version) == (7, 2)
        assert [(type(e), e.account_id, e.amount) for e in published] == [
            (Deposited, account_id, 7)
        ]

    async def test_a_refusal_is_checked_on_an_aggregate_from_an_async_unit_of_work(
        self, make_uow: UnitOfWorkMaker
    ) -> None:
        """then_raises works on a loaded aggregate and leaves nothing for the commit to store."""
        uow = make_uow(EventBus())
        account_id = uuid4()
        async with uow:
            uow.repository(Account).add(Account(account_id, frozen=True))
            await uow.commit()

        async with uow:
            loaded = await uow.repository(Account).require(account_id)
            given(loaded).when(lambda a: a.deposit(1)).then_raises(
                InvalidStateError, match="frozen"
            )
            await uow.commit()

        async with uow:
            stored = await uow.repository(Account).require(account_id)
        assert (stored.balance, stored.version) == (0, 1)


class TestAwaitablesAreRefused:
    async def test_an_async_function_given_to_when_is_refused_at_once(self) -> None:
        """An async def command is a TypeError from when(), before any coroutine exists."""
        scenario = given(Account(uuid4()))
        with pytest.raises(TypeError, match=r"when: deposit_later is an async function"):
            scenario.when(deposit_later)

    async def test_a_partial_of_an_async_function_is_refused(self) -> None:
        """functools.partial does not hide an async function."""
        with pytest.raises(TypeError, match="is an async function"):
            given(Account(uuid4())).when(functools.partial(deposit_later, amount=2))

    async def test_a_coroutine_object_given_to_when_is_refused_and_closed(self) -> None:
        """Passing the result of calling an async function is refused; the coroutine is closed."""
        account = Account(uuid4())
        coroutine = deposit_later(account)
        with pytest.raises(TypeError, match="not a command"):
            given(account).when(coroutine)  # type: ignore[arg-type]
        assert closed(coroutine)

    async def test_a_command_returning_a_coroutine_fails_then_and_closes_it(self) -> None:
        """A command that returns an awaitable fails then() with a TypeError naming the slip,
        and the coroutine is closed, so no "never awaited" warning follows."""
        command = Captured()
        with pytest.raises(TypeError, match=r"returned a coroutine .*deposit_later.* instead of"):
            given(Account(uuid4())).when(command).then(Deposited)
        assert closed(command.coroutines[0])

    async def test_a_lambda_returning_a_coroutine_is_quoted_in_the_error(self) -> None:
        """The error quotes the lambda's source, where the missing await is."""
        with pytest.raises(TypeError, match=r"lambda a: deposit_later\(a\)"):
            given(Account(uuid4())).when(lambda a: deposit_later(a)).then_no_events()

    async def test_then_raises_type_error_does_not_accept_a_returned_coroutine(self) -> None:
        """A returned coroutine never counts as the expected error, even a TypeError."""
        command = Captured()
        with pytest.raises(TypeError, match="returned a coroutine"):
            given(Account(uuid4())).when(command).then_raises(TypeError)
        assert closed(command.coroutines[0])

    async def test_an_unawaited_repository_call_given_is_refused_and_closed(
        self, make_uow: UnitOfWorkMaker
    ) -> None:
        """given(uow.repository(A).require(id)) without await says to await it first."""
        uow = make_uow(EventBus())
        account_id = uuid4()
        async with uow:
            uow.repository(Account).add(Account(account_id))
            await uow.commit()
        async with uow:
            pending = uow.repository(Account).require(account_id)
            with pytest.raises(TypeError, match="await it first"):
                given(pending)  # type: ignore[arg-type]
            assert closed(pending)  # type: ignore[arg-type]

    async def test_an_async_factory_is_refused(self) -> None:
        """An async def factory would give a coroutine, not an aggregate."""
        with pytest.raises(TypeError, match="given: the factory: open_account is an async"):
            given(open_account)  # type: ignore[arg-type]

    async def test_an_async_history_command_is_refused(self) -> None:
        """History commands are aggregate commands too."""
        with pytest.raises(TypeError, match="given: history command 2: deposit_later is an"):
            given(Account(uuid4()), Account.freeze, deposit_later)

    async def test_a_history_command_returning_a_coroutine_is_refused_and_closed(self) -> None:
        """A history command that returns an awaitable is refused; the awaitable is closed."""
        command = Captured()
        with pytest.raises(TypeError, match=r"given: history command 1: .* returned a coroutine"):
            given(Account(uuid4()), command)
        assert closed(command.coroutines[0])

    def test_a_factory_returning_something_else_is_refused(self) -> None:
        """A factory must build an aggregate; the error names what it returned."""
        with pytest.raises(TypeError, match="returning int"):
            given(lambda: 42)  # type: ignore[arg-type,return-value]

    def test_neither_an_aggregate_nor_a_callable_is_refused(self) -> None:
        """given() names the type it got when it is neither an aggregate nor a factory."""
        with pytest.raises(TypeError, match="or a callable that builds one, got int"):
            given(42)  # type: ignore[arg-type]

    def test_refusals_also_hold_in_sync_tests(self) -> None:
        """Outside an event loop the same slip gets the same error."""
        with pytest.raises(TypeError, match="is an async function"):
            given(Account(uuid4())).when(deposit_later)
