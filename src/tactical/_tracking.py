"""What a unit of work knows about its aggregates: changes, commits, ids (no I/O).

The plain data and checks the unit-of-work core decides with, shared by the sync and the
async units of work: the :class:`Change` a commit writes, the identity map's entries,
what a commit left behind (to notice changes saved nowhere), the one-aggregate rule and
the id-type check.
"""

from __future__ import annotations

import types
import typing
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tactical._errors import ConcurrencyError, TransactionBoundaryError, UncommittedChangesWarning
from tactical._generics import substitute, type_bindings
from tactical._model import AggregateRoot, DomainEvent, Entity
from tactical._structural import structural_state
from tactical._timers import timer_writes_of

__all__ = [
    "DIRTY",
    "Change",
    "Committed",
    "Tracked",
    "boundary_violation",
    "changed_since_commit",
    "check_id",
    "identities",
    "report_at_collection",
    "stale",
    "warn_lost",
]


@dataclass(frozen=True, slots=True, init=False)
class Change:
    """One aggregate to write at commit (for unit-of-work implementers).

    ``expected_version`` is the version the store must hold for the write to go ahead
    (``None`` for an insert, which instead requires that no row exists); ``new_version`` is
    the version after it (``None`` for a delete).
    """

    kind: Literal["insert", "update", "delete"]
    aggregate_type: type[AggregateRoot[Any]]
    aggregate: AggregateRoot[Any]
    expected_version: int | None
    new_version: int | None
    events: tuple[DomainEvent, ...]

    def __init__(
        self,
        kind: Literal["insert", "update", "delete"],
        aggregate_type: type[AggregateRoot[Any]],
        aggregate: AggregateRoot[Any],
        expected_version: int | None,
        new_version: int | None,
        events: tuple[DomainEvent, ...],
    ) -> None:
        # The generated __init__ of a frozen dataclass sets each field through
        # object.__setattr__ (1.4 us for these six, on every commit); the slots' own setters
        # do the same in a third of that, and the class stays frozen to everyone else.
        _set_kind(self, kind)
        _set_aggregate_type(self, aggregate_type)
        _set_aggregate(self, aggregate)
        _set_expected_version(self, expected_version)
        _set_new_version(self, new_version)
        _set_events(self, events)


def _slot_setter(cls: type, name: str) -> Callable[[object, object], None]:
    """The setter of slot ``name`` of ``cls``, which bypasses the class's ``__setattr__``."""
    setter: Callable[[object, object], None] = vars(cls)[name].__set__
    return setter


_set_kind = _slot_setter(Change, "kind")
_set_aggregate_type = _slot_setter(Change, "aggregate_type")
_set_aggregate = _slot_setter(Change, "aggregate")
_set_expected_version = _slot_setter(Change, "expected_version")
_set_new_version = _slot_setter(Change, "new_version")
_set_events = _slot_setter(Change, "events")


@dataclass(slots=True)
class Tracked:
    """An aggregate in the identity map of the open transaction."""

    aggregate_type: type[AggregateRoot[Any]]
    aggregate: AggregateRoot[Any]
    stored_version: int | None  # None: not in the store (added new)
    snapshot: object  # structural state when loaded; DIRTY forces a write
    removed: bool = False


DIRTY = object()
"""The snapshot of an added aggregate: it is written whatever its state."""


@dataclass(slots=True, eq=False)
class Committed:
    """An aggregate as a commit left it: changing it later saves it nowhere by itself."""

    aggregate_type: type[AggregateRoot[Any]]
    aggregate_id: object
    # Weak: an aggregate nobody holds any more cannot be changed, and is not checked.
    aggregate: weakref.ref[AggregateRoot[Any]]
    version: int
    state: object


def changed_since_commit(
    committed: Iterable[Committed], taken_again: Iterable[Tracked] = ()
) -> list[Committed]:
    """The committed aggregates changed since their commit (state, events, timer requests).

    ``taken_again`` is the identity map of a later transaction of the same unit of work: the
    aggregates in it are saved or discarded by that transaction, and not reported. Neither
    is an aggregate whose version moved (it was committed again, by some unit of work) nor
    one nobody holds any more.
    """
    changed: list[Committed] = []
    handled: set[int] | None = None  # built only once a live aggregate needs the check
    for c in committed:
        aggregate = c.aggregate()
        if aggregate is None or aggregate.version != c.version:
            continue
        if handled is None:
            handled = set()
            for t in taken_again:
                handled.add(id(t.aggregate))
        if id(aggregate) not in handled and (
            aggregate.pending_events
            or timer_writes_of(aggregate)
            or structural_state(aggregate) != c.state
        ):
            changed.append(c)
    return changed


