"""The domain model's base classes: ValueObject, Entity, AggregateRoot and DomainEvent.

Each base turns its subclasses into dataclasses through a metaclass declared with
``dataclass_transform``, so mypy and pyright see the generated ``__init__``, the fields and
(for value objects and events) immutability, exactly as for a hand-written dataclass.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from dataclasses import field
from datetime import UTC, datetime
from types import CellType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast
from uuid import UUID, uuid4

from typing_extensions import dataclass_transform

from tactical._tracing import Trace, current_trace

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["AggregateRoot", "DomainEvent", "Entity", "ValueObject"]

IdT = TypeVar("IdT")

_EVENTS = "_tactical_pending_events"
_TRACES = "_tactical_event_traces"
SUPERSEDED = "__tactical_superseded__"
# Per value-object class: the names of its ``__init__`` fields, computed once when the class is
# built, so that replace() need not walk dataclasses.fields() on every call. None when the
# class has an InitVar, whose rules dataclasses.replace() alone applies.
_REPLACEABLE = "__tactical_replaceable__"

# One process-wide sequence numbers every recorded event, so a unit of work that saw several
# aggregates can publish their events in the order they were recorded across all of them.
# next() on itertools.count is atomic under the GIL.
_recording_sequence = itertools.count()


def _is_rebuild(namespace: dict[str, Any]) -> bool:
    # dataclass(slots=True) builds a second class from the first one's __dict__, which
    # already holds the generated dataclass machinery: that class must pass through as is.
    return "__dataclass_fields__" in namespace


def _is_base(mcls: type, bases: tuple[type, ...]) -> bool:
    # The class that introduces the metaclass is the library's own base, not a model.
    return not any(isinstance(base, mcls) for base in bases)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
class _FrozenMeta(type):
    """Makes every subclass a frozen, slotted dataclass (value objects and events)."""

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        /,
        *,
        order: bool = False,
        kw_only: bool = False,
    ) -> _FrozenMeta:
        if _is_base(mcls, bases) or _is_rebuild(namespace):
            return super().__new__(mcls, name, bases, namespace)
        # A method using zero-argument super() (or __class__) makes Python pass a cell that
        # must end up holding the class returned here: the slotted rebuild, not cls.
        classcell = namespace.pop("__classcell__", None)
        cls = super().__new__(mcls, name, bases, namespace)
        make = dataclasses.dataclass(frozen=True, slots=True, order=order, kw_only=kw_only)
        built = make(cast("type[Any]", cls))
        if classcell is not None:
            classcell.cell_contents = built
        # The generated __setattr__/__delattr__ test `type(self) is cls` and call
        # super(cls, self) with the replaced class, so setting an undeclared attribute raised
        # a TypeError from super(); retarget them (as Python 3.14's dataclasses does) so
        # it raises FrozenInstanceError like assigning a field.
        for method in ("__setattr__", "__delattr__"):
            generated = getattr(built, method)
            closure: tuple[CellType, ...] | None = getattr(generated, "__closure__", None)
            for cell in closure or ():
                if cell.cell_contents is cls:
                    cell.cell_contents = built
        # The slotted class replaces cls, which lingers in __subclasses__() until collected:
        # mark it so that class discovery (the codec's) never mistakes it for the real one.
        type.__setattr__(cls, SUPERSEDED, True)
        type.__setattr__(built, _REPLACEABLE, _replaceable_fields(built))
        return cast("_FrozenMeta", built)


def _replaceable_fields(cls: type[Any]) -> frozenset[str] | None:
    declared: dict[str, dataclasses.Field[Any]] = cls.__dataclass_fields__
    initvar = getattr(dataclasses, "_FIELD_INITVAR", None)
    if any(getattr(f, "_field_type", initvar) is initvar for f in declared.values()):
        return None
    return frozenset(f.name for f in dataclasses.fields(cls) if f.init)


@dataclass_transform(eq_default=False, field_specifiers=(dataclasses.field,))
class _EntityMeta(type):
    """Makes every subclass a mutable dataclass that keeps the base's identity equality."""

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        /,
        *,
        kw_only: bool = False,
    ) -> _EntityMeta:
        cls = super().__new__(mcls, name, bases, namespace)
        if _is_base(mcls, bases) or _is_rebuild(namespace):
            return cls
        # eq=False: dataclass must not replace Entity.__eq__/__hash__ with field equality.
        make = dataclasses.dataclass(eq=False, kw_only=kw_only)
        return cast("_EntityMeta", make(cast("type[Any]", cls)))


class ValueObject(metaclass=_FrozenMeta):
    """An immutable value, equal to any other with the same fields.

    A subclass is automatically a frozen, slotted dataclass: declare fields with
    annotations (and ``dataclasses.field`` where needed). Assigning to a field raises
    :class:`dataclasses.FrozenInstanceError` at run time and is a type error.

    Validation runs on every construction, including copies made by :meth:`replace`, so an
    invalid value object can never exist. Put it in :meth:`validate` (or in
    ``__post_init__``; if you override ``__post_init__``, call ``super().__post_init__()``
    to keep :meth:`validate` running).

    Class keywords ``order=True`` (comparison operators over the fields, in order) and
    ``kw_only=True`` (keyword-only ``__init__``) are passed on to ``dataclass``.

    Example::

        class Money(ValueObject):
            amount: Decimal
            currency: str

            def validate(self) -> None:
                if self.amount < 0:
                    raise InvariantViolation(f"Money amount {self.amount} is negative")

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check this value's invariants; raise :class:`DomainError` (or ValueError) if broken.

        Runs after every construction. The default accepts every value.
        """

    def replace(self, /, **changes: Any) -> Self:
        """Return a copy with some fields changed, validated like any new value.

        Raises:
            TypeError: A name in ``changes`` is not a field of this class.
            DomainError: The changed value would be invalid (whatever :meth:`validate` raises).
        """
        cls = type(self)
        names: frozenset[str] | None = getattr(cls, _REPLACEABLE, None)
        if names is not None and names.issuperset(changes):
            # The fast path of dataclasses.replace(): the unchanged init fields, then __init__.
            for name in names:
                if name not in changes:
                    changes[name] = getattr(self, name)
            return cls(**changes)
        # InitVar pseudo-fields are absent from dataclasses.fields() but may be replaced.
        declared: dict[str, dataclasses.Field[Any]] = cls.__dataclass_fields__
        accepted = [name for name, f in declared.items() if f.init]
        unknown = changes.keys() - set(accepted)
        if unknown:
            raise TypeError(
                f"{type(self).__qualname__}.replace() got unknown field(s) "
                f"{', '.join(sorted(unknown))}; it accepts {', '.join(accepted)}"
            )
        return cast("Self", dataclasses.replace(cast("DataclassInstance", self), **changes))


