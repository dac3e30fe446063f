"""Sync views of async units of work, so that one contract suite tests both kinds.

The contract's tests are plain sync code (``with new() as uow: ...``). For an async unit
of work, ``new`` makes a :class:`SyncView` of it: each call runs the awaitable to
completion on the event loop of a private :class:`asyncio.Runner` (so the suite needs no
pytest plugin). A handler written as sync test code that uses units of work itself
(:meth:`AsyncDriver.handler`) becomes an ``async def`` handler: its body runs in a
worker thread, and each unit-of-work call it makes is sent back to the handler's own
task, which awaits it there, as an async handler would. The bus's dispatch (FIFO per
task), context variables and the database connections all see one task and one loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from tactical._bus import EventBus
from tactical._model import AggregateRoot
from tactical._query import Query
from tactical._repository import AsyncRepository, Repository
from tactical._uow_async import AsyncUnitOfWork

if TYPE_CHECKING:
    from tactical.testing._contract import UnitOfWorkFactory

__all__ = ["AsyncDriver", "AsyncUnitOfWorkFactory", "SyncView"]

A = TypeVar("A", bound=AggregateRoot[Any])
T = TypeVar("T")

# How long a handler's thread waits for its task to carry out one call: a bound, so that a
# broken test fails instead of hanging.
_CALL_TIMEOUT = 60.0


class AsyncUnitOfWorkFactory(Protocol):
    """Makes async units of work that share one store (or database); ``bus`` may be None.

    :class:`~tactical.testing.UnitOfWorkFactory` for
    :class:`~tactical.testing.AsyncUnitOfWorkContract`: a unit of work is anything that
    implements the :class:`~tactical.AsyncUnitOfWork` protocol.

    .. versionadded:: 0.2.0
    """

    def __call__(
        self, bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
    ) -> AsyncUnitOfWork: ...


class _Relay(threading.local):
    """Set in a handler's worker thread: sends a coroutine to the handler's task to await."""

    call: Callable[[Coroutine[Any, Any, Any]], Any] | None = None


class AsyncDriver:
    """Runs the calls of async units of work for sync test code; close it after the test."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._relay = _Relay()

    def run(self, awaitable: Coroutine[Any, Any, T]) -> T:
        """Await ``awaitable`` to completion and return its result (or raise its error)."""
        call = self._relay.call
        if call is not None:
            result: T = call(awaitable)
            return result
        return self._runner.run(awaitable)

    def factory(self, make: AsyncUnitOfWorkFactory) -> UnitOfWorkFactory:
        """A factory of sync views of the units of work ``make`` makes."""

        def new(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> SyncView:
            return SyncView(make(bus, allow_multiple_aggregates=allow_multiple_aggregates), self)

        return new

    def handler(self, body: Callable[[Any], object]) -> Callable[[Any], Coroutine[Any, Any, None]]:
        """An ``async def`` handler running sync ``body``, whose unit-of-work calls it awaits."""
        relay = self._relay

        async def handle(event: Any) -> None:
            loop = asyncio.get_running_loop()
            requests: asyncio.Queue[
                tuple[Coroutine[Any, Any, Any], concurrent.futures.Future[Any]] | None
            ] = asyncio.Queue()

            def call(coroutine: Coroutine[Any, Any, Any]) -> Any:
                reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
                loop.call_soon_threadsafe(requests.put_nowait, (coroutine, reply))
                return reply.result(timeout=_CALL_TIMEOUT)

            def work() -> None:
                relay.call = call
                try:
                    body(event)
                finally:
                    relay.call = None
                    loop.call_soon_threadsafe(requests.put_nowait, None)

            worker = asyncio.ensure_future(asyncio.to_thread(work))
            while (request := await requests.get()) is not None:
                coroutine, reply = request
                try:
                    reply.set_result(await coroutine)
                except BaseException as error:
                    reply.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
            await worker

        handle.__qualname__ = getattr(body, "__qualname__", repr(body))
        return handle

    def close(self) -> None:
        """Close the event loop."""
        self._runner.close()


class SyncView:
    """An async unit of work behind the sync :class:`~tactical.UnitOfWork` protocol."""

    def __init__(self, uow: AsyncUnitOfWork, driver: AsyncDriver) -> None:
        self.uow = uow
        self._driver = driver

    def __enter__(self) -> Self:
        self._driver.run(self.uow.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._driver.run(self.uow.__aexit__(exc_type, exc, traceback))

    def repository(self, aggregate_type: type[A]) -> Repository[A, Any]:
        return _SyncRepository(self.uow.repository(aggregate_type), self._driver)

    def commit(self) -> None:
        self._driver.run(self.uow.commit())

    def rollback(self) -> None:
        self._driver.run(self.uow.rollback())

    def __repr__(self) -> str:
        return f"<sync view of {self.uow!r}>"


class _SyncRepository(Repository[A, Any]):
    def __init__(self, repository: AsyncRepository[A, Any], driver: AsyncDriver) -> None:
        self._repository = repository
        self._driver = driver

    def get(self, aggregate_id: Any, /) -> A | None:
        return self._driver.run(self._repository.get(aggregate_id))

    def require(self, aggregate_id: Any, /) -> A:
        return self._driver.run(self._repository.require(aggregate_id))

    def find(self, query: Query[A], /) -> list[A]:
        return self._driver.run(self._repository.find(query))

    def find_one(self, query: Query[A], /) -> A | None:
        return self._driver.run(self._repository.find_one(query))

    def add(self, aggregate: A, /) -> None:
        self._repository.add(aggregate)

    def remove(self, aggregate: A, /) -> None:
        self._repository.remove(aggregate)
