"""The outbox index benchmark's tables take the rows tactical writes (no timing is asserted)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sqlalchemy as sa
from benchmarks import _core, bench_indexes
from tactical import JsonCodec
from tactical.sqlalchemy import outbox_table


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[sa.Engine]:
    """The benchmark's SQLite file whose outbox has no secondary index."""
    engine = bench_indexes.variant_engine(tmp_path, "none.sqlite3", [])
    yield engine
    engine.dispose()


class TestIndexVariants:
    def test_a_core_create_runs_on_the_outbox_without_secondary_indexes(
        self, bare: sa.Engine
    ) -> None:
        """The copy of the outbox keeps its server defaults, so the baseline's insert works."""
        _core.core_create(bare, JsonCodec(), lambda _: None, events=1)()
        with bare.connect() as connection:
            names = sa.inspect(connection).get_indexes(outbox_table.name)
            count = connection.execute(sa.select(sa.func.count()).select_from(outbox_table))
            assert (names, count.scalar_one()) == ([], 1)

    def test_every_secondary_index_of_the_outbox_is_measured(self, bare: sa.Engine) -> None:
        """Each index of the schema, and each unique column, is a variant of its own."""
        expected = {str(index.name) for index in outbox_table.indexes} | {"unique event_id"}
        assert set(bench_indexes.outbox_indexes(bare.dialect)) == expected

    def test_the_core_baseline_writes_the_partition_key_as_tactical_does(
        self, bare: sa.Engine
    ) -> None:
        """A NULL key would put every baseline row in the index of rows written without one."""
        _core.core_create(bare, JsonCodec(), lambda _: None, events=2)()
        with bare.connect() as connection:
            keys = connection.execute(sa.select(outbox_table.c.partition_key)).scalars()
            assert [key is not None for key in keys] == [True, True]
