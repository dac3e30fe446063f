"""EventBus: typed subscriptions, FIFO dispatch without recursion, failures never lost."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import logging
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import pytest

from tactical import DomainEvent, EventBus, EventHandlerError, current_trace


class Happened(DomainEvent):
    what: str


class HappenedAgain(Happened):
    pass


class Other(DomainEvent):
    n: int


async def publish_all_by(path: str, bus: EventBus, events: list[DomainEvent]) -> None:
    """Publish through the sync or the async path (the same semantics, tested once)."""
    if path == "sync":
        bus.publish_all(events)
    else:
        await bus.publish_all_async(events)


class TestSubscriptions:
    def test_handlers_receive_their_type_in_subscription_order(self) -> None:
        """Several handlers of one type run in the order they subscribed."""
        bus, calls = EventBus(), list[str]()
        bus.subscribe(Happened, lambda e: calls.append(f"first {e.what}"))
        bus.subscribe(Happened, lambda e: calls.append(f"second {e.what}"))
        bus.subscribe(Other, lambda e: calls.append("other"))
        bus.publish(Happened("x"))
        assert calls == ["first x", "second x"]

    def test_base_class_subscriptions_receive_subclasses(self) -> None:
        """A handler of a base event type also gets its subclasses; not the other way round."""
        bus, base, sub = EventBus(), list[DomainEvent](), list[DomainEvent]()
        bus.subscribe(DomainEvent, base.append)
        bus.subscribe(HappenedAgain, sub.append)
        first, second = Happened("a"), HappenedAgain("b")
        bus.publish(first)
        bus.publish(second)
        assert base == [first, second]
        assert sub == [second]

    def test_late_subscribers_are_seen(self) -> None:
        """Subscribing after a publish of that type takes effect for the next publish."""
        bus, calls = EventBus(), list[str]()
        bus.publish(Happened("unheard"))
        bus.subscribe(Happened, lambda e: calls.append(e.what))
        bus.publish(Happened("heard"))
        assert calls == ["heard"]
        assert len(bus.handlers_for(Happened)) == 1

    def test_subscribe_refuses_non_event_types_and_non_callables(self) -> None:
        """Bad subscriptions fail when made, not when an event arrives."""
        bus = EventBus()
        not_an_event: Any = int
        with pytest.raises(TypeError, match="DomainEvent subclass"):
            bus.subscribe(not_an_event, print)
        not_callable: Any = 42
        with pytest.raises(TypeError, match="not callable: 42"):
            bus.subscribe(Happened, not_callable)


class TestDispatchOrder:
    def test_events_published_by_handlers_are_queued_fifo(self) -> None:
        """An event published inside a handler is delivered after the current event's handlers."""
        bus, log = EventBus(), list[str]()

        def cascade(event: Happened) -> None:
            log.append(f"A {event.what}")
            if event.what == "1":
                bus.publish(Happened("2"))
                bus.publish(Other(3))
                log.append("A done publishing")

        bus.subscribe(Happened, cascade)
        bus.subscribe(Happened, lambda e: log.append(f"B {e.what}"))
        bus.subscribe(Other, lambda e: log.append(f"other {e.n}"))
        bus.publish(Happened("1"))
        assert log == ["A 1", "A done publishing", "B 1", "A 2", "B 2", "other 3"]

    def test_long_chains_do_not_recurse(self) -> None:
        """A chain of 5,000 handler-published events runs in a loop, not on the stack."""
        bus, seen = EventBus(), list[int]()

        def next_link(event: Other) -> None:
            seen.append(event.n)
            if event.n < 5_000:
                bus.publish(Other(event.n + 1))

        bus.subscribe(Other, next_link)
        bus.publish(Other(1))
        assert seen == list(range(1, 5_001))

    def test_threads_dispatch_independently(self) -> None:
        """Events published on another thread are not queued behind this thread's dispatch."""
        bus, seen = EventBus(), list[str]()
        inner_done = threading.Event()

        def on_happened(event: Happened) -> None:
            def elsewhere() -> None:
                bus.publish(Other(1))
                inner_done.set()

            thread = threading.Thread(target=elsewhere)
            thread.start()
            thread.join()
            seen.append(f"happened, other delivered: {inner_done.is_set()}")

        bus.subscribe(Happened, on_happened)
        bus.subscribe(Other, lambda e: seen.append("other"))
        bus.publish(Happened("x"))
        assert seen == ["other", "happened, other delivered: True"]

    def test_each_bus_dispatches_its_own_queue(self) -> None:
        """A handler of one bus publishing on another has it delivered there and then."""
        first, second, log = EventBus(), EventBus(), list[str]()

        def on_first(event: Happened) -> None:
            log.append(f"first {event.what}")
            if event.what == "1":
                second.publish(Other(1))
                log.append("first done publishing")

        def on_second(event: Other) -> None:
            log.append("second")
            first.publish(Happened("2"))  # queued on the first bus, running below us

        first.subscribe(Happened, on_first)
        second.subscribe(Other, on_second)
        first.publish(Happened("1"))
        assert log == ["first 1", "second", "first done publishing", "first 2"]

    def test_an_event_loop_run_by_a_sync_handler_dispatches_its_own_events(self) -> None:
        """asyncio.run inside a sync handler: its async publish is delivered at once, not queued."""
        bus, log = EventBus(), list[str]()

        def run_loop(event: Happened) -> None:
            asyncio.run(bus.publish_async(Other(1)))
            log.append("handler resumed")

        bus.subscribe(Happened, run_loop)
        bus.subscribe(Other, lambda e: log.append("other delivered"))
        bus.publish(Happened("x"))
        assert log == ["other delivered", "handler resumed"]

    def test_the_sync_bus_never_imports_asyncio(self) -> None:
        """Publishing, also from handlers, in a program without asyncio keeps it out."""
        program = (
            "import sys\n"
            "from tactical import DomainEvent, EventBus\n"
            "class Ticked(DomainEvent):\n"
            "    n: int\n"
            "bus, seen = EventBus(), []\n"
            "bus.subscribe(Ticked, seen.append)\n"
            "bus.subscribe(Ticked, lambda e: bus.publish(Ticked(2)) if e.n == 1 else None)\n"
            "bus.publish(Ticked(1))\n"
            "print(len(seen), 'asyncio' in sys.modules)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
        )
        assert done.stdout.split() == ["2", "False"]


