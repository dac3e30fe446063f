"""EventBus: typed subscriptions, FIFO dispatch without recursion, failures never lost."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from tactical import DomainEvent, EventBus, EventHandlerError


class Happened(DomainEvent):
    what: str


class HappenedAgain(Happened):
    pass


class Other(DomainEvent):
    n: int


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


class TestFailingHandlers:
    def test_failure_is_raised_after_every_handler_ran(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing handler neither stops the others nor is lost: it is logged and raised."""
        bus, delivered = EventBus(), list[str]()

        def broken(event: Happened) -> None:
            raise RuntimeError(f"cannot handle {event.what}")

        bus.subscribe(Happened, broken)
        bus.subscribe(Happened, lambda e: delivered.append(e.what))
        with (
            caplog.at_level(logging.ERROR, logger="tactical.bus"),
            pytest.raises(EventHandlerError, match="2 event handler") as raised,
        ):
            bus.publish_all([Happened("a"), Happened("b")])
        assert delivered == ["a", "b"]
        errors = raised.value.exceptions
        assert [str(e) for e in errors] == ["cannot handle a", "cannot handle b"]
        assert "broken" in errors[0].__notes__[0]
        assert "Happened" in errors[0].__notes__[0]
        assert "committed" in str(raised.value)
        assert any("broken" in record.getMessage() for record in caplog.records)

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
