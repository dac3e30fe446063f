"""The in-memory unit of work refuses what the SQL one refuses, and reads back what it reads.

Each case runs on a fresh in-memory store and on the SQL engine (SQLite file, PostgreSQL):
the commit must fail with the same error type and message on both, leave the same stored
state behind, and an accepted commit must read back the same aggregate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast
from uuid import uuid4

import pytest
from tests.sqlalchemy.main_model import MainEntryBooked, MainLedger

import sqlalchemy as sa
from tactical import (
    AggregateRoot,
    AsyncInMemoryUnitOfWork,
    DomainEvent,
    Entity,
    InMemoryStore,
    InMemoryUnitOfWork,
    UnitOfWork,
    ValueObject,
)
from tactical._codec import JsonCodec
from tactical._structural import structural_state
from tactical.sqlalchemy import SqlAlchemyUnitOfWork


class Amount(ValueObject):
    value: Decimal


class Line(Entity[int]):
    amount: Amount
    note: str = ""


class Probe(AggregateRoot[str]):
    """An aggregate with a field of each kind the codec checks."""

    label: str = "ok"
    ratio: float = 0.5
    price: Decimal = Decimal("1.5")
    count: int = 0
    anything: Any = None
    lines: list[Line] = field(default_factory=list[Line])
    pair: tuple[int, str] = (0, "")

    def relabel(self, label: Any) -> None:
        self.label = label
        self.record(Relabelled(self.id, label))


class Relabelled(DomainEvent):
    probe_id: str
    label: str


class SpecialAmount(Amount):
    """A subclass where a field declares Amount: fields are stored by their declared type."""


NewUnit = Callable[[], UnitOfWork]


def probe(probe_id: str = "p", **fields: Any) -> Probe:
    """A Probe with ``fields`` set past its annotations (the type checker's view of misuse)."""
    made = Probe(probe_id)
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def add(aggregate: AggregateRoot[Any]) -> Callable[[UnitOfWork], None]:
    def act(uow: UnitOfWork) -> None:
        uow.repository(type(aggregate)).add(aggregate)

    return act


def change_stored(**fields: Any) -> Callable[[UnitOfWork], None]:
    """Load the stored probe "p" and set ``fields`` on it."""

    def act(uow: UnitOfWork) -> None:
        loaded = uow.repository(Probe).require("p")
        for name, value in fields.items():
            setattr(loaded, name, value)

    return act


def relabel_stored(label: Any) -> Callable[[UnitOfWork], None]:
    def act(uow: UnitOfWork) -> None:
        uow.repository(Probe).require("p").relabel(label)

    return act


def remove_stored_recording(event: DomainEvent) -> Callable[[UnitOfWork], None]:
    def act(uow: UnitOfWork) -> None:
        loaded = uow.repository(Probe).require("p")
        loaded.record(event)
        uow.repository(Probe).remove(loaded)

    return act


def add_recording(event: DomainEvent) -> Callable[[UnitOfWork], None]:
    def act(uow: UnitOfWork) -> None:
        made = Probe("q")
        made.record(event)
        uow.repository(Probe).add(made)

    return act


def each(*acts: Callable[[UnitOfWork], None]) -> Callable[[UnitOfWork], None]:
    """All of ``acts``, in order, in one unit of work (one commit of several aggregates)."""

    def act(uow: UnitOfWork) -> None:
        for one in acts:
            one(uow)

    return act


def add_two_recording_misfits_latest_first(uow: UnitOfWork) -> None:
    """Add probes "r" and "s"; "s" records its misfit event before "r" does."""
    first, second = Probe("r"), Probe("s")
    second.record(Relabelled("s", 2))  # type: ignore[arg-type]
    first.record(Relabelled("r", 1))  # type: ignore[arg-type]
    uow.repository(Probe).add(first)
    uow.repository(Probe).add(second)


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


_long_event = type("E" * 300, (Relabelled,), {"__module__": __name__})


@dataclass(frozen=True)
class Refusal:
    """A commit both units of work must refuse; ``stored_first`` stores probe "p" before."""

    act: Callable[[UnitOfWork], None]
    stored_first: bool = False
    allow_multiple_aggregates: bool = False


REFUSALS: dict[str, Refusal] = {
    "an int in a Decimal field": Refusal(add(probe(price=1))),
    "a str in an int field": Refusal(add(probe(count="3"))),
    "a float in an int field": Refusal(add(probe(count=1.5))),
    "a NaN float": Refusal(add(probe(ratio=float("nan")))),
    "a NaN Decimal": Refusal(add(probe(price=Decimal("NaN")))),
    "a huge int in a float field": Refusal(add(probe(ratio=10**400))),
    "a string with a NUL": Refusal(add(probe(label="bad\x00"))),
    "a string with a lone surrogate": Refusal(add(probe(label="bad\ud800"))),
    "a set in an Any field": Refusal(add(probe(anything={1, 2}))),
    "a non-str key in an Any field": Refusal(add(probe(anything={1: 2}))),
    "an Any value nested too deeply": Refusal(add(probe(anything=_deep(120)))),
    "a list in a tuple field": Refusal(add(probe(pair=[1, "a"]))),
    "a tuple of the wrong length": Refusal(add(probe(pair=(1, "a", 2)))),
    "a subclass in a value-object field": Refusal(
        add(probe(lines=[Line(1, SpecialAmount(Decimal(1)))]))
    ),
    "a misfit value in a child entity": Refusal(add(probe(lines=[Line(1, Amount(2))]))),  # type: ignore[arg-type]
    "an id over 255 characters": Refusal(add(Probe("x" * 256))),
    "an id with a NUL": Refusal(add(Probe("a\x00"))),
    "an id with a lone surrogate": Refusal(add(Probe("a\ud800"))),
    "an aggregate class of __main__": Refusal(add(MainLedger(uuid4()))),
    "an event class of __main__": Refusal(add_recording(MainEntryBooked(uuid4()))),
    "an event with a misfit value": Refusal(add_recording(Relabelled("q", 3))),  # type: ignore[arg-type]
    "an event with a NUL": Refusal(add_recording(Relabelled("q", "a\x00"))),
    "an event type name over 255 bytes": Refusal(add_recording(_long_event("q", "x"))),
    "a loaded aggregate changed to a misfit value": Refusal(
        change_stored(price=2), stored_first=True
    ),
    "a loaded aggregate recording a misfit event": Refusal(
        relabel_stored(label=7), stored_first=True
    ),
    "a removed aggregate recording a misfit event": Refusal(
        remove_stored_recording(Relabelled("p", 7)),  # type: ignore[arg-type]
        stored_first=True,
    ),
    "a misfit state, then an id no column holds": Refusal(
        each(add(probe("a", price=1)), add(Probe("x" * 256))), allow_multiple_aggregates=True
    ),
    "a misfit event, then a misfit state": Refusal(
        each(add_recording(Relabelled("q", 3)), add(probe("b", count="3"))),  # type: ignore[arg-type]
        allow_multiple_aggregates=True,
    ),
    "misfit events in two aggregates (the first recorded is named)": Refusal(
        add_two_recording_misfits_latest_first, allow_multiple_aggregates=True
    ),
    "a misfit state, then another": Refusal(
        each(add(probe("c", count=1.5)), add(probe("d", price=1))),
        allow_multiple_aggregates=True,
    ),
}


ACCEPTED: dict[str, Callable[[], Probe]] = {
    "an int in a float field": lambda: probe(ratio=1),
    "a bool in an int field": lambda: probe(count=True),
    "a str subclass": lambda: probe(label=type("Name", (str,), {})("ada")),
    "an Any value with nested containers": lambda: probe(anything={"a": [1, {"b": None}]}),
    "child entities and value objects": lambda: probe(
        lines=[Line(1, Amount(Decimal("2.50")), "x"), Line(2, Amount(Decimal(0)))]
    ),
}


@pytest.fixture
def sql(engine: sa.Engine) -> Callable[..., UnitOfWork]:
    def new(**options: Any) -> UnitOfWork:
        return SqlAlchemyUnitOfWork(engine, **options)

    return new


@pytest.fixture
def memory() -> Callable[..., UnitOfWork]:
    codec = JsonCodec()  # a codec of its own, like an engine of its own
    store = InMemoryUnitOfWork().store

    def new(**options: Any) -> UnitOfWork:
        return InMemoryUnitOfWork(store=store, codec=codec, **options)

    return new


def refusal(new: Callable[..., UnitOfWork], case: Refusal) -> tuple[type[BaseException], str]:
    """The error ``case`` raises at commit, and what a fresh unit of work then reads."""
    if case.stored_first:
        with new() as uow:
            uow.repository(Probe).add(Probe("p"))
            uow.commit()
    with new(allow_multiple_aggregates=case.allow_multiple_aggregates) as uow:
        case.act(uow)
        with pytest.raises((TypeError, ValueError)) as caught:
            uow.commit()
    return type(caught.value), str(caught.value)


def stored(new: Callable[..., UnitOfWork], probe_id: str) -> object:
    with new() as uow:
        found = uow.repository(Probe).get(probe_id)
        uow.rollback()
    # repr tells 1 from 1.0 and True, which structural states (compared with ==) do not.
    return None if found is None else (found.version, structural_state(found), repr(found))


class TestMemoryRefusesWhatSqlRefuses:
    @pytest.mark.parametrize("name", list(REFUSALS))
    def test_the_same_commit_fails_with_the_same_error_on_both(
        self,
        name: str,
        memory: Callable[..., UnitOfWork],
        sql: Callable[..., UnitOfWork],
    ) -> None:
        """Same error type and message in memory and in SQL, and the same state left behind."""
        case = REFUSALS[name]
        in_memory, in_sql = refusal(memory, case), refusal(sql, case)
        assert in_memory == in_sql
        for probe_id in ("p", "q"):
            assert stored(memory, probe_id) == stored(sql, probe_id)

    @pytest.mark.parametrize(
        "misfit",
        [{"price": 2}, {"label": 7}],
        ids=["a misfit state", "a misfit event"],
    )
    def test_a_stale_write_with_a_misfit_value_fails_alike(
        self,
        misfit: dict[str, Any],
        memory: Callable[..., UnitOfWork],
        sql: Callable[..., UnitOfWork],
    ) -> None:
        """A value the codec refuses and a version another commit moved on: the same error."""

        def attempt(new: Callable[..., UnitOfWork]) -> object:
            with new() as uow:
                uow.repository(Probe).add(Probe("p"))
                uow.commit()
            with new() as uow:
                loaded = uow.repository(Probe).require("p")
                with new() as other:
                    other.repository(Probe).require("p").count += 1
                    other.commit()
                if "price" in misfit:
                    loaded.price = misfit["price"]
                else:  # the state fits, the event does not
                    loaded.record(Relabelled("p", misfit["label"]))
                with pytest.raises(Exception) as caught:  # noqa: PT011  (compared below)
                    uow.commit()
            return type(caught.value), str(caught.value), stored(new, "p")

        assert attempt(memory) == attempt(sql)

    def test_an_int_in_a_decimal_field_is_a_type_error_naming_the_field(
        self, memory: Callable[..., UnitOfWork]
    ) -> None:
        """The drift that prompted this: it committed in memory and failed in SQL."""
        error_type, message = refusal(memory, REFUSALS["an int in a Decimal field"])
        assert error_type is TypeError
        assert message.startswith("cannot store Probe: price: expected a Decimal, got int 1")
        assert stored(memory, "p") is None

    def test_registered_names_store_main_classes_in_memory_too(self) -> None:
        """A codec with names registered stores __main__ classes, as the SQL one does."""
        codec = JsonCodec()
        codec.register(MainLedger, name="ledger.Ledger")
        codec.register(MainEntryBooked, name="ledger.EntryBooked")
        ledger = MainLedger(uuid4())
        ledger.record(MainEntryBooked(ledger.id))
        uow = InMemoryUnitOfWork(codec=codec)
        with uow:
            uow.repository(MainLedger).add(ledger)
            uow.commit()
        assert uow.codec is codec
        with InMemoryUnitOfWork(store=uow.store, codec=codec) as again:
            assert again.repository(MainLedger).require(ledger.id).version == 1


class TestAsyncMemoryRefusesTheSame:
    @pytest.mark.parametrize("name", [n for n, case in REFUSALS.items() if not case.stored_first])
    async def test_the_async_in_memory_unit_of_work_refuses_as_the_sync_one(
        self, name: str, memory: Callable[..., UnitOfWork]
    ) -> None:
        """It stores through the same store and codec: same error, nothing stored."""
        store, case = InMemoryStore(), REFUSALS[name]
        async with AsyncInMemoryUnitOfWork(
            store=store, codec=JsonCodec(), allow_multiple_aggregates=case.allow_multiple_aggregates
        ) as uow:
            case.act(cast("UnitOfWork", uow))  # add() is a plain call in both
            with pytest.raises((TypeError, ValueError)) as caught:
                await uow.commit()
        assert (type(caught.value), str(caught.value)) == refusal(memory, case)
        assert len(store) == 0


class TestMemoryReadsBackWhatSqlReadsBack:
    @pytest.mark.parametrize("name", list(ACCEPTED))
    def test_an_accepted_aggregate_reads_back_the_same_on_both(
        self,
        name: str,
        memory: Callable[..., UnitOfWork],
        sql: Callable[..., UnitOfWork],
    ) -> None:
        """Values the codec converts (an int in a float field) come back converted on both."""
        for new in (memory, sql):
            with new() as uow:
                uow.repository(Probe).add(ACCEPTED[name]())
                uow.commit()
        from_memory, from_sql = stored(memory, "p"), stored(sql, "p")
        assert from_memory is not None
        assert from_memory == from_sql

    def test_an_int_in_a_float_field_reads_back_as_a_float(
        self, memory: Callable[..., UnitOfWork]
    ) -> None:
        """As from a database: the stored JSON state is what a load rebuilds."""
        with memory() as uow:
            uow.repository(Probe).add(probe(ratio=1))
            uow.commit()
        with memory() as uow:
            ratio = uow.repository(Probe).require("p").ratio
            uow.rollback()
        assert type(ratio) is float


class TestMemoryIsolation:
    def test_mutating_a_loaded_any_value_never_reaches_the_store(self) -> None:
        """A list inside an Any field is the reader's own, as every container it loads."""
        uow = InMemoryUnitOfWork()
        with uow:
            uow.repository(Probe).add(probe(anything={"items": [1]}))
            uow.commit()
        with uow:
            loaded = uow.repository(Probe).require("p")
            loaded.anything["items"].append(2)
            loaded.lines.append(Line(1, Amount(Decimal(1))))
            uow.rollback()
        with uow:
            again = uow.repository(Probe).require("p")
            assert (again.anything, again.lines) == ({"items": [1]}, [])
            uow.rollback()

    def test_a_codec_that_is_not_a_json_codec_is_refused(self) -> None:
        """Found when the unit of work is made, not at its first commit."""
        with pytest.raises(TypeError, match=r"codec must be a JsonCodec or None, got dict"):
            InMemoryUnitOfWork(codec={})  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
