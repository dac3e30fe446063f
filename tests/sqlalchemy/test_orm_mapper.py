"""An ORM mapper (declarative models of the user's own) honours the unit-of-work contract."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm.exc import StaleDataError
from tests.sqlalchemy.async_engines import ASYNC_DRIVERS, async_url, make_async_engine
from tests.sqlalchemy.conftest import emptied_orm_tables
from tests.sqlalchemy.counter_orm import CounterModel, CounterOrmMapper, TallyModel

import sqlalchemy as sa
from tactical import ConcurrencyError, DeserializationError, EventBus, Field, Query
from tactical.sqlalchemy import (
    AsyncSqlAlchemyUnitOfWork,
    OrmMapper,
    SqlAlchemyUnitOfWork,
    outbox_table,
)
from tactical.testing import (
    AsyncUnitOfWorkContract,
    AsyncUnitOfWorkFactory,
    Counter,
    CounterTicked,
    Tag,
    UnitOfWorkContract,
    UnitOfWorkFactory,
)


class TestOrmMapperContract(UnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self, orm_engine: sa.Engine) -> UnitOfWorkFactory:
        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> SqlAlchemyUnitOfWork:
            return SqlAlchemyUnitOfWork(
                orm_engine,
                bus,
                mappers=[CounterOrmMapper()],
                allow_multiple_aggregates=allow_multiple_aggregates,
            )

        return factory


class TestAsyncOrmMapperContract(AsyncUnitOfWorkContract):
    @pytest.fixture(params=ASYNC_DRIVERS)
    def unit_of_work_factory(
        self,
        request: pytest.FixtureRequest,
        tmp_path: Path,
        run_on_loop: Callable[[Coroutine[Any, Any, Any]], Any],
    ) -> Iterator[AsyncUnitOfWorkFactory]:
        driver: str = request.param
        url = async_url(request, driver, tmp_path)
        emptied_orm_tables(
            request.getfixturevalue("sqlite_engine" if driver == "aiosqlite" else "postgres_engine")
        )
        engine = make_async_engine(driver, url)

        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> AsyncSqlAlchemyUnitOfWork:
            return AsyncSqlAlchemyUnitOfWork(
                engine,
                bus,
                mappers=[CounterOrmMapper()],
                allow_multiple_aggregates=allow_multiple_aggregates,
            )

        yield factory
        run_on_loop(engine.dispose())


def saved(engine: sa.Engine, counter: Counter) -> Counter:
    with SqlAlchemyUnitOfWork(engine, mappers=[CounterOrmMapper()]) as uow:
        uow.repository(Counter).add(counter)
        uow.commit()
    return counter


def rows(engine: sa.Engine) -> tuple[list[Any], list[Any]]:
    """(counters, tallies) as stored, each row as a tuple."""
    with engine.connect() as connection:
        counters = connection.execute(
            sa.select(CounterModel.__table__).order_by(sa.text("name"))
        ).all()
        tallies = connection.execute(
            sa.select(TallyModel.__table__).order_by(sa.text("counter_id, position"))
        ).all()
    return [tuple(r) for r in counters], [tuple(r) for r in tallies]


class TestOrmMapper:
    def test_rows_land_in_the_models_tables_with_the_events_in_the_outbox(
        self, orm_engine: sa.Engine
    ) -> None:
        """An added aggregate is a root row at version 1 and child rows; its event is in the outbox."""
        counter = Counter(uuid4(), "mapped", tag=Tag("t"))
        counter.mark(7)
        counter.tick()
        saved(orm_engine, counter)
        counters, tallies = rows(orm_engine)
        with orm_engine.connect() as connection:
            events = connection.execute(
                sa.select(outbox_table.c.aggregate_version).where(
                    outbox_table.c.aggregate_id == str(counter.id)
                )
            ).all()
        assert counters == [(counter.id, 1, "mapped", 1, "t")]
        assert tallies == [(counter.id, 7, 0, 1)]
        assert events == [(1,)]

    def test_a_change_of_children_only_bumps_the_root_version(self, orm_engine: sa.Engine) -> None:
        """Marking a child tally (nothing on the root row changes) still bumps the version."""
        counter = saved(orm_engine, Counter(uuid4(), "children"))
        with SqlAlchemyUnitOfWork(orm_engine, mappers=[CounterOrmMapper()]) as uow:
            uow.repository(Counter).require(counter.id).mark(1)
            uow.commit()
        with SqlAlchemyUnitOfWork(orm_engine, mappers=[CounterOrmMapper()]) as uow:
            loaded = uow.repository(Counter).require(counter.id)
        assert (loaded.version, [(t.id, t.marks) for t in loaded.tallies]) == (2, [(1, 1)])

    def test_concurrent_changes_of_children_conflict(self, orm_engine: sa.Engine) -> None:
        """Two writers changing only children: the later gets ConcurrencyError from StaleDataError."""
        counter = Counter(uuid4(), "race")
        counter.mark(1)
        saved(orm_engine, counter)
        mappers = [CounterOrmMapper()]
        with (
            SqlAlchemyUnitOfWork(orm_engine, mappers=mappers) as first,
            SqlAlchemyUnitOfWork(orm_engine, mappers=mappers) as second,
        ):
            first.repository(Counter).require(counter.id).mark(1)
            second.repository(Counter).require(counter.id).mark(2)
            first.commit()
            with pytest.raises(ConcurrencyError, match=f"Counter {counter.id}") as raised:
                second.commit()
        assert isinstance(raised.value.__cause__, StaleDataError)
        assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
        assert rows(orm_engine)[1] == [(counter.id, 1, 0, 2)]

    def test_a_child_left_out_of_the_aggregate_is_deleted(self, orm_engine: sa.Engine) -> None:
        """A tally removed from the list is deleted through the delete-orphan cascade."""
        counter = Counter(uuid4(), "orphans")
        for tally in (1, 2, 3):
            counter.mark(tally)
        saved(orm_engine, counter)
        with SqlAlchemyUnitOfWork(orm_engine, mappers=[CounterOrmMapper()]) as uow:
            del uow.repository(Counter).require(counter.id).tallies[1]
            uow.commit()
        assert [(t[1], t[2]) for t in rows(orm_engine)[1]] == [(1, 0), (3, 1)]

    def test_removing_deletes_the_root_and_its_children(self, orm_engine: sa.Engine) -> None:
        """A removed aggregate leaves no row behind, children included."""
        counter = Counter(uuid4(), "gone")
        counter.mark(1)
        kept = saved(orm_engine, Counter(uuid4(), "kept"))
        saved(orm_engine, counter)
        with SqlAlchemyUnitOfWork(orm_engine, mappers=[CounterOrmMapper()]) as uow:
            repository = uow.repository(Counter)
            repository.remove(repository.require(counter.id))
            uow.commit()
        assert rows(orm_engine) == ([(kept.id, 1, "kept", 0, None)], [])

    def test_a_failing_outbox_insert_rolls_back_the_model_writes(
        self, orm_engine: sa.Engine
    ) -> None:
        """The ORM session writes in the unit of work's transaction: the outbox failing undoes them."""
        first = Counter(uuid4(), "first")
        first.tick()
        taken = first.pending_events[0].event_id
        saved(orm_engine, first)
        before = rows(orm_engine)
        with SqlAlchemyUnitOfWork(orm_engine, mappers=[CounterOrmMapper()]) as uow:
            loaded = uow.repository(Counter).require(first.id)
            loaded.rename("second")
            loaded.mark(4)
            loaded.record(CounterTicked(first.id, 9, event_id=taken))  # a duplicate event id
            with pytest.raises(sa.exc.IntegrityError):
                uow.commit()
        assert rows(orm_engine) == before
        assert loaded.version == 1

    def test_a_row_the_domain_refuses_names_the_table_and_id(self, orm_engine: sa.Engine) -> None:
        """An empty tag text (Tag refuses it) is a DeserializationError naming table and id."""
        counter = saved(orm_engine, Counter(uuid4(), "tagged", tag=Tag("t")))
        with orm_engine.begin() as connection:
            connection.execute(sa.update(CounterModel.__table__).values(tag_text=""))
        with (
            SqlAlchemyUnitOfWork(orm_engine, mappers=[CounterOrmMapper()]) as uow,
            pytest.raises(
                DeserializationError,
                match=f"malformed row in orm_counters for id {counter.id}: InvariantViolation",
            ),
        ):
            uow.repository(Counter).get(counter.id)

    def test_load_all_translates_an_orm_query(self, orm_engine: sa.Engine) -> None:
        """``load_all`` runs an ORM select on the connection and returns aggregates with versions."""
        low, high = Counter(uuid4(), "low", 1), Counter(uuid4(), "high", 5)
        high.mark(3)
        for counter in (low, high):
            saved(orm_engine, counter)
        mapper = CounterOrmMapper()
        with orm_engine.connect() as connection:
            found = mapper.load_all(
                connection,
                sa.select(CounterModel).where(CounterModel.count > 0).order_by(CounterModel.count),
            )
        assert [(c.name, c.version, len(c.tallies)) for c in found] == [
            ("low", 1, 0),
            ("high", 1, 1),
        ]

    def test_load_all_reads_aggregates_that_are_saved_only_once_added(
        self, orm_engine: sa.Engine
    ) -> None:
        """What ``load_all`` returns is not tracked: a change is saved once it is added, as documented."""
        counter = saved(orm_engine, Counter(uuid4(), "read"))
        mapper = CounterOrmMapper()
        with SqlAlchemyUnitOfWork(orm_engine, mappers=[mapper]) as uow:
            [found] = mapper.load_all(uow.connection, sa.select(CounterModel))
            found.rename("not saved")
            uow.commit()
        assert rows(orm_engine)[0] == [(counter.id, 1, "read", 0, None)]
        with SqlAlchemyUnitOfWork(orm_engine, mappers=[mapper]) as uow:
            [found] = mapper.load_all(uow.connection, sa.select(CounterModel))
            found.rename("saved")
            uow.repository(Counter).add(found)
            uow.commit()
        assert rows(orm_engine)[0] == [(counter.id, 2, "saved", 0, None)]

    def test_to_model_giving_another_primary_key_is_refused(self, orm_engine: sa.Engine) -> None:
        """A to_model that keys the row under another id would overwrite it: refused, nothing stored."""

        class Misplaced(CounterOrmMapper):
            def to_model(self, aggregate: Counter) -> CounterModel:
                model = super().to_model(aggregate)
                model.id = uuid4()
                return model

        with SqlAlchemyUnitOfWork(orm_engine, mappers=[Misplaced()]) as uow:
            counter = Counter(uuid4(), "misplaced")
            uow.repository(Counter).add(counter)
            with pytest.raises(ValueError, match=f"Counter {counter.id} the primary key"):
                uow.commit()
        assert rows(orm_engine) == ([], [])

    def test_to_model_returning_another_type_is_refused(self, orm_engine: sa.Engine) -> None:
        """to_model must return the mapper's model class; anything else is refused at commit."""

        class Untranslated(CounterOrmMapper):
            def to_model(self, aggregate: Counter) -> CounterModel:
                return aggregate  # type: ignore[return-value]  # pyright: ignore[reportReturnType]

        with SqlAlchemyUnitOfWork(orm_engine, mappers=[Untranslated()]) as uow:
            uow.repository(Counter).add(Counter(uuid4(), "untranslated"))
            with pytest.raises(TypeError, match=r"to_model\(\) returned .*not a CounterModel"):
                uow.commit()
        assert rows(orm_engine) == ([], [])

    def test_to_domain_returning_another_type_is_refused(self, orm_engine: sa.Engine) -> None:
        """to_domain must return the mapper's aggregate type; anything else names the row."""

        class Confused(CounterOrmMapper):
            def to_domain(self, model: CounterModel) -> Counter:
                return model  # type: ignore[return-value]  # pyright: ignore[reportReturnType]

        counter = saved(orm_engine, Counter(uuid4(), "confused"))
        with (
            SqlAlchemyUnitOfWork(orm_engine, mappers=[Confused()]) as uow,
            pytest.raises(DeserializationError, match=f"orm_counters with id {counter.id}"),
        ):
            uow.repository(Counter).get(counter.id)