class _EntityBase(metaclass=_EntityMeta):
    __slots__ = ()


class Entity(_EntityBase, Generic[IdT]):
    """An object with a lifecycle and an identity: two entities are equal when they are of
    the same concrete class and have the same ``id``, whatever their other fields hold.

    A subclass is automatically a mutable dataclass with a required ``id: IdT`` as its first
    field. Use child entities inside an aggregate for parts that have their own identity
    (a claim within a policy). Entities are hashable by type and id; do not change ``id``.

    .. versionadded:: 0.1.0
    """

    id: IdT

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self.id == other.id)

    def __hash__(self) -> int:
        return hash((type(self), self.id))


class AggregateRoot(Entity[IdT]):
    """An entity that is a consistency boundary: load it, run one command, commit.

    Commands check invariants and call :meth:`record` with the event that describes what
    happened. A unit of work saves the aggregate when it commits and then publishes its
    pending events, oldest first. Recorded events are not fields: they take no part in
    equality, ``repr`` or persisted state.

    ``version`` is keyword-only and defaults to 0 (never saved); persistence bumps it on
    every save and uses it for optimistic concurrency. Leave it to the unit of work.

    .. versionadded:: 0.1.0
    """

    version: int = field(default=0, kw_only=True)

    def _events(self) -> list[tuple[int, DomainEvent]]:
        # Kept out of the dataclass fields (and so out of eq, repr and storage); created on
        # first use so subclasses need no __post_init__ cooperation.
        state = vars(self)
        try:
            return cast("list[tuple[int, DomainEvent]]", state[_EVENTS])
        except KeyError:
            events: list[tuple[int, DomainEvent]] = []
            state[_EVENTS] = events
            return events

    def record(self, event: DomainEvent) -> None:
        """Record that ``event`` happened to this aggregate; it is published after commit.

        Raises:
            TypeError: ``event`` is not a :class:`DomainEvent`.
        """
        if not isinstance(event, DomainEvent):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"{type(self).__qualname__}.record() takes a DomainEvent, got {event!r}"
            )
        self._events().append((next(_recording_sequence), event))
        trace = current_trace()
        if trace is not None:
            vars(self).setdefault(_TRACES, {})[event.event_id] = trace

    @property
    def pending_events(self) -> tuple[DomainEvent, ...]:
        """The events recorded and not yet published or cleared, oldest first."""
        return tuple(event for _, event in vars(self).get(_EVENTS, ()))

    def clear_events(self) -> None:
        """Forget the pending events."""
        self._events().clear()
        vars(self).pop(_TRACES, None)

    def pull_events(self) -> tuple[DomainEvent, ...]:
        """Return the pending events, oldest first, and clear them."""
        pulled = self.pending_events
        self.clear_events()
        return pulled


def recorded_in_order(aggregates: Iterable[AggregateRoot[Any]]) -> list[DomainEvent]:
    """The pending events of all ``aggregates``, merged in the order they were recorded.

    For units of work: this is the publication order after a commit.
    """
    numbered = [entry for aggregate in aggregates for entry in aggregate._events()]  # pyright: ignore[reportPrivateUsage]
    numbered.sort(key=lambda entry: entry[0])
    return [event for _, event in numbered]


def recorded_trace(aggregate: AggregateRoot[Any], event: DomainEvent) -> Trace | None:
    """The trace that was current when ``aggregate`` recorded ``event`` (None: outside handlers)."""
    traces: dict[UUID, Trace] | None = vars(aggregate).get(_TRACES)
    return None if traces is None else traces.get(event.event_id)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _DomainEventBase(metaclass=_FrozenMeta):
    __slots__ = ()


class DomainEvent(_DomainEventBase):
    """Something that happened in the domain: an immutable record, named in the past tense.

    A subclass is automatically a frozen, slotted dataclass. Every event has two
    keyword-only fields with defaults, so subclass fields may be positional:

    - ``event_id``: a unique id (uuid4), used to deduplicate deliveries.
    - ``occurred_at``: when it happened, timezone-aware (UTC now by default). A naive
      datetime is refused with :class:`ValueError`.

    .. versionadded:: 0.1.0
    """

    event_id: UUID = field(default_factory=uuid4, kw_only=True)
    occurred_at: datetime = field(default_factory=_utc_now, kw_only=True)

    def __post_init__(self) -> None:
        if type(self) is DomainEvent:
            raise TypeError("DomainEvent is a base class: subclass it for each kind of event")
        if self.occurred_at.utcoffset() is None:
            raise ValueError(
                f"{type(self).__qualname__}.occurred_at must be timezone-aware, "
                f"got naive {self.occurred_at.isoformat()}"
            )
