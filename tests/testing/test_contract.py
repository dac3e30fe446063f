"""The unit-of-work contract suite runs against any UnitOfWork, not only tactical's own."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self, TypeVar

import pytest

from tactical import AggregateRoot, EventBus, InMemoryStore, InMemoryUnitOfWork, Repository
from tactical._uow import TransactionalUnitOfWork
from tactical.testing import UnitOfWorkContract, UnitOfWorkFactory

A = TypeVar("A", bound=AggregateRoot[Any])


class AuditedUnitOfWork:
    """A user's own unit of work: it implements the protocol by wrapping, not subclassing."""

    def __init__(self, inner: InMemoryUnitOfWork, commits: list[str]) -> None:
        self._inner = inner
        self._commits = commits

    def __enter__(self) -> Self:
        self._inner.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._inner.__exit__(exc_type, exc, traceback)

    def repository(self, aggregate_type: type[A]) -> Repository[A, Any]:
        return self._inner.repository(aggregate_type)

    def commit(self) -> None:
        self._inner.commit()
        self._commits.append("commit")

    def rollback(self) -> None:
        self._inner.rollback()


class TestAuditedUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def commits(self) -> list[str]:
        return []

    @pytest.fixture
    def unit_of_work_factory(self, commits: list[str]) -> UnitOfWorkFactory:
        store = InMemoryStore()

        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> AuditedUnitOfWork:
            inner = InMemoryUnitOfWork(
                bus, store=store, allow_multiple_aggregates=allow_multiple_aggregates
            )
            return AuditedUnitOfWork(inner, commits)

        return factory

    def test_the_suite_drives_the_wrapper_itself(
        self, unit_of_work_factory: UnitOfWorkFactory, commits: list[str]
    ) -> None:
        """The units of work the suite uses are the user's, not tactical's base class."""
        uow = unit_of_work_factory()
        assert not isinstance(uow, TransactionalUnitOfWork)
        self.saved_counter(unit_of_work_factory)
        assert commits == ["commit"]
