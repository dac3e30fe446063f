"""The errors tactical raises, and the base classes for a domain's own errors."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AggregateNotFound",
    "ConcurrencyError",
    "DomainError",
    "InvalidStateError",
    "InvariantViolation",
    "TransactionBoundaryError",
    "UncommittedChangesWarning",
]


class DomainError(ValueError):
    """A business rule refused an operation.

    Subclasses :class:`ValueError`, so ``pytest.raises(ValueError, match=...)`` and code
    written against plain dataclass validation keep working. Raise a subclass
    (:class:`InvariantViolation`, :class:`InvalidStateError` or your own) where the
    distinction helps a caller; the message should name the offending value.

    .. versionadded:: 0.1.0
    """


class InvariantViolation(DomainError):
    """An invariant would break: a value object or aggregate would become invalid.

    Example: ``Claim amount 1200.00 USD exceeds the policy maximum 1000.00 USD``.

    .. versionadded:: 0.1.0
    """


class InvalidStateError(DomainError):
    """A command is not allowed in the aggregate's current state.

    Example: ``Cannot activate policy in cancelled state``.

    .. versionadded:: 0.1.0
    """


class ConcurrencyError(Exception):
    """An aggregate was changed by someone else since it was loaded.

    Raised by a unit of work at commit (optimistic concurrency). The whole commit is
    refused; nothing of it is stored. It is not a :class:`DomainError`: retrying the
    command on freshly loaded state usually succeeds.

    Attributes:
        aggregate_type: The class of the aggregate, when known.
        aggregate_id: The id of the aggregate, when known.
        expected_version: The version the writer loaded, when known.
        actual_version: The version found in the store (``None`` if it was removed).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        aggregate_type: type[Any] | None = None,
        aggregate_id: object = None,
        expected_version: int | None = None,
        actual_version: int | None = None,
    ) -> None:
        super().__init__(message)
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version
        self.actual_version = actual_version

    @classmethod
    def stale(
        cls,
        aggregate_type: type[Any],
        aggregate_id: object,
        *,
        expected_version: int,
        actual_version: int | None,
    ) -> ConcurrencyError:
        """Build the error for a stale write, with a message naming type, id and versions.

        Args:
            aggregate_type: The class of the aggregate written.
            aggregate_id: Its id.
            expected_version: The version the writer loaded.
            actual_version: The version in the store; None if the aggregate was removed.

        Returns:
            The error, with its attributes set.
        """
        found = "it was removed" if actual_version is None else f"it is at version {actual_version}"
        return cls(
            f"{aggregate_type.__qualname__} {aggregate_id} was changed concurrently: "
            f"loaded at version {expected_version}, but {found}",
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            expected_version=expected_version,
            actual_version=actual_version,
        )


class AggregateNotFound(LookupError):
    """No aggregate of this type has this id. Raised by ``Repository.require``.

    Attributes:
        aggregate_type: The class that was asked for.
        aggregate_id: The id that was asked for.

    .. versionadded:: 0.1.0
    """

    def __init__(self, aggregate_type: type[Any], aggregate_id: object) -> None:
        super().__init__(f"{aggregate_type.__qualname__} with id {aggregate_id} not found")
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id

    def __str__(self) -> str:
        # LookupError/KeyError-style repr quoting would be noise in the message.
        return str(self.args[0])


def _describe(aggregates: tuple[tuple[type[Any], object], ...], limit: int = 10) -> str:
    named = ", ".join(f"{t.__qualname__} {i}" for t, i in aggregates[:limit])
    more = len(aggregates) - limit
    return f"{named} and {more} more" if more > 0 else named


class TransactionBoundaryError(RuntimeError):
    """A commit would change more than one aggregate in one transaction.

    An aggregate is a consistency boundary: one transaction changes (adds, modifies or
    removes) one aggregate, and other aggregates follow in their own transactions, usually
    from an event handler. A unit of work refuses such a commit before writing anything;
    create it with ``allow_multiple_aggregates=True`` for the rare case where one
    transaction must change several.

    Attributes:
        aggregates: ``(type, id)`` of every aggregate the transaction changed, in the order
            the unit of work first saw them.

    .. versionadded:: 0.2.0
    """

    def __init__(self, aggregates: tuple[tuple[type[Any], object], ...]) -> None:
        super().__init__(
            f"one transaction would change {len(aggregates)} aggregates "
            f"({_describe(aggregates)}); an aggregate is a consistency boundary: change one "
            "per transaction and update the others from an event handler in their own "
            "transactions, or create the unit of work with allow_multiple_aggregates=True"
        )
        self.aggregates = aggregates


class UncommittedChangesWarning(ResourceWarning):
    """Changes to aggregates were discarded because nothing committed them.

    Emitted when a ``with`` block of a unit of work ends without ``commit()`` while
    aggregates have pending changes or recorded events, or timers were scheduled or
    cancelled (they are rolled back, as always),
    and when an aggregate changed after its block ended is detected to be saved nowhere.
    Not emitted when the block ends with an exception or after an explicit ``rollback()``.

    Attributes:
        aggregates: ``(type, id)`` of every aggregate whose changes were lost.

    .. versionadded:: 0.2.0
    """

    def __init__(self, message: str, aggregates: tuple[tuple[type[Any], object], ...]) -> None:
        super().__init__(f"{message}: {_describe(aggregates)}" if aggregates else message)
        self.aggregates = aggregates