class NamedBase(DeclarativeBase):
    pass


class NamedCounterModel(NamedBase):
    """The design document's way: the id is stored as text (``str(policy_id)``)."""

    __tablename__ = "orm_named_counters"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    version: Mapped[int] = mapped_column()
    name: Mapped[str] = mapped_column(sa.String(100))

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class NamedCounterMapper(OrmMapper[Counter, UUID, NamedCounterModel]):
    aggregate_type = Counter
    model = NamedCounterModel

    def primary_key(self, aggregate_id: UUID) -> object:
        return str(aggregate_id)

    def to_model(self, aggregate: Counter) -> NamedCounterModel:
        return NamedCounterModel(id=str(aggregate.id), name=aggregate.name)

    def to_domain(self, model: NamedCounterModel) -> Counter:
        return Counter(UUID(model.id), model.name)


class TestPrimaryKey:
    def test_a_text_key_is_loaded_written_and_version_checked(self, engine: sa.Engine) -> None:
        """primary_key() maps the UUID id to the text column, for loads, writes and conflicts."""
        NamedBase.metadata.create_all(engine)
        mappers = [NamedCounterMapper()]
        counter = Counter(uuid4(), "named")
        with SqlAlchemyUnitOfWork(engine, mappers=mappers) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        with (
            SqlAlchemyUnitOfWork(engine, mappers=mappers) as first,
            SqlAlchemyUnitOfWork(engine, mappers=mappers) as second,
        ):
            first.repository(Counter).require(counter.id).rename("first")
            second.repository(Counter).require(counter.id).rename("second")
            first.commit()
            with pytest.raises(ConcurrencyError, match="it is at version 2"):
                second.commit()
        with SqlAlchemyUnitOfWork(engine, mappers=mappers) as uow:
            stored = uow.repository(Counter).require(counter.id)
        assert (stored.name, stored.version) == ("first", 2)


