"""Given/when/then scenarios for aggregates: commands in, events or an error out."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from tactical._model import AggregateRoot, DomainEvent
from tactical._structural import structural_state

__all__ = ["Scenario", "given"]

A = TypeVar("A", bound=AggregateRoot[Any])
E = TypeVar("E", bound=BaseException)

#: Fields every event has that a scenario ignores unless asked to compare them.
GENERATED_FIELDS = frozenset({"event_id", "occurred_at"})


def given(aggregate: A | Callable[[], A], *history: Callable[[A], object]) -> Scenario[A]:
    """Start a scenario from an aggregate, or a factory that builds one, and earlier commands.

    ``history`` are commands run to reach the starting state (``lambda p: p.activate()``);
    the events they and the factory record are cleared, so :meth:`Scenario.then` sees only
    what the command under test records.

    Args:
        aggregate: The aggregate to start from, or a callable that builds it.
        history: Commands run on it, in order, before the command under test.

    Returns:
        The scenario; call :meth:`Scenario.when` on it next.

    Example::

        given(draft_policy, lambda p: p.activate()).when(
            lambda p: p.file_claim(claim_id, Money(Decimal("500"), "USD"), "Water damage")
        ).then(ClaimFiled(claim_id, policy_id, Money(Decimal("500"), "USD"), "Water damage"))

    Raises:
        AssertionError: A history command raised; the message names it.

    .. versionadded:: 0.1.0
    """
    return Scenario(aggregate, history)


class Scenario(Generic[A]):
    """A given/when/then test of one aggregate, built by :func:`given`.

    Call :meth:`when` with the command under test, then exactly one of :meth:`then`,
    :meth:`then_no_events` or :meth:`then_raises`. Each returns something to assert on
    further (the aggregate, or the error).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, aggregate: A | Callable[[], A], history: Sequence[Callable[[A], object]] = ()
    ) -> None:
        # pyright narrows an instance check on `A | Callable[[], A]` to a partly unknown
        # type (an aggregate class may be callable); mypy narrows it to A.
        built: A = (
            cast("A", aggregate)  # type: ignore[redundant-cast]
            if isinstance(aggregate, AggregateRoot)
            else aggregate()
        )
        for number, command in enumerate(history, start=1):
            try:
                command(built)
            except Exception as error:
                raise AssertionError(
                    f"given: history command {number} ({_describe(command)}) raised "
                    f"{type(error).__name__}: {error}"
                ) from error
        built.clear_events()
        self.aggregate: A = built
        self._command: Callable[[A], object] | None = None

    def when(self, command: Callable[[A], object]) -> Scenario[A]:
        """Set the command under test: a callable that takes the aggregate.

        Returns:
            The scenario itself, to call ``then...`` on.

        Raises:
            RuntimeError: :meth:`when` was already called on this scenario.
        """
        if self._command is not None:
            raise RuntimeError("when() was already called on this scenario")
        self._command = command
        return self

    def then(
        self,
        *expected: DomainEvent | type[DomainEvent],
        compare: Sequence[str] = (),
        require_events_for_changes: bool = False,
    ) -> A:
        """Run the command and assert it recorded exactly ``expected``, in order.

        An expected event instance matches an actual one of the same type whose fields are
        equal, ignoring ``event_id`` and ``occurred_at`` unless named in ``compare``; an
        expected event *class* matches any event of that type.

        Args:
            expected: The events the command must record, oldest first.
            compare: Generated fields (``"event_id"``, ``"occurred_at"``) to compare too.
            require_events_for_changes: Also fail when the command changes the aggregate's
                state but records no event (pass ``then()`` with no events to check that a
                command is a no-op).

        Returns:
            The aggregate after the command, for further assertions.

        Raises:
            AssertionError: The command raised, or the events differ; the message shows
                expected and actual events side by side.
            ValueError: ``compare`` names a field other than ``event_id`` and ``occurred_at``.
            RuntimeError: :meth:`when` was not called first.
        """
        unknown = set(compare) - GENERATED_FIELDS
        if unknown:
            raise ValueError(
                f"compare takes {sorted(GENERATED_FIELDS)}, got {sorted(unknown)}; "
                "the other fields are always compared"
            )
        ignored = GENERATED_FIELDS - set(compare)
        before = structural_state(_without_version(self.aggregate))
        try:
            self._run()
        except Exception as error:
            raise AssertionError(
                f"when: {_describe(self._require_command())} raised "
                f"{type(error).__name__}: {error}\nexpected events:\n{_listing(expected)}"
            ) from error
        actual = self.aggregate.pending_events
        mismatch = _first_mismatch(expected, actual, ignored)
        if mismatch is not None:
            raise AssertionError(
                f"{mismatch}\nexpected events:\n{_listing(expected)}\n"
                f"actual events:\n{_listing(actual)}"
            )
        if (
            require_events_for_changes
            and not actual
            and structural_state(_without_version(self.aggregate)) != before
        ):
            raise AssertionError(
                f"when: {_describe(self._require_command())} changed the aggregate's state "
                "but recorded no event"
            )
        return self.aggregate

    def then_no_events(self) -> A:
        """Run the command and assert it recorded no event and left the state unchanged.

        Returns:
            The aggregate after the command, for further assertions.

        Raises:
            AssertionError: The command raised, recorded events or changed the state.
            RuntimeError: :meth:`when` was not called first.
        """
        return self.then(require_events_for_changes=True)

    def then_raises(self, error: type[E], match: str | None = None) -> E:
        """Run the command and assert it raised ``error`` and changed nothing.

        Args:
            error: The exception type expected (a subclass matches).
            match: A regular expression that must be found (``re.search``) in ``str(error)``.

        Returns:
            The exception raised, for further assertions.

        Raises:
            AssertionError: Nothing was raised, another type was, the message does not match,
                or the failing command recorded events or changed state anyway.
            RuntimeError: :meth:`when` was not called first.
        """
        before = structural_state(self.aggregate)
        command = _describe(self._require_command())
        try:
            self._run()
        except error as raised:
            if match is not None and not re.search(match, str(raised)):
                raise AssertionError(
                    f"when: {command} raised {type(raised).__name__} as expected, but its "
                    f"message {str(raised)!r} does not match {match!r}"
                ) from raised
            if self.aggregate.pending_events:
                raise AssertionError(
                    f"when: {command} raised {type(raised).__name__} but recorded events "
                    f"first:\n{_listing(self.aggregate.pending_events)}"
                ) from raised
            if structural_state(self.aggregate) != before:
                raise AssertionError(
                    f"when: {command} raised {type(raised).__name__} but changed the "
                    "aggregate first: a refused command must leave it as it was"
                ) from raised
            return raised
        except Exception as other:
            raise AssertionError(
                f"when: {command} raised {type(other).__name__}: {other}; expected {error.__name__}"
            ) from other
        raise AssertionError(
            f"when: {command} did not raise; expected {error.__name__}. It recorded:\n"
            f"{_listing(self.aggregate.pending_events)}"
        )

    def _require_command(self) -> Callable[[A], object]:
        if self._command is None:
            raise RuntimeError("call when(command) before then()")
        return self._command

    def _run(self) -> None:
        self._require_command()(self.aggregate)