class TestFailingHandlers:
    @pytest.mark.parametrize("path", ["sync", "async"])
    async def test_failure_is_raised_after_every_handler_ran(
        self, path: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing handler neither stops the others nor is lost: it is logged once and raised."""
        bus, delivered = EventBus(), list[str]()

        def broken(event: Happened) -> None:
            raise RuntimeError(f"cannot handle {event.what}")

        async def broken_async(event: Happened) -> None:
            await asyncio.sleep(0)
            broken(event)

        bus.subscribe(Happened, broken if path == "sync" else broken_async)
        bus.subscribe(Happened, lambda e: delivered.append(e.what))
        with (
            caplog.at_level(logging.ERROR, logger="tactical.bus"),
            pytest.raises(EventHandlerError, match="2 event handler") as raised,
        ):
            await publish_all_by(path, bus, [Happened("a"), Happened("b")])
        assert delivered == ["a", "b"]
        errors = raised.value.exceptions
        assert [str(e) for e in errors] == ["cannot handle a", "cannot handle b"]
        assert "broken" in errors[0].__notes__[0]
        assert "Happened" in errors[0].__notes__[0]
        # A publish of its own committed nothing: the message must not say it did.
        assert "committed" not in str(raised.value)
        assert len([r for r in caplog.records if "broken" in r.getMessage()]) == 2

    def test_every_failure_of_a_dispatch_is_reported(self) -> None:
        """Failures of queued follow-up events are collected into the same error."""
        bus = EventBus()

        def fail(event: Other) -> None:
            if event.n < 3:
                bus.publish(Other(event.n + 1))
            raise ValueError(f"bad {event.n}")

        bus.subscribe(Other, fail)
        with pytest.raises(EventHandlerError) as raised:
            bus.publish(Other(1))
        assert [str(e) for e in raised.value.exceptions] == ["bad 1", "bad 2", "bad 3"]

    def test_the_bus_works_again_after_a_failure(self) -> None:
        """After a failed dispatch the next publish is delivered normally."""
        bus, seen = EventBus(), list[str]()

        def picky(event: Happened) -> None:
            if event.what == "bad":
                raise RuntimeError("bad")
            seen.append(event.what)

        bus.subscribe(Happened, picky)
        with pytest.raises(EventHandlerError):
            bus.publish(Happened("bad"))
        bus.publish(Happened("good"))
        assert seen == ["good"]


async def _yield_to_others() -> None:
    """Let every other ready task run (a handler awaiting real I/O would)."""
    for _ in range(3):
        await asyncio.sleep(0)


class TestAsyncHandlers:
    async def test_async_and_sync_handlers_run_in_subscription_order(self) -> None:
        """publish_async awaits each async handler before the next handler is called."""
        bus, log = EventBus(), list[str]()

        async def slow(event: Happened) -> None:
            log.append(f"slow starts {event.what}")
            await _yield_to_others()
            log.append(f"slow ends {event.what}")

        bus.subscribe(Happened, lambda e: log.append(f"sync {e.what}"))
        bus.subscribe(Happened, slow)
        bus.subscribe(Happened, lambda e: log.append(f"last {e.what}"))
        await bus.publish_all_async([Happened("a"), Happened("b")])
        assert log == [
            "sync a", "slow starts a", "slow ends a", "last a",
            "sync b", "slow starts b", "slow ends b", "last b",
        ]  # fmt: skip

    async def test_events_published_by_async_handlers_are_queued_fifo(self) -> None:
        """Events published inside an async handler, async or sync, wait for the current event."""
        bus, log = EventBus(), list[str]()

        async def cascade(event: Happened) -> None:
            log.append(f"A {event.what}")
            if event.what == "1":
                await bus.publish_async(Happened("2"))
                bus.publish(Other(3))
                log.append("A done publishing")

        async def on_other(event: Other) -> None:
            await _yield_to_others()
            log.append(f"other {event.n}")

        bus.subscribe(Happened, cascade)
        bus.subscribe(Happened, lambda e: log.append(f"B {e.what}"))
        bus.subscribe(Other, on_other)
        await bus.publish_async(Happened("1"))
        assert log == ["A 1", "A done publishing", "B 1", "A 2", "B 2", "other 3"]

    async def test_long_async_chains_do_not_recurse(self) -> None:
        """A chain of 5,000 events published by an async handler runs in a loop."""
        bus, seen = EventBus(), list[int]()

        async def next_link(event: Other) -> None:
            seen.append(event.n)
            if event.n < 5_000:
                await bus.publish_async(Other(event.n + 1))

        bus.subscribe(Other, next_link)
        await bus.publish_async(Other(1))
        assert seen == list(range(1, 5_001))

    async def test_a_sync_handler_returning_an_awaitable_is_awaited(self) -> None:
        """On the async path a plain function returning a coroutine has it awaited."""
        bus, seen = EventBus(), list[str]()

        async def record(event: Happened) -> None:
            seen.append(event.what)

        bus.subscribe(Happened, lambda e: record(e))
        await bus.publish_async(Happened("x"))
        assert seen == ["x"]

    async def test_correlation_ids_hold_across_awaits_in_a_handler(self) -> None:
        """An async handler sees its event's trace before and after it awaits."""
        bus, traces = EventBus(), list[Any]()

        async def look(event: Happened) -> None:
            traces.append(current_trace())
            await _yield_to_others()
            traces.append(current_trace())

        bus.subscribe(Happened, look)
        event = Happened("x")
        await bus.publish_async(event)
        assert [t.causation_id for t in traces] == [event.event_id, event.event_id]
        assert current_trace() is None


# Ways a handler starts work that runs with a copy of its context: a sync publish in a
# thread (asyncio.to_thread copies the context), an async publish in a new task.
ELSEWHERE: dict[str, Callable[[EventBus, DomainEvent], Awaitable[None]]] = {
    "a task": lambda bus, event: asyncio.create_task(bus.publish_async(event)),
    "a thread": lambda bus, event: asyncio.to_thread(bus.publish, event),
}


class TestAsyncDispatchPerTask:
    async def test_concurrent_tasks_each_dispatch_their_own_events(self) -> None:
        """Two tasks interleaving on one thread: each task's events are delivered in that task."""
        bus = EventBus()
        delivered: dict[str, list[tuple[int, asyncio.Task[Any] | None]]] = {"a": [], "b": []}

        async def chain(event: Happened) -> None:
            await _yield_to_others()
            step = len(delivered[event.what])
            delivered[event.what].append((step, asyncio.current_task()))
            if step < 4:
                await bus.publish_async(Happened(event.what))

        bus.subscribe(Happened, chain)

        async def publisher(what: str) -> asyncio.Task[Any] | None:
            await bus.publish_async(Happened(what))
            return asyncio.current_task()

        task_a, task_b = await asyncio.gather(publisher("a"), publisher("b"))
        assert task_a is not task_b
        assert delivered["a"] == [(step, task_a) for step in range(5)]
        assert delivered["b"] == [(step, task_b) for step in range(5)]

    @pytest.mark.parametrize("elsewhere", list(ELSEWHERE))
    async def test_work_started_by_a_handler_dispatches_its_own_events(
        self, elsewhere: str
    ) -> None:
        """A task or thread started by a handler inherits its context, not its queue."""
        bus, log = EventBus(), list[str]()

        async def start_elsewhere(event: Happened) -> None:
            await ELSEWHERE[elsewhere](bus, Other(1))
            log.append("handler resumed")

        bus.subscribe(Happened, start_elsewhere)
        bus.subscribe(Other, lambda e: log.append("other delivered"))
        await bus.publish_async(Happened("x"))
        assert log == ["other delivered", "handler resumed"]

    async def test_a_loop_callback_scheduled_by_a_handler_dispatches_its_own_events(
        self,
    ) -> None:
        """A callback (no task) gets the handler's context copied, but not its queue."""
        bus, log = EventBus(), list[str]()
        called_back = asyncio.Event()

        async def schedule(event: Happened) -> None:
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: (bus.publish(Other(1)), called_back.set()))
            await called_back.wait()
            log.append("handler resumed")

        bus.subscribe(Happened, schedule)
        bus.subscribe(Other, lambda e: log.append("other delivered"))
        await bus.publish_async(Happened("x"))
        assert log == ["other delivered", "handler resumed"]

    async def test_an_event_without_handlers_is_not_dispatched(self) -> None:
        """publish_async of an event nobody handles returns at once, delivering nothing."""
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(Happened, seen.append)
        await bus.publish_async(Other(1))
        assert seen == []

    async def test_cancellation_propagates_and_leaves_the_bus_usable(self) -> None:
        """Cancelling a task mid-handler stops its dispatch at once; the next publish works."""
        bus, log = EventBus(), list[str]()
        started = asyncio.Event()

        async def wait_forever(event: Happened) -> None:
            if event.what == "stuck":
                started.set()
                await asyncio.Event().wait()
            log.append(event.what)

        bus.subscribe(Happened, wait_forever)
        task = asyncio.create_task(bus.publish_all_async([Happened("stuck"), Happened("never")]))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await bus.publish_async(Happened("later"))
        assert log == ["later"]
        assert current_trace() is None