class UniqueNameModel(NamedBase):
    """A root table with a business key of its own: a unique name beside the id."""

    __tablename__ = "orm_unique_names"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column()
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class UniqueNameMapper(OrmMapper[Counter, UUID, UniqueNameModel]):
    aggregate_type = Counter
    model = UniqueNameModel

    def to_model(self, aggregate: Counter) -> UniqueNameModel:
        return UniqueNameModel(id=aggregate.id, name=aggregate.name)

    def to_domain(self, model: UniqueNameModel) -> Counter:
        return Counter(model.id, model.name)


class TestRefusedInsert:
    def test_another_constraint_refusing_an_insert_is_no_concurrency_error(
        self, engine: sa.Engine
    ) -> None:
        """A new aggregate whose row breaks a unique column (not its id) gets the IntegrityError.

        No other writer stored this id, so it is not a ConcurrencyError (which says "it was
        removed" and asks for a retry that can never succeed).
        """
        NamedBase.metadata.create_all(engine, tables=[UniqueNameModel.__table__])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
        with engine.begin() as connection:
            connection.execute(sa.delete(UniqueNameModel))
        mappers = [UniqueNameMapper()]
        with SqlAlchemyUnitOfWork(engine, mappers=mappers) as uow:
            uow.repository(Counter).add(Counter(uuid4(), "taken"))
            uow.commit()
        second = Counter(uuid4(), "taken")
        with SqlAlchemyUnitOfWork(engine, mappers=mappers) as uow:
            uow.repository(Counter).add(second)
            with pytest.raises(sa.exc.IntegrityError):
                uow.commit()
        assert second.version == 0
        with engine.connect() as connection:
            assert (
                connection.execute(
                    sa.select(sa.func.count()).select_from(UniqueNameModel)
                ).scalar_one()
                == 1
            )

    def test_an_insert_of_a_stored_id_is_still_a_concurrency_error(self, engine: sa.Engine) -> None:
        """The id itself taken (another writer added it first): ConcurrencyError, both versions."""
        NamedBase.metadata.create_all(engine, tables=[UniqueNameModel.__table__])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
        with engine.begin() as connection:
            connection.execute(sa.delete(UniqueNameModel))
        mappers = [UniqueNameMapper()]
        counter_id = uuid4()
        with SqlAlchemyUnitOfWork(engine, mappers=mappers) as uow:
            uow.repository(Counter).add(Counter(counter_id, "first"))
            uow.commit()
        with SqlAlchemyUnitOfWork(engine, mappers=mappers) as uow:
            uow.repository(Counter).add(Counter(counter_id, "second"))
            with pytest.raises(ConcurrencyError, match="the database refused the insert") as raised:
                uow.commit()
        assert (raised.value.expected_version, raised.value.actual_version) == (0, 1)