def _without_version(aggregate: AggregateRoot[Any]) -> object:
    # Commands never change the version; persistence does. Compare the rest.
    return tuple(
        getattr(aggregate, f.name) for f in dataclasses.fields(aggregate) if f.name != "version"
    )


def _fields(event: DomainEvent, ignored: frozenset[str]) -> dict[str, object]:
    return {
        f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name not in ignored
    }


def _first_mismatch(
    expected: Sequence[DomainEvent | type[DomainEvent]],
    actual: Sequence[DomainEvent],
    ignored: frozenset[str],
) -> str | None:
    for index, (want, got) in enumerate(zip(expected, actual, strict=False), start=1):
        want_type = want if isinstance(want, type) else type(want)
        if type(got) is not want_type:
            return f"event {index}: expected {want_type.__qualname__}, got {type(got).__qualname__}"
        if isinstance(want, type):
            continue
        wanted, found = _fields(want, ignored), _fields(got, ignored)
        differences = [
            f"{name}: expected {wanted[name]!r}, got {found[name]!r}"
            for name in wanted
            if wanted[name] != found[name]
        ]
        if differences:
            return f"event {index} ({want_type.__qualname__}) differs in " + "; ".join(differences)
    if len(expected) != len(actual):
        return f"expected {len(expected)} event(s), got {len(actual)}"
    return None


def _listing(events: Sequence[DomainEvent | type[DomainEvent]]) -> str:
    if not events:
        return "  (none)"
    return "\n".join(f"  {index}. {_show(event)}" for index, event in enumerate(events, start=1))


def _show(event: DomainEvent | type[DomainEvent]) -> str:
    if isinstance(event, type):
        return f"{event.__qualname__}(...)"
    shown = ", ".join(
        f"{name}={value!r}" for name, value in _fields(event, GENERATED_FIELDS).items()
    )
    return f"{type(event).__qualname__}({shown})"


def _describe(command: Callable[..., object]) -> str:
    name = getattr(command, "__qualname__", None) or repr(command)
    if not name.endswith("<lambda>"):
        return name
    try:
        line = inspect.getsource(command).strip()
    except (OSError, TypeError):
        return "a lambda"
    return repr(line if len(line) <= 100 else line[:97] + "...")
