"""A Hypothesis state machine drives units of work on one store against a simple model."""

from __future__ import annotations

import warnings
from uuid import UUID, uuid4

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tactical import (
    AsyncInMemoryUnitOfWork,
    ConcurrencyError,
    InMemoryStore,
    InMemoryUnitOfWork,
    TransactionBoundaryError,
    UncommittedChangesWarning,
    UnitOfWork,
)
from tactical.testing import Counter
from tactical.testing._async_driver import AsyncDriver, SyncView

WRITERS = 2
IDS = 3
writer = st.integers(0, WRITERS - 1)
which = st.integers(0, IDS - 1)


class UnitOfWorkMachine(RuleBasedStateMachine):
    """Two writers open transactions on a few counters, tick them, commit or roll back, race.

    The model is what must be committed: id -> (count, version). Each writer remembers what it
    touched in its open transaction: (count when loaded, version when loaded or 0 if added,
    ticks since). A commit must land exactly when nobody committed those aggregates since.
    Writer 0 keeps the one-aggregate rule (a commit changing two is refused, storing nothing);
    writer 1 opts out of it. Leaving a block with pending changes must warn, and only then.
    """

    def __init__(self) -> None:
        super().__init__()
        self.store = InMemoryStore()
        self.ids = [uuid4() for _ in range(IDS)]
        self.model: dict[UUID, tuple[int, int]] = {}
        self.writers: list[UnitOfWork] = [
            InMemoryUnitOfWork(store=self.store, allow_multiple_aggregates=w > 0)
            for w in range(WRITERS)
        ]
        self.open = [False] * WRITERS
        self.touched: list[dict[UUID, tuple[int, int, int]]] = [{} for _ in range(WRITERS)]

    def _ensure_open(self, w: int) -> UnitOfWork:
        if not self.open[w]:
            self.writers[w].__enter__()
            self.open[w] = True
            self.touched[w] = {}
        return self.writers[w]

    def _close(self, w: int, *, pending: bool = False) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.writers[w].__exit__(None, None, None)
        self.open[w] = False
        assert [type(c.message) for c in caught] == [UncommittedChangesWarning] * pending

    def _writes(self, w: int) -> dict[UUID, tuple[int, int]]:
        return {
            cid: (base + ticks, version)
            for cid, (base, version, ticks) in self.touched[w].items()
            if version == 0 or ticks > 0
        }

    @rule(w=writer, i=which)
    def add(self, w: int, i: int) -> None:
        uow, cid = self._ensure_open(w), self.ids[i]
        if cid in self.touched[w]:
            return
        existing = uow.repository(Counter).get(cid)
        if existing is not None:
            # The get loaded it into this transaction: later ticks start from this state.
            assert (existing.count, existing.version) == self.model[cid]
            self.touched[w][cid] = (existing.count, existing.version, 0)
            return
        uow.repository(Counter).add(Counter(cid, "c"))
        self.touched[w][cid] = (0, 0, 0)

    @rule(w=writer, i=which, ticks=st.integers(1, 2))
    def tick(self, w: int, i: int, ticks: int) -> None:
        uow, cid = self._ensure_open(w), self.ids[i]
        counter = uow.repository(Counter).get(cid)
        if counter is None:
            assert cid not in self.touched[w]
            return
        if cid not in self.touched[w]:
            # Loading reads committed state: the model's, at the moment of loading.
            assert (counter.count, counter.version) == self.model[cid]
            self.touched[w][cid] = (counter.count, counter.version, 0)
        for _ in range(ticks):
            counter.tick()
        base, version, done = self.touched[w][cid]
        self.touched[w][cid] = (base, version, done + ticks)

    @rule(w=writer)
    def commit(self, w: int) -> None:
        if not self.open[w]:
            return
        writes = self._writes(w)
        if len(writes) > 1 and w == 0:
            with pytest.raises(TransactionBoundaryError):
                self.writers[w].commit()
            self._close(w)
            return
        stale = [
            cid
            for cid, (_, version) in writes.items()
            if (cid in self.model if version == 0 else self.model[cid][1] != version)
        ]
        try:
            self.writers[w].commit()
        except ConcurrencyError:
            assert stale, "commit refused although nobody else wrote those aggregates"
        else:
            assert not stale, f"commit accepted a stale write of {stale}"
            for cid, (count, version) in writes.items():
                self.model[cid] = (count, version + 1)
        finally:
            self._close(w)

    @rule(w=writer)
    def leave_without_commit(self, w: int) -> None:
        if self.open[w]:
            self._close(w, pending=bool(self._writes(w)))

    @rule(w=writer)
    def rollback(self, w: int) -> None:
        if self.open[w]:
            self.writers[w].rollback()
            self.touched[w] = {}

    @invariant()
    def store_matches_model(self) -> None:
        with InMemoryUnitOfWork(store=self.store) as reader:
            for cid, (count, version) in self.model.items():
                stored = reader.repository(Counter).require(cid)
                assert (stored.count, stored.version) == (count, version)
        assert len(self.store) == len(self.model)

    def teardown(self) -> None:
        for w, is_open in enumerate(self.open):
            if is_open:
                self._close(w, pending=bool(self._writes(w)))


UnitOfWorkMachine.TestCase.settings = settings(
    max_examples=75, stateful_step_count=40, deadline=None
)
TestUnitOfWorkMachine = UnitOfWorkMachine.TestCase


class MixedUnitOfWorkMachine(UnitOfWorkMachine):
    """The same rules with writer 1 an async unit of work: one core, one store, same model."""

    def __init__(self) -> None:
        super().__init__()
        self.driver = AsyncDriver()
        self.writers[1] = SyncView(
            AsyncInMemoryUnitOfWork(store=self.store, allow_multiple_aggregates=True), self.driver
        )

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.driver.close()


MixedUnitOfWorkMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=40, deadline=None
)
TestMixedUnitOfWorkMachine = MixedUnitOfWorkMachine.TestCase