class TestOrmMapperFinders:
    def test_a_query_on_a_field_without_a_column_names_it(self, orm_engine: sa.Engine) -> None:
        """A path the mapper's columns do not list is a ValueError saying where to add it."""
        with (
            SqlAlchemyUnitOfWork(orm_engine, mappers=[CounterOrmMapper()]) as uow,
            pytest.raises(
                ValueError,
                match=r"CounterOrmMapper maps no column for 'version'.*CounterOrmMapper.columns",
            ),
        ):
            uow.repository(Counter).find(Query(Counter, Field("version") == 1))

    def test_an_id_is_compared_as_its_primary_key(self, engine: sa.Engine) -> None:
        """Field("id") needs no column: it is the primary key, compared with primary_key(id)."""
        NamedBase.metadata.create_all(engine)
        mappers = [NamedCounterMapper()]
        wanted, other = Counter(uuid4(), "wanted"), Counter(uuid4(), "other")
        with SqlAlchemyUnitOfWork(engine, mappers=mappers, allow_multiple_aggregates=True) as uow:
            uow.repository(Counter).add(wanted)
            uow.repository(Counter).add(other)
            uow.commit()
        with SqlAlchemyUnitOfWork(engine, mappers=mappers) as uow:
            found = uow.repository(Counter).find(Query(Counter, Field("id") == wanted.id))
            assert [(c.id, c.name, c.version) for c in found] == [(wanted.id, "wanted", 1)]
            assert found[0] is uow.repository(Counter).require(wanted.id)


