"""The domain model's base classes: ValueObject, Entity, AggregateRoot and DomainEvent.

Each base turns its subclasses into dataclasses through a metaclass declared with
``dataclass_transform``, so mypy and pyright see the generated ``__init__``, the fields and
(for value objects and events) immutability, exactly as for a hand-written dataclass.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import itertools
import operator
import re
import sys
import threading
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import field
from datetime import UTC, datetime
from types import CellType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast
from uuid import UUID

from typing_extensions import dataclass_transform

from tactical._ids import uuid7
from tactical._tracing import Trace, current_trace

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["AggregateRoot", "DomainEvent", "Entity", "FrozenMeta", "ValueObject"]

IdT = TypeVar("IdT")
_Made = TypeVar("_Made")

# An aggregate's pending events live in its __dict__ under these keys, not in dataclass fields
# (so out of eq, repr and storage), created by its first record(): the events oldest first,
# each one's number in _recording_sequence (the same index), and the traces of those recorded
# inside an event handler. Parallel lists, so pending_events is a copy made in C.
_EVENTS = "_tactical_pending_events"
_ORDER = "_tactical_recording_order"
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

    if TYPE_CHECKING:
        # Calling a class makes an instance of it, as type.__call__ does at run time, which
        # typeshed types as returning Any. Pyright matches a class object against a protocol
        # with a __call__ and other members (CommandBus.register's _CommandClass) through
        # its metaclass's __call__: without this one the command type read from the class
        # is Any, and a handler of another command type passes. Type checkers still check
        # a call's arguments against the fields (a metaclass __call__ that returns the
        # instance type is skipped for that).

        def __call__(cls: type[_Made], *args: Any, **kwargs: Any) -> _Made: ...

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
        _refuse_mutable_fields(name, namespace)
        own_post_init = namespace.get("__post_init__")
        if not any(issubclass(base, ValueObject) for base in bases):
            pass  # an event: no validate() hook to guarantee, so nothing to wrap
        elif own_post_init is None and _inherits_plain_validation(bases):
            # The common case, kept to one call: no override anywhere, so validate directly.
            namespace["__post_init__"] = _validate_post_init
        elif callable(own_post_init):
            namespace["__post_init__"] = _validating_post_init(
                cast("Callable[[Any], None]", own_post_init)
            )
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
        type.__setattr__(built, "__setattr__", _refuse_assignment)
        type.__setattr__(built, "__delattr__", _refuse_deletion)
        return cast("_FrozenMeta", built)


FrozenMeta = _FrozenMeta
"""The metaclass of frozen model classes, for other modules' bases (commands)."""


def _validate_post_init(self: ValueObject) -> None:
    self.validate()


def _inherits_plain_validation(bases: tuple[type, ...]) -> bool:
    if not any(issubclass(base, ValueObject) for base in bases):
        return False
    plain = (ValueObject.__post_init__, _validate_post_init, None)
    return all(getattr(base, "__post_init__", None) in plain for base in bases)


