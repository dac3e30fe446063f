"""Given/when/then scenarios for process managers: events in; commands, events and timers out.

A scenario feeds its events to the manager through the very flow the handlers run
(:func:`tactical._process.applying`: start or advance, a remembered event applied no more,
a completed process ignoring everything), carried out in memory: no unit of work, no
database, no bus. What a handler would commit and dispatch is what :meth:`then` compares.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, cast

from tactical._commands import Command
from tactical._flow import run
from tactical._model import DomainEvent
from tactical._process import Add, Load, Op, ProcessManager, applying
from tactical._timers import Cancel, ScheduledMessage, discard_timer_requests, timer_writes_of
from tactical.testing._scenario import (
    GENERATED_FIELDS,
    first_mismatch,
    listing,
    message_difference,
    show,
)

__all__ = ["ProcessScenario", "given_process"]

M = TypeVar("M", bound=ProcessManager[Any])
E = TypeVar("E", bound=BaseException)

#: Generated fields a process scenario ignores unless asked to compare them.
PROCESS_GENERATED_FIELDS = GENERATED_FIELDS | {"command_id"}


def given_process(manager: type[M] | M, *history: DomainEvent) -> ProcessScenario[M]:
    """Start a scenario of one process from its manager type (or a manager) and past events.

    ``history`` are the events that already started and advanced the process, oldest
    first; each is applied as a handler would apply it, and must be (a history event that
    the manager ignores fails the scenario). What they recorded, asked for and scheduled
    is forgotten, as if committed and dispatched, so :meth:`ProcessScenario.then` sees
    only what the event under test does.

    Args:
        manager: The :class:`~tactical.ProcessManager` subclass (the first event of the
            history, or the event under test, must start it), or a manager to start
            from, as if it were stored.
        history: Events of this process already handled, oldest first.

    Returns:
        The scenario; call :meth:`ProcessScenario.when` on it next.

    Example::

        given_process(PickupDeadline, LabelPrinted(shipment_id, "DHL")).when(
            PickupDeadlinePassed(shipment_id)
        ).then(
            events=[PickupMissed(shipment_id, "DHL")],
            commands=[RaiseShipmentException(shipment_id, "DHL missed the pickup")],
            completed=True,
        )

    No unit of work, database or bus takes part, so it runs the same in a sync and an
    ``async def`` test (it is never awaited).

    Raises:
        TypeError: ``manager`` is neither a ProcessManager subclass nor an instance of one,
            or an event of ``history`` is not a DomainEvent or is one the manager does not
            handle.
        ValueError: The events are not all of one process (their keys differ).
        AssertionError: A history event was not applied (it does not start a process that
            was not started, the process was completed, or it was handled already) or
            raised; the message says which and why.

    .. versionadded:: 0.2.0
    """
    return ProcessScenario(manager, history)


class ProcessScenario(Generic[M]):
    """A given/when/then test of one process manager, built by :func:`given_process`.

    Call :meth:`when` with the event under test, then exactly one of :meth:`then`,
    :meth:`then_ignored` or :meth:`then_raises`. ``manager`` is the manager as the
    history left it (None while no event has started it), then as the event left it.

    .. versionadded:: 0.2.0
    """

    def __init__(self, manager: type[M] | M, history: Sequence[DomainEvent] = ()) -> None:
        self.manager: M | None
        candidate: object = manager
        if isinstance(candidate, type) and issubclass(candidate, ProcessManager):  # pyright: ignore[reportUnnecessaryIsInstance]
            self._type = cast("type[M]", candidate)
            self.manager = None
        elif isinstance(candidate, ProcessManager):  # pyright: ignore[reportUnnecessaryIsInstance]
            self.manager = cast("M", candidate)
            self._type = type(self.manager)
        else:
            raise TypeError(
                f"given_process: expected a ProcessManager subclass or a manager, got {candidate!r}"
            )
        for number, event in enumerate(history, start=1):
            where = f"given: event {number}"
            self._check(event, where)
            try:
                applied = self._apply(event)
            except Exception as error:
                raise AssertionError(
                    f"{where} ({show(event)}) raised {type(error).__name__}: {error}"
                ) from error
            if not applied:
                raise AssertionError(
                    f"{where} ({show(event)}) was not applied: {self._why_ignored(event)}"
                )
        if self.manager is not None:
            # Committed and dispatched: what the event under test does starts afresh.
            self.manager.clear_events()
            discard_timer_requests(self.manager)
            self.manager.pull_commands()
        self._event: DomainEvent | None = None

    def when(self, event: DomainEvent) -> ProcessScenario[M]:
        """Set the event under test: it reaches the manager as a handler would bring it.

        Returns:
            The scenario itself, to call ``then...`` on.

        Raises:
            RuntimeError: :meth:`when` was already called on this scenario.
            TypeError: ``event`` is not a DomainEvent, or one the manager does not handle.
            ValueError: ``event`` belongs to another process than the history's.
        """
        if self._event is not None:
            raise RuntimeError("when() was already called on this scenario")
        self._check(event, "when")
        self._event = event
        return self

    def then(
        self,
        *,
        events: Sequence[DomainEvent | type[DomainEvent]] = (),
        commands: Sequence[Command[Any] | type[Command[Any]]] = (),
        scheduled: Sequence[ScheduledMessage] = (),
        cancelled: Sequence[str] = (),
        completed: bool = False,
        compare: Sequence[str] = (),
    ) -> M:
        """Apply the event and assert exactly what it did: nothing unnamed is expected.

        An expected event or command instance matches an actual one of the same type whose
        fields are equal, ignoring ``event_id``, ``occurred_at`` and ``command_id`` unless
        named in ``compare``; an expected *class* matches any of that type. A timer matches
        on its key and due time, and its message as an event does. Timers are compared as
        the commit would write them: one per key, the last request winning.

        Args:
            events: The events the manager must record, oldest first.
            commands: The commands it must ask to be dispatched, in order.
            scheduled: The timers it must schedule, in the order requested.
            cancelled: The keys of the timers it must cancel, in the order requested.
            completed: Whether the process must be completed afterwards.
            compare: Generated fields (``"event_id"``, ``"occurred_at"``,
                ``"command_id"``) to compare too.

        Returns:
            The manager after the event, for further assertions.

        Raises:
            AssertionError: The event was ignored or raised, or what it did differs; the
                message shows expected and actual side by side for each difference.
            ValueError: ``compare`` names another field.
            TypeError: ``cancelled`` is a string rather than a list of keys.
            RuntimeError: :meth:`when` was not called first.
        """
        unknown = set(compare) - PROCESS_GENERATED_FIELDS
        if unknown:
            raise ValueError(
                f"compare takes {sorted(PROCESS_GENERATED_FIELDS)}, got {sorted(unknown)}; "
                "the other fields are always compared"
            )
        if isinstance(cancelled, str):
            raise TypeError(
                f"cancelled takes a list of timer keys, got the string {cancelled!r}: "
                f"write cancelled=[{cancelled!r}]"
            )
        ignored = PROCESS_GENERATED_FIELDS - set(compare)
        event = self._require_event()
        expected = _Outcome(tuple(events), tuple(commands), tuple(scheduled), tuple(cancelled))
        try:
            applied = self._apply(event)
        except Exception as error:
            raise AssertionError(
                f"when: {show(event)} raised {type(error).__name__}: {error}\n"
                f"expected:\n{expected.show(completed)}"
            ) from error
        if not applied:
            raise AssertionError(
                f"when: {show(event)} was ignored: {self._why_ignored(event)}\n"
                f"expected:\n{expected.show(completed)}"
            )
        manager = self._require_manager()
        actual = _Outcome.of(manager)
        failures = expected.differences(actual, ignored)
        if manager.completed != completed:
            failures.append(
                f"completed: expected {completed}, got {manager.completed}"
                + ("" if completed else " (pass completed=True if the event ends the process)")
            )
        if failures:
            raise AssertionError(
                f"when: {show(event)}\n"
                + "\n".join(failures)
                + f"\nexpected:\n{expected.show(completed)}\n"
                f"actual:\n{actual.show(manager.completed)}"
            )
        return manager

    def then_ignored(self) -> M | None:
        """Apply the event and assert the manager ignored it.

        Ignored: it does not start a process and none was started, the process is
        completed, or the manager handled this very event (by its id) already.

        Returns:
            The manager, unchanged (None when no process was started).

        Raises:
            AssertionError: The event was applied (the message shows what it did) or raised.
            RuntimeError: :meth:`when` was not called first.
        """
        event = self._require_event()
        try:
            applied = self._apply(event)
        except Exception as error:
            raise AssertionError(
                f"when: {show(event)} raised {type(error).__name__}: {error}; "
                "expected it to be ignored"
            ) from error
        if applied:
            manager = self._require_manager()
            raise AssertionError(
                f"when: {show(event)} was applied; expected it to be ignored. It did:\n"
                f"{_Outcome.of(manager).show(manager.completed)}"
            )
        return self.manager

    def then_raises(self, error: type[E], match: str | None = None) -> E:
        """Apply the event and assert the manager's method raised ``error``.

        A handler's unit of work rolls back what such a method changed, and dispatches
        nothing.

        Args:
            error: The exception type expected (a subclass matches).
            match: A regular expression that must be found (``re.search``) in ``str(error)``.

        Returns:
            The exception raised, for further assertions.

        Raises:
            AssertionError: Nothing was raised, another type was, or the message does not
                match.
            RuntimeError: :meth:`when` was not called first.
        """
        event = self._require_event()
        try:
            applied = self._apply(event)
        except error as raised:
            if match is not None and not re.search(match, str(raised)):
                raise AssertionError(
                    f"when: {show(event)} raised {type(raised).__name__} as expected, but "
                    f"its message {str(raised)!r} does not match {match!r}"
                ) from raised
            return raised
        except Exception as other:
            raise AssertionError(
                f"when: {show(event)} raised {type(other).__name__}: {other}; "
                f"expected {error.__name__}"
            ) from other
        if not applied:
            raise AssertionError(
                f"when: {show(event)} did not raise; expected {error.__name__}. It was "
                f"ignored: {self._why_ignored(event)}"
            )
        manager = self._require_manager()
        raise AssertionError(
            f"when: {show(event)} did not raise; expected {error.__name__}. It did:\n"
            f"{_Outcome.of(manager).show(manager.completed)}"
        )

    # -- running ---------------------------------------------------------------------------

    def _check(self, event: object, where: str) -> None:
        """Refuse what a handler would never bring to this manager, before running anything."""
        if not isinstance(event, DomainEvent):
            raise TypeError(f"{where}: expected a DomainEvent, got {event!r}")
        try:
            key = self._type.correlation_key(event)
        except TypeError as unhandled:  # not one of the manager's event types
            raise TypeError(f"{where}: {unhandled}") from None
        if self.manager is not None and key != self.manager.id:
            raise ValueError(
                f"{where}: {show(event)} belongs to process {key!r}, not to "
                f"{self._type.__qualname__} {self.manager.id!r}: a scenario follows one process"
            )

    def _apply(self, event: DomainEvent) -> bool:
        """Feed ``event`` through the handlers' flow, in memory; whether it was applied."""

        def perform(op: Op) -> object:
            if isinstance(op, Load):
                return self.manager
            if isinstance(op, Add):
                self.manager = op.manager
            return None

        return run(applying(self._type, event), perform) is not None

    def _why_ignored(self, event: DomainEvent) -> str:
        name = self._type.__qualname__
        if self.manager is None:
            return (
                f"it does not start {name}, and no process was started (start it with an "
                "earlier event of the given history)"
            )
        if self.manager.completed:
            return f"the {name} process was completed, and ignores every further event"
        return f"{name} handled this very event (event_id {event.event_id}) already"

    def _require_event(self) -> DomainEvent:
        if self._event is None:
            raise RuntimeError("call when(event) before then()")
        return self._event

    def _require_manager(self) -> M:
        assert self.manager is not None  # an applied event started or advanced it
        return self.manager


