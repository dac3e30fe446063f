"""The sync and the async outbox API behind one face, so that one test runs against both.

A test takes the ``side`` fixture and builds its relay and publishers through it. The sync
side hands out :class:`OutboxRelay` and the sync publishers as they are. The async side
runs an event loop in a thread of its own (a portal, as anyio calls it): the test's sync
code submits coroutines to it and waits for their result, so an :class:`AsyncOutboxRelay`
over an ``AsyncEngine`` on the same database (aiosqlite, psycopg's async mode or asyncpg),
and the async publishers, are driven by the very same test code, from any thread.

Publisher wrappers that tests need (recording what the relay handed over, crashing half
way) are written once as flows (:mod:`tactical._flow`) over the wrapped publisher. Inbox
handlers are written once too, as generators that yield what a unit of work's repository
returned (the sync side passes the value back, the async side awaits it): see
:data:`HandlerFlow`. The side's :meth:`~SyncSide.inbox` gives an :class:`InboxConsumer` or an
:class:`AsyncInboxConsumer` driven from sync code.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

import redis
import redis.asyncio as redis_async
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import sqlalchemy as sa
from tactical import EventBus
from tactical._flow import Flow, run, run_async
from tactical.outbox import (
    AsyncInboxConsumer,
    AsyncOutboxRelay,
    AsyncTimerWorker,
    InboxConsumer,
    OutboxMessage,
    OutboxRelay,
    Outcome,
    ParkedRow,
    ParkedTimer,
    TimerWorker,
)
from tactical.outbox.rabbitmq import AsyncRabbitMQConsumer, RabbitMQConsumer
from tactical.outbox.redis_streams import AsyncRedisStreamConsumer, RedisStreamConsumer
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork

T = TypeVar("T")

Behaviour = Callable[[Sequence[OutboxMessage]], Flow[Sequence[OutboxMessage], None]]
"""A publisher's behaviour as a flow: it yields the batches to pass on to the wrapped one."""


HandlerFlow = Callable[[Any, Any], Flow[Any, None]]
"""An inbox handler written once: ``yield uow.repository(A).get(id)`` gives the aggregate."""


def _given(value: T) -> T:
    return value


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def sync_handler(flow: HandlerFlow) -> Callable[[Any, Any], None]:
    """``flow`` as a sync handler (each yielded value is the result)."""

    def handler(event: Any, uow: Any) -> None:
        run(flow(event, uow), _given)

    return handler


def passing(messages: Sequence[OutboxMessage]) -> Flow[Sequence[OutboxMessage], None]:
    """Pass every batch on as it is."""
    yield messages


class _ReleaseFails(SqlAlchemyUnitOfWork):
    """A unit of work whose block raises after it ended normally (its work done)."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, traceback)
        if exc_type is None:
            raise ConnectionError("connection lost while it was released")


class _AsyncReleaseFails(AsyncSqlAlchemyUnitOfWork):
    """The async :class:`_ReleaseFails`."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, traceback)
        if exc_type is None:
            raise ConnectionError("connection lost while it was released")