def timer_note(keys: Sequence[str]) -> str:
    """`` (and the timer requests of keys ...)`` for a warning, or nothing without keys."""
    if not keys:
        return ""
    shown = ", ".join(repr(k) for k in keys[:10])
    more = f" and {len(keys) - 10} more" if len(keys) > 10 else ""
    return f" (and the timer requests of keys {shown}{more})"


def warn_lost(message: str, lost: Sequence[Committed], stacklevel: int) -> None:
    """Warn that the changes of ``lost`` were saved nowhere (their timer requests named)."""
    identities = tuple((c.aggregate_type, c.aggregate_id) for c in lost)
    held = (c.aggregate() for c in lost)
    keys = [w.key for a in held if a is not None for w in timer_writes_of(a)]
    warnings.warn(
        UncommittedChangesWarning(message + timer_note(keys), identities),
        stacklevel=stacklevel + 1,
    )


def report_at_collection(previous: list[Committed], owner: str) -> None:
    """Warn of aggregates changed after a unit of work's last block, as it is collected."""
    lost = changed_since_commit(previous)
    if lost:
        warn_lost(
            f"aggregates committed by a unit of work ({owner}) were changed after its `with` "
            "block ended and saved nowhere before it was garbage-collected",
            lost,
            stacklevel=1,
        )


def stale(change: Change, actual_version: int | None) -> ConcurrencyError:
    """The error refusing ``change``: the stored version is not the one the write expected.

    ``actual_version`` is the version found (None: no row). For every store, sync or async.
    """
    return ConcurrencyError.stale(
        change.aggregate_type,
        change.aggregate.id,
        expected_version=change.expected_version or 0,
        actual_version=actual_version,
    )


def boundary_violation(changes: Sequence[Change]) -> TransactionBoundaryError | None:
    """The error refusing ``changes`` when they touch more than one aggregate, else None."""
    if len(changes) <= 1:
        return None
    return TransactionBoundaryError(identities(changes))


def identities(changes: Sequence[Change]) -> tuple[tuple[type[Any], object], ...]:
    """``(type, id)`` of each change's aggregate, in order."""
    return tuple((c.aggregate_type, c.aggregate.id) for c in changes)


# Per aggregate class, the id types it declares. A plain dict, bounded like the other caches
# keyed by class: a WeakKeyDictionary made a weak reference on every get() (a third of it).
_id_types: dict[type, tuple[type, ...]] = {}


def check_id(aggregate_type: type[AggregateRoot[Any]], aggregate_id: object) -> None:
    """Refuse an id that is not of the aggregate's declared id type (a str for a UUID id).

    SQL storage keeps ids as text, so ``get(str(uuid))`` would find the row and one
    transaction could hold two copies of an aggregate; in memory it would find nothing.

    Raises:
        TypeError: ``aggregate_id`` is not of the declared id type.
    """
    expected = _id_types.get(aggregate_type)
    if expected is None:
        if len(_id_types) >= 4096:  # classes made at run time: keep the cache bounded
            _id_types.clear()
        expected = _id_types[aggregate_type] = _declared_id_types(aggregate_type)
    if expected and not isinstance(aggregate_id, expected):
        names = " | ".join(t.__qualname__ for t in expected)
        raise TypeError(
            f"{aggregate_type.__qualname__} ids are {names}, got "
            f"{type(aggregate_id).__qualname__} {aggregate_id!r}"
        )


def _declared_id_types(aggregate_type: type[AggregateRoot[Any]]) -> tuple[type, ...]:
    """The classes an id must be an instance of; empty when the annotation does not say."""
    try:
        annotation: Any = typing.get_type_hints(aggregate_type)["id"]
    except (NameError, KeyError):  # annotations naming local classes: use Entity's
        annotation = typing.get_type_hints(Entity)["id"]
    annotation = substitute(annotation, type_bindings(aggregate_type))
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif hasattr(annotation, "__supertype__"):  # NewType
            annotation = annotation.__supertype__
        else:
            break
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
    else:
        members = (annotation,)
    if all(
        isinstance(m, type) and typing.get_origin(m) is None and m not in (object, Any)
        for m in members
    ):
        return tuple(members)
    return ()