class _Outcome:
    """What handling one event did, or what a test expects it to do."""

    def __init__(
        self,
        events: tuple[DomainEvent | type[DomainEvent], ...],
        commands: tuple[Command[Any] | type[Command[Any]], ...],
        scheduled: tuple[ScheduledMessage, ...],
        cancelled: tuple[str, ...],
    ) -> None:
        self.events = events
        self.commands = commands
        self.scheduled = scheduled
        self.cancelled = cancelled

    @classmethod
    def of(cls, manager: ProcessManager[Any]) -> _Outcome:
        writes = timer_writes_of(manager)
        return cls(
            manager.pending_events,
            manager.pending_commands,
            tuple(w for w in writes if isinstance(w, ScheduledMessage)),
            tuple(w.key for w in writes if isinstance(w, Cancel)),
        )

    def differences(self, actual: _Outcome, ignored: frozenset[str]) -> list[str]:
        found = [
            first_mismatch(self.events, actual.events, ignored, "event"),
            first_mismatch(self.commands, actual.commands, ignored, "command"),
            _timer_mismatch(self.scheduled, actual.scheduled, ignored),
            None
            if list(self.cancelled) == list(actual.cancelled)
            else (
                f"cancelled timers: expected {list(self.cancelled)!r}, "
                f"got {list(actual.cancelled)!r}"
            ),
        ]
        return [difference for difference in found if difference is not None]

    def show(self, completed: bool) -> str:
        return (
            f" events:\n{listing(self.events)}\n"
            f" commands:\n{listing(self.commands)}\n"
            f" scheduled:\n{_timers(self.scheduled)}\n"
            f" cancelled: {list(self.cancelled)!r}\n"
            f" completed: {completed}"
        )


def _timer_mismatch(
    expected: Sequence[ScheduledMessage],
    actual: Sequence[ScheduledMessage],
    ignored: frozenset[str],
) -> str | None:
    for index, (want, got) in enumerate(zip(expected, actual, strict=False), start=1):
        where = f"scheduled timer {index} ({want.key!r})"
        if want.key != got.key:
            return f"scheduled timer {index}: expected key {want.key!r}, got {got.key!r}"
        if want.due_at != got.due_at:
            return (
                f"{where}: expected due at {want.due_at.isoformat()}, got {got.due_at.isoformat()}"
            )
        difference = message_difference(want.message, got.message, ignored)
        if difference is not None:
            return f"{where}: its message{difference}"
    if len(expected) != len(actual):
        return f"expected {len(expected)} scheduled timer(s), got {len(actual)}"
    return None


def _timers(timers: Sequence[ScheduledMessage]) -> str:
    if not timers:
        return "  (none)"
    return "\n".join(
        f"  {index}. {t.key!r} at {t.due_at.isoformat()}: {show(t.message)}"
        for index, t in enumerate(timers, start=1)
    )
