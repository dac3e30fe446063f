"""tactical: typed Domain-Driven Design building blocks.

The public API is re-exported here; everything else is private.
"""

from tactical._bus import EventBus, EventHandlerError
from tactical._clock import Clock, SystemClock
from tactical._codec import DeserializationError, EventRecord, JsonCodec, UnknownTypeError
from tactical._commands import Command, CommandBus
from tactical._errors import (
    AggregateNotFound,
    ConcurrencyError,
    DomainError,
    InvalidStateError,
    InvariantViolation,
    TransactionBoundaryError,
    UncommittedChangesWarning,
)
from tactical._exports import publish as _publish
from tactical._memory import InMemoryStore, InMemoryUnitOfWork
from tactical._memory_async import AsyncInMemoryUnitOfWork
from tactical._model import AggregateRoot, DomainEvent, Entity, ValueObject
from tactical._process import AsyncProcessManagerHandler, ProcessManager, ProcessManagerHandler
from tactical._query import Field, Predicate, Query
from tactical._repository import AsyncRepository, Repository
from tactical._retry import retry_on_conflict
from tactical._scheduling import AsyncSchedulingUnitOfWork, SchedulingUnitOfWork
from tactical._timers import ScheduledMessage
from tactical._tracing import Trace, current_trace
from tactical._uow import UnitOfWork
from tactical._uow_async import AsyncUnitOfWork

__all__ = [
    "AggregateNotFound",
    "AggregateRoot",
    "AsyncInMemoryUnitOfWork",
    "AsyncProcessManagerHandler",
    "AsyncRepository",
    "AsyncSchedulingUnitOfWork",
    "AsyncUnitOfWork",
    "Clock",
    "Command",
    "CommandBus",
    "ConcurrencyError",
    "DeserializationError",
    "DomainError",
    "DomainEvent",
    "Entity",
    "EventBus",
    "EventHandlerError",
    "EventRecord",
    "Field",
    "InMemoryStore",
    "InMemoryUnitOfWork",
    "InvalidStateError",
    "InvariantViolation",
    "JsonCodec",
    "Predicate",
    "ProcessManager",
    "ProcessManagerHandler",
    "Query",
    "Repository",
    "ScheduledMessage",
    "SchedulingUnitOfWork",
    "SystemClock",
    "Trace",
    "TransactionBoundaryError",
    "UncommittedChangesWarning",
    "UnitOfWork",
    "UnknownTypeError",
    "ValueObject",
    "current_trace",
    "retry_on_conflict",
]

_publish(__name__, globals(), __all__)