def _validating_post_init(own: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap a class's own ``__post_init__`` so that ``validate()`` runs after it, once.

    Only the outermost ``__post_init__`` of an instance's class validates: one reached
    through ``super()`` from a subclass's does not, so validation runs exactly once whether
    or not the overrides call ``super().__post_init__()``.
    """

    def __post_init__(self: object, *args: Any, **kwargs: Any) -> None:
        outermost: object = getattr(type(self), "__post_init__", None)
        if outermost is not __post_init__ or not isinstance(self, ValueObject):
            own(self, *args, **kwargs)  # reached through super(): the outermost one validates
            return
        frames: list[list[Any]] = _constructing.__dict__.setdefault("frames", [])
        frames.append([self, False])
        try:
            own(self, *args, **kwargs)
        finally:
            _, validated = frames.pop()
        if not validated:
            self.validate()

    vars(__post_init__)["__wrapped__"] = own
    __post_init__.__qualname__ = getattr(own, "__qualname__", "__post_init__")
    __post_init__.__doc__ = own.__doc__
    return __post_init__


# Per thread, the value objects whose own __post_init__ is running, each with whether
# ValueObject.__post_init__ (reached through super()) already validated it there.
_constructing = threading.local()


def _variable_name(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def _field_names(cls: type) -> tuple[str, ...]:
    declared: dict[str, dataclasses.Field[Any]] = getattr(cls, "__dataclass_fields__", {})
    return tuple(declared)


def _refuse_assignment(self: object, name: str, value: object) -> None:
    cls = type(self)
    fields = _field_names(cls)
    if name in fields:
        raise dataclasses.FrozenInstanceError(
            f"{cls.__qualname__} is immutable: cannot assign to field {name!r}; "
            f"use {_variable_name(cls)}.replace({name}=...)"
        )
    raise dataclasses.FrozenInstanceError(
        f"{cls.__qualname__} is immutable and has no field {name!r} "
        f"(its fields: {', '.join(fields) or 'none'})"
    )


def _refuse_deletion(self: object, name: str) -> None:
    cls = type(self)
    what = f"field {name!r}" if name in _field_names(cls) else f"attribute {name!r}"
    raise dataclasses.FrozenInstanceError(f"{cls.__qualname__} is immutable: cannot delete {what}")


# Containers that can change in place (and are unhashable): a frozen class must not hold them.
_MUTABLE: tuple[type, ...] = (
    list,
    dict,
    set,
    bytearray,
    collections.deque,
    collections.abc.MutableSequence,
    collections.abc.MutableMapping,
    collections.abc.MutableSet,
)
_MUTABLE_NAME = re.compile(
    r"(?<![\w.])(?:typing\.)?(list|dict|set|bytearray|deque|List|Dict|Set|DefaultDict|"
    r"OrderedDict|MutableSequence|MutableMapping|MutableSet)\b"
)


def _mutable_part(annotation: object) -> str | None:
    """The mutable container an annotation allows (``list``, ...), or None."""
    if isinstance(annotation, str):
        match = _MUTABLE_NAME.search(annotation)
        return match.group(1) if match else None
    if isinstance(annotation, dataclasses.InitVar):
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.ClassVar:
        return None
    candidate = origin if origin is not None else annotation
    if isinstance(candidate, type) and issubclass(candidate, _MUTABLE):
        return candidate.__name__
    if origin in (typing.Annotated,):
        return _mutable_part(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType) or (
        isinstance(candidate, type) and issubclass(candidate, tuple | frozenset)
    ):
        for argument in typing.get_args(annotation):
            found = _mutable_part(argument)
            if found is not None:
                return found
    return None


def _refuse_mutable_fields(name: str, namespace: dict[str, Any]) -> None:
    """Refuse a field of a frozen class whose annotation allows a mutable container."""
    annotations: dict[str, object] = namespace.get("__annotations__", {})
    module = sys.modules.get(namespace.get("__module__", ""))
    scope = dict(vars(module)) if module is not None else {}
    for field_name, annotation in annotations.items():
        resolved = annotation
        if isinstance(annotation, str):
            try:
                resolved = eval(annotation, scope, dict(namespace))  # noqa: S307  (an annotation)
            except Exception:  # forward references: read the text instead
                resolved = annotation
        mutable = _mutable_part(resolved)
        if mutable is None:
            continue
        if isinstance(annotation, str):
            text = annotation
        elif isinstance(annotation, type):
            text = annotation.__name__
        else:  # list[mod.Money] -> list[Money]
            text = re.sub(r"(?:\w+\.)+(\w+)", r"\1", str(annotation))
        raise TypeError(
            f"{name}.{field_name}: {text} is mutable, so a frozen {name} could change in place "
            f"and could not be hashed; use an immutable type instead of {mutable}: "
            "tuple[X, ...] for a sequence, frozenset[X] for a set, and for a mapping a "
            "tuple of (key, value) pairs or a value object of its own"
        )


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
    invalid value object can never exist. Put it in :meth:`validate`; it runs exactly once
    per construction: where an overriding ``__post_init__`` calls ``super().__post_init__()``,
    or after the override when it does not.

    Fields must be immutable: a ``list``, ``dict`` or ``set`` field (also inside ``X | None``
    or a tuple) is refused with :class:`TypeError` when the class is defined; use
    ``tuple[X, ...]``, ``frozenset[X]``, or pairs or a value object for a mapping. Assigning
    or deleting an attribute raises :class:`dataclasses.FrozenInstanceError` naming the
    class and pointing to :meth:`replace`.

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
        # Subclasses without an override call validate() directly (_validate_post_init); this
        # runs when an override calls super(): validate here, where the caller asked.
        frames: list[list[Any]] | None = getattr(_constructing, "frames", None)
        if frames and frames[-1][0] is self and not frames[-1][1]:
            frames[-1][1] = True
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

    if TYPE_CHECKING:
        # For type checkers only: makes ``type[Policy]`` an ``AggregateClass[Policy, UUID]``
        # (see tactical._repository), so ``uow.repository(Policy)`` knows the id type.
        @classmethod
        def _tactical_aggregate_class_(cls) -> tuple[Self, IdT]: ...

    def record(self, event: DomainEvent) -> None:
        """Record that ``event`` happened to this aggregate; it is published after commit.

        Raises:
            TypeError: ``event`` is not a :class:`DomainEvent`.
        """
        if not isinstance(event, DomainEvent):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"{type(self).__qualname__}.record() takes a DomainEvent, got {event!r}"
            )
        state = vars(self)
        events: list[DomainEvent] | None = state.get(_EVENTS)
        if events is None:
            state[_EVENTS] = [event]
            state[_ORDER] = [next(_recording_sequence)]
        else:
            events.append(event)
            state[_ORDER].append(next(_recording_sequence))
        trace = current_trace()
        if trace is not None:
            state.setdefault(_TRACES, {})[event.event_id] = trace

    @property
    def pending_events(self) -> tuple[DomainEvent, ...]:
        """The events recorded and not yet published or cleared, oldest first."""
        events: list[DomainEvent] | None = vars(self).get(_EVENTS)
        return tuple(events) if events else ()

    def clear_events(self) -> None:
        """Forget the pending events."""
        state = vars(self)
        state.pop(_EVENTS, None)
        state.pop(_ORDER, None)
        state.pop(_TRACES, None)

    def pull_events(self) -> tuple[DomainEvent, ...]:
        """Return the pending events, oldest first, and clear them."""
        pulled = self.pending_events
        self.clear_events()
        return pulled


def recorded_in_order(aggregates: Iterable[AggregateRoot[Any]]) -> list[DomainEvent]:
    """The pending events of all ``aggregates``, merged in the order they were recorded.

    For units of work: this is the publication order after a commit.
    """
    numbered: list[tuple[int, DomainEvent]] = []
    for aggregate in aggregates:
        state = vars(aggregate)
        events: list[DomainEvent] | None = state.get(_EVENTS)
        if events:
            numbered.extend(zip(state[_ORDER], events, strict=True))
    numbered.sort(key=_first)  # the numbers are unique: events are never compared
    return [event for _, event in numbered]


_first = operator.itemgetter(0)


def recorded_trace(aggregate: AggregateRoot[Any], event: DomainEvent) -> Trace | None:
    """The trace that was current when ``aggregate`` recorded ``event`` (None: outside handlers)."""
    traces: dict[UUID, Trace] | None = vars(aggregate).get(_TRACES)
    return None if traces is None else traces.get(event.event_id)


def recorded_traces_of(aggregate: AggregateRoot[Any]) -> dict[UUID, Trace] | None:
    """The traces of ``aggregate``'s pending events recorded inside event handlers, by event id.

    None when it recorded none there (the common case: a command run outside any handler).
    """
    return vars(aggregate).get(_TRACES)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _DomainEventBase(metaclass=_FrozenMeta):
    __slots__ = ()


class DomainEvent(_DomainEventBase):
    """Something that happened in the domain: an immutable record, named in the past tense.

    A subclass is automatically a frozen, slotted dataclass. Every event has two
    keyword-only fields with defaults, so subclass fields may be positional:

    - ``event_id``: a unique id, used to deduplicate deliveries: by default a new UUID
      version 7 (RFC 9562), which starts with the time in milliseconds, so that ids made
      later sort later (within a process, always); an index on them grows at its end.
    - ``occurred_at``: when it happened, timezone-aware (UTC now by default). A naive
      datetime is refused with :class:`ValueError`.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``event_id`` defaults to a UUID version 7 (time-ordered); it was a version 4 (random).
    """

    event_id: UUID = field(default_factory=uuid7, kw_only=True)
    occurred_at: datetime = field(default_factory=_utc_now, kw_only=True)

    def __post_init__(self) -> None:
        if type(self) is DomainEvent:
            raise TypeError("DomainEvent is a base class: subclass it for each kind of event")
        if self.occurred_at.utcoffset() is None:
            raise ValueError(
                f"{type(self).__qualname__}.occurred_at must be timezone-aware, "
                f"got naive {self.occurred_at.isoformat()}"
            )
