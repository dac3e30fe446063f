"""Finders cannot drift: the SQL a Query compiles to finds what Query.matches defines.

Random conditions over counters with awkward values (no tag, upper case before lower case,
non-ASCII text, negative counts) are answered by the SQL unit of work, on its JSON
documents, through a relational mapper's columns and through an ORM mapper's model
attributes, on SQLite and PostgreSQL, and
compared with the Python definition the in-memory store evaluates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.sqlalchemy.counter_mapping import CounterMapper
from tests.sqlalchemy.counter_orm import CounterOrmMapper

import sqlalchemy as sa
from tactical import DeserializationError, Field, InMemoryUnitOfWork, JsonCodec, Predicate, Query
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, aggregates_table
from tactical.testing import Counter, Tag

NAMES = ["Zed", "apple", "\u00c9mile", "b", "", "zz top", "Apple"]
TEXTS = [None, "odd", "even", "Odd", "\u00e9t\u00e9"]
COUNTERS = [
    Counter(
        UUID(int=index + 1),
        NAMES[index % len(NAMES)],
        (index * 7) % 11 - 4,
        None if TEXTS[index % len(TEXTS)] is None else Tag(str(TEXTS[index % len(TEXTS)])),
    )
    for index in range(14)
]
TAGGED = [t for t in TEXTS if t is not None]

names = st.sampled_from([*NAMES, "a", "\u00ff", "zz"])
counts = st.integers(-6, 8)
texts = st.sampled_from([*TAGGED, "p"])


def comparisons(field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Predicate]:
    f = Field(field)
    return st.one_of(
        values.map(lambda v: f == v),
        values.map(lambda v: f != v),
        values.map(lambda v: f < v),
        values.map(lambda v: f <= v),
        values.map(lambda v: f > v),
        values.map(lambda v: f >= v),
        st.lists(values, max_size=3).map(f.one_of),
    )


atoms = st.one_of(
    comparisons("name", names),
    comparisons("count", counts),
    comparisons("tag.text", texts),
    st.just(Field("tag.text") == None),  # noqa: E711
    st.sampled_from(COUNTERS).map(lambda c: Field("id") == c.id),
)
predicates = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: p[0] & p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] | p[1]),
        inner.map(lambda p: ~p),
    ),
    max_leaves=5,
)


def expected(predicate: Predicate) -> list[UUID]:
    codec = JsonCodec()
    return sorted(c.id for c in COUNTERS if Query(Counter, predicate).matches(codec.encode(c)))


def store(uow: Any) -> None:
    with uow:
        for counter in COUNTERS:
            uow.repository(Counter).add(
                Counter(counter.id, counter.name, counter.count, counter.tag)
            )
        uow.commit()


# The mapped table (whose name column a collation test alters) of each storage.
STORAGES = {"documents": None, "mapper": "contract_counters", "orm": "orm_counters"}


@pytest.fixture(params=list(STORAGES))
def stored_uow(
    request: pytest.FixtureRequest, mapped_engine: sa.Engine, orm_engine: sa.Engine
) -> Iterator[SqlAlchemyUnitOfWork]:
    storage: str = request.param
    mappers = {"documents": [], "mapper": [CounterMapper()], "orm": [CounterOrmMapper()]}[storage]
    table = STORAGES[storage]
    # On PostgreSQL the mapped name column gets a collation that orders "apple" before
    # "Zed" (the test database's own is C.UTF-8): the finder must order by code point all
    # the same.
    icu = table is not None and mapped_engine.dialect.name == "postgresql"
    if icu:
        _collate_names(mapped_engine, table, "en-x-icu")
    uow = SqlAlchemyUnitOfWork(mapped_engine, mappers=mappers, allow_multiple_aggregates=True)
    store(uow)
    yield uow
    if icu:
        _collate_names(mapped_engine, table, "default")


def _collate_names(engine: sa.Engine, table: str, collation: str) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f'ALTER TABLE {table} ALTER COLUMN name TYPE varchar(100) COLLATE "{collation}"'
        )


class TestFindersCannotDrift:
    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(predicate=predicates)
    def test_sql_finds_what_the_query_defines(
        self, stored_uow: SqlAlchemyUnitOfWork, predicate: Predicate
    ) -> None:
        """The SQL condition and Query.matches select the same counters, whatever the condition."""
        with stored_uow:
            found = stored_uow.repository(Counter).find(Query(Counter, predicate))
        assert sorted(c.id for c in found) == expected(predicate)

    @settings(max_examples=60, deadline=None)
    @given(predicate=predicates)
    def test_the_in_memory_store_finds_what_the_query_defines(self, predicate: Predicate) -> None:
        """The in-memory store's rows and Query.matches select the same counters."""
        uow = InMemoryUnitOfWork(allow_multiple_aggregates=True)
        store(uow)
        with uow:
            found = uow.repository(Counter).find(Query(Counter, predicate))
        assert sorted(c.id for c in found) == expected(predicate)


class TestFinderErrors:
    def test_a_copied_document_is_named_not_returned(self, engine: sa.Engine) -> None:
        """A row whose state holds another aggregate's id raises DeserializationError naming it."""
        counter = Counter(UUID(int=1), "original", 1)
        uow = SqlAlchemyUnitOfWork(engine)
        with uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        with engine.begin() as connection:
            connection.execute(aggregates_table.update().values(aggregate_id=str(UUID(int=2))))
        with uow, pytest.raises(DeserializationError, match=r"has id .*not the row's"):
            uow.repository(Counter).find(Query(Counter, Field("count") == 1))

    def test_missing_tables_say_how_to_create_them(self, tmp_path: Path) -> None:
        """A finder on a database without tactical's tables notes create_schema."""
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        try:
            with SqlAlchemyUnitOfWork(engine) as uow, pytest.raises(sa.exc.OperationalError) as e:
                uow.repository(Counter).find(Query(Counter))
            assert "create_schema" in "".join(getattr(e.value, "__notes__", []))
        finally:
            engine.dispose()