class SyncSide:
    """The sync API: OutboxRelay and the sync publishers, called directly."""

    name = "sync"

    def __init__(self) -> None:
        self._closers: list[Callable[[], object]] = []

    def on_close(self, closer: Callable[[], object]) -> None:
        """Call ``closer()`` when the side closes."""
        self._closers.append(closer)

    def relay(self, engine: sa.Engine, publisher: Any, **options: Any) -> OutboxRelay:
        """An OutboxRelay on ``engine`` publishing through ``publisher``."""
        return OutboxRelay(engine, publisher, **options)

    def timer_worker(self, engine: sa.Engine, **options: Any) -> TimerWorker:
        """A TimerWorker on ``engine``."""
        return TimerWorker(engine, **options)

    def send(self, publisher: Any, messages: Sequence[OutboxMessage]) -> None:
        """``publisher.publish(messages)``."""
        publisher.publish(messages)

    def wrap(self, publisher: Any, behaviour: Behaviour = passing) -> Any:
        """A publisher that runs ``behaviour`` over ``publisher``."""
        return _SyncWrapped(publisher, behaviour)

    def call(self, value: T) -> T:
        """What a sync call returned, as it is."""
        return value

    def inbox(
        self,
        engine: sa.Engine,
        name: str = "mirror",
        bus: EventBus | None = None,
        *,
        release_fails: bool = False,
        **options: Any,
    ) -> InboxConsumer[SqlAlchemyUnitOfWork]:
        """An InboxConsumer on ``engine`` (its units of work publish on ``bus``).

        With ``release_fails``, every block of its units of work raises ``ConnectionError``
        after it has ended normally, as a connection lost while it is released would.
        """
        kind = _ReleaseFails if release_fails else SqlAlchemyUnitOfWork
        return InboxConsumer(lambda: kind(engine, bus), name, **options)

    def handler(self, flow: HandlerFlow) -> Callable[[Any, Any], None]:
        """``flow`` as a sync handler."""
        return sync_handler(flow)

    def rabbit_consumer(self, inbox: Any, url: str, **options: Any) -> RabbitMQConsumer:
        """A RabbitMQConsumer feeding ``inbox``."""
        return RabbitMQConsumer(inbox, url, **options)

    def redis_consumer(
        self, inbox: Any, client: redis.Redis, **options: Any
    ) -> RedisStreamConsumer:
        """A RedisStreamConsumer feeding ``inbox`` through ``client``."""
        return RedisStreamConsumer(inbox, client, **options)

    def close(self) -> None:
        """Run the closers (once)."""
        closers, self._closers = self._closers, []
        for closer in closers:
            closer()


class _SyncWrapped:
    def __init__(self, publisher: Any, behaviour: Behaviour) -> None:
        self.publisher, self.behaviour = publisher, behaviour

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        run(self.behaviour(messages), self.publisher.publish)


class _AsyncWrapped:
    def __init__(self, publisher: Any, behaviour: Behaviour) -> None:
        self.publisher, self.behaviour = publisher, behaviour

    async def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        async def send(batch: Sequence[OutboxMessage]) -> None:
            sent = self.publisher.publish(batch)
            if inspect.isawaitable(sent):  # an in-memory sync publisher is called as it is
                await sent

        await run_async(self.behaviour(messages), send)


