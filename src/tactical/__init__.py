"""tactical: typed Domain-Driven Design building blocks.

The public API is re-exported here; everything else is private.
"""

from tactical._errors import (
    AggregateNotFound,
    ConcurrencyError,
    DomainError,
    InvalidStateError,
    InvariantViolation,
)
from tactical._model import AggregateRoot, DomainEvent, Entity, ValueObject

__all__ = [
    "AggregateNotFound",
    "AggregateRoot",
    "ConcurrencyError",
    "DomainError",
    "DomainEvent",
    "Entity",
    "InvalidStateError",
    "InvariantViolation",
    "ValueObject",
]