class UnversionedModel(NamedBase):
    __tablename__ = "orm_unversioned"

    id: Mapped[UUID] = mapped_column(primary_key=True)


class TextVersionModel(NamedBase):
    __tablename__ = "orm_text_version"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(sa.String(36))

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class StampedModel(NamedBase):
    __tablename__ = "orm_stamped"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column()

    __mapper_args__ = {  # noqa: RUF012
        "version_id_col": version,
        "version_id_generator": lambda version: (version or 0) + 10,
    }


def mapper_of(model: type[Any], aggregate: object = Counter) -> OrmMapper[Any, Any, Any]:
    class Mapper(OrmMapper[Any, Any, Any]):
        aggregate_type = aggregate  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]

        def to_model(self, aggregate: Any) -> Any:
            raise NotImplementedError

        def to_domain(self, model: Any) -> Any:
            raise NotImplementedError

    Mapper.model = model
    return Mapper()


class TestDeclaration:
    def test_a_model_without_version_id_col_is_refused(self) -> None:
        """SQLAlchemy's version check is the one used: a model without it is refused, named."""
        with pytest.raises(ValueError, match="UnversionedModel has no version_id_col"):
            mapper_of(UnversionedModel)

    def test_a_version_column_that_is_not_an_integer_is_refused(self) -> None:
        """The aggregate's version is an int: a text version column is refused."""
        with pytest.raises(ValueError, match="version_id_col version is VARCHAR"):
            mapper_of(TextVersionModel)

    def test_a_generator_that_does_not_count_by_one_is_refused(self) -> None:
        """Versions are 1, 2, ... as the unit of work counts them: another generator is refused."""
        with pytest.raises(ValueError, match="does not count 1, 2"):
            mapper_of(StampedModel)

    def test_a_class_that_is_not_mapped_is_refused(self) -> None:
        """``model`` must be an ORM-mapped class."""
        with pytest.raises(TypeError, match="model must be an ORM-mapped class, got <class 'str'>"):
            mapper_of(str)

    def test_an_aggregate_type_that_is_not_an_aggregate_is_refused(self) -> None:
        """``aggregate_type`` must be an AggregateRoot subclass."""
        with pytest.raises(TypeError, match="aggregate_type must be an AggregateRoot subclass"):
            mapper_of(CounterModel, aggregate=Tag)


class TestColumnsLeftOut:
    def test_a_column_to_model_leaves_unset_keeps_its_stored_value(
        self, orm_engine: sa.Engine
    ) -> None:
        """Why to_model must set every column (as documented): a merge skips what is unset."""

        class Sparse(CounterOrmMapper):
            def to_model(self, aggregate: Counter) -> CounterModel:
                model = super().to_model(aggregate)
                if aggregate.tag is None:
                    del model.tag_text  # left out, as `if tag: model.tag_text = ...` would
                return model

        counter = saved(orm_engine, Counter(uuid4(), "tagged", tag=Tag("t")))
        for mapper, expected in ((Sparse(), "t"), (CounterOrmMapper(), None)):
            with SqlAlchemyUnitOfWork(orm_engine, mappers=[mapper]) as uow:
                uow.repository(Counter).require(counter.id).tag = None
                uow.commit()
            assert rows(orm_engine)[0][0][4] == expected