class AsyncSide:
    """The async API, driven from sync test code through an event loop in its own thread.

    Args:
        postgres_driver: The async driver for PostgreSQL engines (``psycopg`` or
            ``asyncpg``); SQLite engines get aiosqlite.
    """

    def __init__(self, postgres_driver: str = "psycopg") -> None:
        self.name = "async" if postgres_driver == "psycopg" else postgres_driver
        self.postgres_driver = postgres_driver
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._engines: dict[str, AsyncEngine] = {}
        self._engines_lock = threading.Lock()
        self._closers: list[Callable[[], Coroutine[Any, Any, object]]] = []

    def call(self, awaitable: Coroutine[Any, Any, T]) -> T:
        """Run ``awaitable`` on the side's loop and return its result (from any thread)."""
        return asyncio.run_coroutine_threadsafe(awaitable, self.loop).result()

    def async_engine(self, engine: sa.Engine) -> AsyncEngine:
        """An AsyncEngine on ``engine``'s database (one per database, disposed at close)."""
        url = engine.url
        driver = "aiosqlite" if url.get_backend_name() == "sqlite" else self.postgres_driver
        async_url = url.set(drivername=f"{url.get_backend_name()}+{driver}")
        key = async_url.render_as_string(hide_password=False)
        with self._engines_lock:  # feeds in threads must not each make (and lose) one
            if key not in self._engines:
                self._engines[key] = self.call(_make_engine(async_url))
            return self._engines[key]

    def relay(self, engine: sa.Engine, publisher: Any, **options: Any) -> DrivenRelay:
        """An AsyncOutboxRelay on ``engine``'s database, driven on the side's loop."""
        if not inspect.iscoroutinefunction(publisher.publish):
            publisher = _AsyncWrapped(publisher, passing)
        return DrivenRelay(self, AsyncOutboxRelay(self.async_engine(engine), publisher, **options))

    def timer_worker(self, engine: sa.Engine, **options: Any) -> DrivenTimerWorker:
        """An AsyncTimerWorker on ``engine``'s database, driven on the side's loop."""
        return DrivenTimerWorker(self, AsyncTimerWorker(self.async_engine(engine), **options))

    def send(self, publisher: Any, messages: Sequence[OutboxMessage]) -> None:
        """``await publisher.publish(messages)`` on the side's loop."""
        self.call(publisher.publish(messages))

    def wrap(self, publisher: Any, behaviour: Behaviour = passing) -> Any:
        """An async publisher that runs ``behaviour`` over ``publisher``."""
        return _AsyncWrapped(publisher, behaviour)

    def inbox(
        self,
        engine: sa.Engine,
        name: str = "mirror",
        bus: EventBus | None = None,
        *,
        release_fails: bool = False,
        **options: Any,
    ) -> DrivenInbox:
        """An AsyncInboxConsumer on ``engine``'s database, driven on the side's loop (see
        :meth:`SyncSide.inbox` for ``release_fails``)."""
        database = self.async_engine(engine)
        kind = _AsyncReleaseFails if release_fails else AsyncSqlAlchemyUnitOfWork
        return DrivenInbox(self, AsyncInboxConsumer(lambda: kind(database, bus), name, **options))

    def handler(self, flow: HandlerFlow) -> Callable[[Any, Any], Coroutine[Any, Any, None]]:
        """``flow`` as an ``async def`` handler (each yielded awaitable is awaited)."""

        async def handler(event: Any, uow: Any) -> None:
            await run_async(flow(event, uow), _awaited)

        return handler

    def rabbit_consumer(self, inbox: DrivenInbox, url: str, **options: Any) -> DrivenConsumer:
        """An AsyncRabbitMQConsumer feeding ``inbox``, driven on the side's loop."""
        return DrivenConsumer(self, AsyncRabbitMQConsumer(inbox.inbox, url, **options))

    def redis_consumer(
        self, inbox: DrivenInbox, client: redis.Redis, **options: Any
    ) -> DrivenConsumer:
        """An AsyncRedisStreamConsumer feeding ``inbox`` through a client like ``client``.

        The ``redis.asyncio`` client has the sync one's address and timeouts, and as many
        retries; it is closed with the side.
        """
        settings = client.connection_pool.connection_kwargs
        known = ("host", "port", "socket_timeout", "socket_connect_timeout")
        retry: Any = settings.get("retry")
        retries = 3 if retry is None else retry._retries
        async_client = redis_async.Redis(
            **{k: settings[k] for k in known if k in settings},
            retry=AsyncRetry(NoBackoff(), retries),
        )
        self.on_close(async_client.aclose)
        return DrivenConsumer(self, AsyncRedisStreamConsumer(inbox.inbox, async_client, **options))

    def on_close(self, closer: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Await ``closer()`` on the loop when the side closes (before the engines go)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Run the closers, dispose of the engines, stop the loop (once)."""
        if self.loop.is_closed():
            return
        # Everything is closed even when something fails to close: a connection left open
        # (idle in a transaction, on PostgreSQL) would hold locks other tests wait for.
        closers, self._closers = self._closers, []
        failures: list[Exception] = []

        def attempt(close: Callable[[], Coroutine[Any, Any, object]]) -> None:
            try:
                self.call(close())
            except Exception as failure:
                failures.append(failure)

        for closer in closers:
            attempt(closer)
        for engine in self._engines.values():
            attempt(engine.dispose)
        # What is still running (a publisher's abandoned closes, a task a test left) is
        # cancelled and awaited, as asyncio.run does at its end: a task destroyed pending
        # leaves its coroutine unawaited for the garbage collector to report in some later test.
        attempt(_finish_tasks)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
        if failures:
            raise ExceptionGroup("closing the async side failed", failures)


async def _finish_tasks() -> None:
    """Cancel every other task of the running loop and wait (bounded) for them to end."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    await asyncio.get_running_loop().shutdown_asyncgens()


async def _make_engine(url: sa.URL) -> AsyncEngine:
    timeout = {"aiosqlite": {}, "psycopg": {"connect_timeout": 2}, "asyncpg": {"timeout": 2}}
    return create_async_engine(url, connect_args=timeout[url.get_driver_name()])


class DrivenRelay:
    """An AsyncOutboxRelay with the sync relay's methods, each run on the side's loop."""

    def __init__(self, side: AsyncSide, relay: AsyncOutboxRelay) -> None:
        self.side = side
        self.relay = relay

    @property
    def batch_size(self) -> int:
        return self.relay.batch_size

    @property
    def name(self) -> str | None:
        return self.relay.name

    @property
    def partitions(self) -> int | None:
        return self.relay.partitions

    @property
    def owned_partitions(self) -> frozenset[int]:
        return self.relay.owned_partitions

    def relay_once(self) -> int:
        return self.side.call(self.relay.relay_once())

    def parked(self, *, aggregate: tuple[str, str] | None = None) -> list[ParkedRow]:
        return self.side.call(self.relay.parked(aggregate=aggregate))

    def retry_parked(
        self, *, position: int | None = None, aggregate: tuple[str, str] | None = None
    ) -> int:
        return self.side.call(self.relay.retry_parked(position=position, aggregate=aggregate))

    def run(self, stop: threading.Event, **options: Any) -> None:
        """``await relay.run(...)`` until ``stop`` (a threading.Event) is set."""
        self.side.call(run_until(self.relay.run, stop, **options))


class DrivenTimerWorker:
    """An AsyncTimerWorker with the sync worker's methods, each run on the side's loop."""

    def __init__(self, side: AsyncSide, worker: AsyncTimerWorker) -> None:
        self.side = side
        self.worker = worker

    def fire_due(self) -> int:
        return self.side.call(self.worker.fire_due())

    def parked(self) -> list[ParkedTimer]:
        return self.side.call(self.worker.parked())

    def retry_parked(self, *, key: str | None = None) -> int:
        return self.side.call(self.worker.retry_parked(key=key))

    def run(self, stop: threading.Event, **options: Any) -> None:
        """``await worker.run(...)`` until ``stop`` (a threading.Event) is set."""
        self.side.call(run_until(self.worker.run, stop, **options))


async def run_until(
    run: Callable[..., Coroutine[Any, Any, None]], stop: threading.Event, **options: Any
) -> None:
    """``await run(an asyncio.Event, **options)``, setting the event once ``stop`` is set."""
    stopping = asyncio.Event()
    loop = asyncio.create_task(run(stopping, **options))
    while not stop.is_set() and not loop.done():
        await asyncio.sleep(0.01)
    stopping.set()
    await loop


class DrivenConsumer:
    """An async broker consumer with the sync one's methods, each run on the side's loop."""

    def __init__(self, side: AsyncSide, consumer: Any) -> None:
        self.side = side
        self.consumer = consumer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)  # queue, group

    def consume_available(self, **options: Any) -> int:
        return self.side.call(self.consumer.consume_available(**options))

    def run(self, stop: threading.Event, **options: Any) -> None:
        self.side.call(run_until(self.consumer.run, stop, **options))

    def close(self) -> None:
        self.side.call(self.consumer.close())