class _AsyncCallable:
    async def __call__(self, event: Happened) -> None:
        await asyncio.sleep(0)


class _Handlers:
    async def on_happened(self, event: Happened) -> None:
        await asyncio.sleep(0)


async def _async_function(event: Happened, suffix: str = "") -> None:
    await asyncio.sleep(0)


def _marked() -> Callable[[Happened], Any]:
    def handler(event: Happened) -> Coroutine[Any, Any, None]:
        return _async_function(event)

    return inspect.markcoroutinefunction(handler)  # Python 3.12+: only used there


ASYNC_HANDLERS: dict[str, Callable[[], Callable[[Happened], object]]] = {
    "async def": lambda: _async_function,
    "bound async method": lambda: _Handlers().on_happened,
    "object with async __call__": _AsyncCallable,
    "partial of async def": lambda: functools.partial(_async_function, suffix="!"),
    "partial of an async callable object": lambda: functools.partial(_AsyncCallable()),
}
if sys.version_info >= (3, 12):
    ASYNC_HANDLERS["inspect.markcoroutinefunction"] = _marked


class TestSyncPublishRefusesAsyncHandlers:
    @pytest.mark.parametrize("kind", list(ASYNC_HANDLERS))
    def test_async_handlers_are_recognised_at_subscribe(self, kind: str) -> None:
        """Every shape of async handler is known as async before any event is published."""
        bus = EventBus()
        bus.subscribe(Happened, ASYNC_HANDLERS[kind]())
        assert bus.has_async_handlers([HappenedAgain])
        assert not bus.has_async_handlers([Other])

    @pytest.mark.parametrize("kind", list(ASYNC_HANDLERS))
    def test_sync_publish_refuses_before_any_handler_runs(self, kind: str) -> None:
        """A sync publish reaching an async handler raises, and no handler of it has run."""
        bus, delivered = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, delivered.append)
        bus.subscribe(Happened, ASYNC_HANDLERS[kind]())
        with pytest.raises(
            TypeError, match=r"async handler .* for Happened cannot be run by a sync"
        ):
            bus.publish_all([Other(1), Happened("x")])
        assert delivered == []

    def test_require_sync_handlers_names_the_handler_and_the_event_type(self) -> None:
        """The check a sync unit of work makes before storing names what is wrong."""
        bus = EventBus()
        bus.subscribe(Other, print)
        bus.subscribe(Happened, _async_function)
        bus.require_sync_handlers([Other])
        with pytest.raises(TypeError, match="async handler _async_function for HappenedAgain"):
            bus.require_sync_handlers([Other, HappenedAgain])

    def test_a_sync_looking_handler_returning_a_coroutine_fails_and_it_is_closed(self) -> None:
        """The coroutine is closed (never a "never awaited" warning) and is that handler's failure."""
        bus, made, delivered = EventBus(), list[Coroutine[Any, Any, None]](), list[str]()

        def sneaky(event: Happened) -> Coroutine[Any, Any, None]:
            made.append(_async_function(event))
            return made[-1]

        bus.subscribe(Happened, sneaky)
        bus.subscribe(Happened, lambda e: delivered.append(e.what))
        with pytest.raises(EventHandlerError) as raised:
            bus.publish(Happened("x"))
        gc.collect()
        (error,) = raised.value.exceptions
        assert isinstance(error, TypeError)
        assert "returned an awaitable" in str(error)
        assert "sneaky" in error.__notes__[0]
        assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED
        assert delivered == ["x"]

    def test_a_sync_looking_handler_returning_any_awaitable_fails(self) -> None:
        """An awaitable that is not a coroutine (nothing to close) is refused the same way."""
        bus = EventBus()
        bus.subscribe(Happened, lambda e: _Awaitable())
        with pytest.raises(EventHandlerError) as raised:
            bus.publish(Happened("x"))
        assert "returned an awaitable (_Awaitable)" in str(raised.value.exceptions[0])

    def test_a_sync_handler_publishing_to_an_async_one_fails_in_the_sync_dispatch(self) -> None:
        """Inside a sync dispatch, a publish reaching an async handler is the publisher's failure."""
        bus, delivered = EventBus(), list[str]()
        bus.subscribe(Happened, lambda e: bus.publish(Other(1)))
        bus.subscribe(Happened, lambda e: delivered.append(e.what))
        bus.subscribe(Other, _async_other)
        with pytest.raises(EventHandlerError) as raised:
            bus.publish(Happened("x"))
        (error,) = raised.value.exceptions
        assert isinstance(error, TypeError)
        assert "_async_other for Other" in str(error)
        assert delivered == ["x"]

    async def test_a_sync_publish_inside_an_async_dispatch_is_awaited_there(self) -> None:
        """A sync handler run by publish_async may publish to async handlers: they are awaited."""
        bus, log = EventBus(), list[str]()

        async def on_other(event: Other) -> None:
            await asyncio.sleep(0)
            log.append(f"other {event.n}")

        bus.subscribe(Happened, lambda e: bus.publish(Other(1)))
        bus.subscribe(Other, on_other)
        await bus.publish_async(Happened("x"))
        assert log == ["other 1"]


class _Awaitable:
    def __await__(self) -> Generator[None, None, None]:
        yield


async def _async_other(event: Other) -> None:
    await asyncio.sleep(0)
