"""Given/when/then scenarios for aggregates: commands in, events or an error out."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from tactical._asyncness import discard_awaitable, is_async_callable
from tactical._model import AggregateRoot, DomainEvent
from tactical._structural import structural_state

__all__ = ["Scenario", "given"]

A = TypeVar("A", bound=AggregateRoot[Any])
E = TypeVar("E", bound=BaseException)

#: Fields every event has that a scenario ignores unless asked to compare them.
GENERATED_FIELDS = frozenset({"event_id", "occurred_at"})
# Left out of the messages shown in failures: generated, so never what a test is about.
_UNSHOWN = GENERATED_FIELDS | {"command_id"}


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

    In an ``async def`` test, load the aggregate first (``await
    uow.repository(Policy).require(policy_id)``) and pass it: commands are plain calls, so
    the scenario itself is never awaited.

    Raises:
        AssertionError: A history command raised; the message names it.
        TypeError: ``aggregate`` is an awaitable (a repository call without ``await``), or
            the factory or a history command is ``async def`` or returned an awaitable.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Awaitables and ``async def`` callables are refused with a :class:`TypeError`
       instead of being left un-awaited.
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
        built = cast("A", _start(aggregate))
        for number, command in enumerate(history, start=1):
            _refuse_async(command, f"given: history command {number}")
            try:
                result = command(built)
            except Exception as error:
                raise AssertionError(
                    f"given: history command {number} ({_describe(command)}) raised "
                    f"{type(error).__name__}: {error}"
                ) from error
            _refuse_awaitable(result, command, f"given: history command {number}")
        built.clear_events()
        self.aggregate: A = built
        self._command: Callable[[A], object] | None = None

    def when(self, command: Callable[[A], object]) -> Scenario[A]:
        """Set the command under test: a callable that takes the aggregate.

        The command is a plain call on the aggregate (``lambda p: p.activate()``): an
        ``async def`` function, which would give a coroutine instead of running, is refused
        here, and a command that returns an awaitable fails the ``then...`` call with a
        :class:`TypeError` (the awaitable is closed, never awaited).

        Returns:
            The scenario itself, to call ``then...`` on.

        Raises:
            RuntimeError: :meth:`when` was already called on this scenario.
            TypeError: ``command`` is an ``async def`` function (or a partial of one), or an
                awaitable (a coroutine object) rather than a callable.
        """
        if self._command is not None:
            raise RuntimeError("when() was already called on this scenario")
        if discard_awaitable(command):
            raise TypeError(
                f"when: got {_awaitable_name(command)}, not a command: pass a callable that "
                "takes the aggregate (lambda a: a.method(...)), not the result of calling an "
                "async function"
            )
        _refuse_async(command, "when")
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
            TypeError: The command returned an awaitable instead of running (see
                :meth:`when`).
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
            result = self._run()
        except Exception as error:
            raise AssertionError(
                f"when: {_describe(self._require_command())} raised "
                f"{type(error).__name__}: {error}\nexpected events:\n{listing(expected)}"
            ) from error
        _refuse_awaitable(result, self._require_command(), "when")
        actual = self.aggregate.pending_events
        mismatch = first_mismatch(expected, actual, ignored)
        if mismatch is not None:
            raise AssertionError(
                f"{mismatch}\nexpected events:\n{listing(expected)}\n"
                f"actual events:\n{listing(actual)}"
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
            TypeError: The command returned an awaitable instead of running.
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
            TypeError: The command returned an awaitable instead of running (it is never
                counted as the expected error, even when ``error`` is :class:`TypeError`).
            RuntimeError: :meth:`when` was not called first.
        """
        before = structural_state(self.aggregate)
        command = _describe(self._require_command())
        try:
            result = self._run()
        except error as raised:
            if match is not None and not re.search(match, str(raised)):
                raise AssertionError(
                    f"when: {command} raised {type(raised).__name__} as expected, but its "
                    f"message {str(raised)!r} does not match {match!r}"
                ) from raised
            if self.aggregate.pending_events:
                raise AssertionError(
                    f"when: {command} raised {type(raised).__name__} but recorded events "
                    f"first:\n{listing(self.aggregate.pending_events)}"
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
        _refuse_awaitable(result, self._require_command(), "when")
        raise AssertionError(
            f"when: {command} did not raise; expected {error.__name__}. It recorded:\n"
            f"{listing(self.aggregate.pending_events)}"
        )

    def _require_command(self) -> Callable[[A], object]:
        if self._command is None:
            raise RuntimeError("call when(command) before then()")
        return self._command

    def _run(self) -> object:
        return self._require_command()(self.aggregate)


def _start(aggregate: object) -> object:
    """The aggregate a scenario starts from: ``aggregate`` itself, or what its factory built."""
    # issubclass on the type, not isinstance: pyright would narrow to a partly unknown type.
    if issubclass(type(aggregate), AggregateRoot):
        return aggregate
    if discard_awaitable(aggregate):
        raise TypeError(
            f"given: got {_awaitable_name(aggregate)}, not an aggregate: await it first "
            "(aggregate = await uow.repository(...).require(id)), then pass the aggregate"
        )
    if not callable(aggregate):
        raise TypeError(
            "given: expected an aggregate or a callable that builds one, got "
            f"{type(aggregate).__qualname__}"
        )
    _refuse_async(aggregate, "given: the factory")
    built: object = aggregate()
    _refuse_awaitable(built, aggregate, "given: the factory")
    if not issubclass(type(built), AggregateRoot):
        raise TypeError(
            f"given: expected an aggregate or a callable that builds one, got "
            f"{_describe(aggregate)} returning {type(built).__qualname__}"
        )
    return built


def _refuse_async(command: Callable[..., object], where: str) -> None:
    if is_async_callable(command):
        raise TypeError(
            f"{where}: {_describe(command)} is an async function; a scenario runs aggregate "
            "commands, which are plain methods. Await the async service in the test itself, "
            "or pass the aggregate command it calls (lambda a: a.method(...))"
        )


def _refuse_awaitable(result: object, command: Callable[..., object], where: str) -> None:
    if discard_awaitable(result):
        raise TypeError(
            f"{where}: {_describe(command)} returned {_awaitable_name(result)} instead of "
            "running: an async function was passed where an aggregate command belongs "
            "(the awaitable was closed, never awaited). Await the async service in the test "
            "itself, or pass the aggregate command it calls"
        )


def _awaitable_name(awaitable: object) -> str:
    name = getattr(awaitable, "__qualname__", None)
    kind = type(awaitable).__name__
    return f"a {kind} ({name})" if isinstance(name, str) else f"an awaitable {kind}"


def _without_version(aggregate: AggregateRoot[Any]) -> object:
    # Commands never change the version; persistence does. Compare the rest.
    return tuple(
        getattr(aggregate, f.name) for f in dataclasses.fields(aggregate) if f.name != "version"
    )


def _fields(event: Any, ignored: frozenset[str]) -> dict[str, object]:
    return {
        f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name not in ignored
    }


def first_mismatch(
    expected: Sequence[object],
    actual: Sequence[object],
    ignored: frozenset[str],
    noun: str = "event",
) -> str | None:
    """What first differs between two lists of messages (events or commands), or None.

    An expected class matches any message of exactly that type; an expected instance one
    whose fields are equal, but for those in ``ignored``.
    """
    for index, (want, got) in enumerate(zip(expected, actual, strict=False), start=1):
        difference = message_difference(want, got, ignored)
        if difference is not None:
            return f"{noun} {index}{difference}"
    if len(expected) != len(actual):
        return f"expected {len(expected)} {noun}(s), got {len(actual)}"
    return None


def message_difference(want: object, got: object, ignored: frozenset[str]) -> str | None:
    """How ``got`` differs from ``want`` (a message or its class), told after its name."""
    want_type = want if isinstance(want, type) else type(want)
    if type(got) is not want_type:
        return f": expected {want_type.__qualname__}, got {type(got).__qualname__}"
    if isinstance(want, type):
        return None
    wanted, found = _fields(want, ignored), _fields(got, ignored)
    differences = [
        f"{name}: expected {wanted[name]!r}, got {found[name]!r}"
        for name in wanted
        if wanted[name] != found[name]
    ]
    if differences:
        return f" ({want_type.__qualname__}) differs in " + "; ".join(differences)
    return None


def listing(events: Sequence[object]) -> str:
    if not events:
        return "  (none)"
    return "\n".join(f"  {index}. {show(event)}" for index, event in enumerate(events, start=1))


def show(event: object) -> str:
    """A message (an event or a command) as a call, without its generated fields."""
    if isinstance(event, type):
        return f"{event.__qualname__}(...)"
    shown = ", ".join(f"{name}={value!r}" for name, value in _fields(event, _UNSHOWN).items())
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