class DrivenInbox:
    """An AsyncInboxConsumer with the sync consumer's methods, each run on the side's loop."""

    def __init__(self, side: AsyncSide, inbox: AsyncInboxConsumer[Any]) -> None:
        self.side = side
        self.inbox = inbox

    @property
    def name(self) -> str:
        return self.inbox.name

    def subscribe(self, event_type: Any, handler: Any) -> None:
        self.inbox.subscribe(event_type, handler)

    def subscribe_process_manager(self, manager_type: Any, commands: Any) -> None:
        self.inbox.subscribe_process_manager(manager_type, commands)

    def handle(self, message: OutboxMessage) -> Outcome:
        return self.side.call(self.inbox.handle(message))

    def parked(self) -> list[tuple[OutboxMessage, str]]:
        return self.side.call(self.inbox.parked())

    def retry_parked(self) -> dict[Outcome, int]:
        return self.side.call(self.inbox.retry_parked())

    def purge_inbox(self, *older_than: Any) -> int:
        return self.side.call(self.inbox.purge_inbox(*older_than))


Side = SyncSide | AsyncSide
Inbox = InboxConsumer[Any] | DrivenInbox
Relay = OutboxRelay | DrivenRelay
Timers = TimerWorker | DrivenTimerWorker


def make_side(api: str) -> Side:
    """``sync``, ``async`` (psycopg's async mode on PostgreSQL) or ``asyncpg``."""
    if api == "sync":
        return SyncSide()
    return AsyncSide("psycopg" if api == "async" else api)
