"""JsonCodec: round-trips, type names, schema versions and upcasters, and every error path."""

from __future__ import annotations

import dataclasses
import enum
import gc
import json
import math
from dataclasses import field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, NewType, Optional, TypeVar, Union
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tactical import (
    AggregateRoot,
    DeserializationError,
    DomainEvent,
    Entity,
    EventRecord,
    InvariantViolation,
    JsonCodec,
    UnknownTypeError,
    ValueObject,
)

# -- the model under test ----------------------------------------------------------------------

UserId = NewType("UserId", int)
K = TypeVar("K")


class Currency(enum.Enum):
    USD = "USD"
    EUR = "EUR"


class Priority(enum.Enum):
    LOW = 1
    HIGH = 2


class Money(ValueObject):
    amount: Decimal
    currency: Currency


class Period(ValueObject):
    start: date
    end: date

    def validate(self) -> None:
        if self.end < self.start:
            raise InvariantViolation(f"Period end {self.end} is before start {self.start}")


class Claim(Entity[UUID]):
    amount: Money
    filed_at: datetime
    note: str | None = None


class Policy(AggregateRoot[UUID]):
    holder: str
    premium: Money
    period: Period
    claims: list[Claim] = field(default_factory=list[Claim])
    limits: tuple[Money, ...] = ()
    tags: frozenset[str] = frozenset()
    excess: Money | None = None


class Everything(ValueObject):
    """One field of every annotation the codec supports."""

    flag: bool
    count: int
    ratio: float
    text: str
    amount: Decimal
    ref: UUID
    day: date
    at: datetime
    currency: Currency
    priority: Priority
    user: UserId
    grams: Annotated[int, "weight in grams"]
    kind: Literal["a", "b", 3]
    pair: tuple[int, str]
    many: tuple[Money, ...]
    members: frozenset[int]
    unique: set[str]
    periods: list[Period]
    by_name: dict[str, int]
    by_currency: dict[Currency, Decimal]
    by_priority: dict[Priority, str]
    by_number: dict[int, str]
    by_day: dict[date, int]
    by_time: dict[datetime, str]
    by_ref: dict[UUID, bool]
    by_amount: dict[Decimal, str]
    nested: dict[str, list[Money]]
    maybe: Money | None
    optional: Optional[int]  # noqa: UP045  (typing.Union spelling is decoded too)
    either: Union[str, None]  # noqa: UP007
    anything: Any
    nothing: None
    bare_list: list  # type: ignore[type-arg]
    bare_tuple: tuple  # type: ignore[type-arg]
    bare_dict: dict  # type: ignore[type-arg]


class Node(ValueObject):
    """A recursive value: a tree."""

    label: str
    children: tuple[Node, ...] = ()


class Keyed(AggregateRoot[K]):
    """A generic aggregate base whose fields use the id's type parameter."""

    parent: K | None = None
    related: list[K] = field(default_factory=list)  # type: ignore[arg-type]


class Shelf(Keyed[int]):
    label: str = ""


class NumberedShelf(Keyed[Annotated[int, "shelf number"]]):
    """The type argument carries Annotated metadata, which the codec looks through."""


class Audited(AggregateRoot[str]):
    auditor: str = ""


class Archived(AggregateRoot[str]):
    archive: str = ""


class AuditedArchive(Audited, Archived):
    """Reachable from two aggregate bases: discovery must still find it (once)."""


class Derived(ValueObject):
    base: int
    doubled: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "doubled", self.base * 2)


class PremiumChanged(DomainEvent):
    policy_id: UUID
    amount: Decimal
    effective: date
    currency: Currency
    reasons: tuple[str, ...]
    limit: Money | None = None


class AddressChanged(DomainEvent):
    """Schema v3: v1 had ``street`` only, v2 added ``city``, v3 renamed ``street`` to ``line1``."""

    line1: str
    city: str


class Unregistered(DomainEvent):
    detail: str


class Weird(ValueObject):
    payload: bytes


class TwoWay(ValueObject):
    value: int | str


class BoolKeys(ValueObject):
    flags: dict[bool, int]


class TupleKeys(ValueObject):
    grid: dict[tuple[int, int], int]


# -- strategies ---------------------------------------------------------------------------------

# Any whole-second offset (real time zones have no finer ones; Python 3.11's fromisoformat
# drops the microseconds of an offset such as +00:00:00.000001).
offsets = st.integers(-86399, 86399).map(lambda s: timezone(timedelta(seconds=s)))
aware_datetimes = st.datetimes(timezones=offsets | st.just(UTC))
decimals = st.decimals()  # every Decimal, including NaN, sNaN, infinities and -0
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
money = st.builds(Money, decimals, st.sampled_from(Currency))
periods = st.tuples(st.dates(), st.dates()).map(sorted).map(lambda p: Period(p[0], p[1]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite_floats | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=4,
)
claims = st.builds(
    Claim,
    id=st.uuids(),
    amount=money,
    filed_at=aware_datetimes,
    note=st.none() | st.text(),
)
policies = st.builds(
    Policy,
    id=st.uuids(),
    holder=st.text(),
    premium=money,
    period=periods,
    claims=st.lists(claims, max_size=3),
    limits=st.lists(money, max_size=3).map(tuple),
    tags=st.frozensets(st.text(), max_size=4),
    excess=st.none() | money,
    version=st.integers(0, 10**6),
)
everything = st.builds(
    Everything,
    flag=st.booleans(),
    count=st.integers(),
    ratio=finite_floats,
    text=st.text(),
    amount=decimals,
    ref=st.uuids(),
    day=st.dates(),
    at=aware_datetimes,
    currency=st.sampled_from(Currency),
    priority=st.sampled_from(Priority),
    user=st.integers().map(UserId),
    grams=st.integers(),
    kind=st.sampled_from(["a", "b", 3]),
    pair=st.tuples(st.integers(), st.text()),
    many=st.lists(money, max_size=2).map(tuple),
    members=st.frozensets(st.integers(), max_size=3),
    unique=st.sets(st.text(), max_size=3),
    periods=st.lists(periods, max_size=2),
    by_name=st.dictionaries(st.text(), st.integers(), max_size=2),
    by_currency=st.dictionaries(st.sampled_from(Currency), decimals, max_size=2),
    by_priority=st.dictionaries(st.sampled_from(Priority), st.text(), max_size=2),
    by_number=st.dictionaries(st.integers(), st.text(), max_size=2),
    by_day=st.dictionaries(st.dates(), st.integers(), max_size=2),
    by_time=st.dictionaries(aware_datetimes, st.text(), max_size=2),
    by_ref=st.dictionaries(st.uuids(), st.booleans(), max_size=2),
    by_amount=st.dictionaries(st.decimals(allow_nan=False), st.text(), max_size=2),
    nested=st.dictionaries(st.text(), st.lists(money, max_size=2), max_size=2),
    maybe=st.none() | money,
    optional=st.none() | st.integers(),
    either=st.none() | st.text(),
    anything=json_values,
    nothing=st.none(),
    bare_list=st.lists(json_values, max_size=2),
    bare_tuple=st.lists(json_values, max_size=2).map(tuple),
    bare_dict=st.dictionaries(st.text(), json_values, max_size=2),
)
trees = st.recursive(
    st.builds(Node, st.text(max_size=3)),
    lambda inner: st.builds(Node, st.text(max_size=3), st.lists(inner, max_size=3).map(tuple)),
    max_leaves=10,
)
premium_changes = st.builds(
    PremiumChanged,
    policy_id=st.uuids(),
    amount=decimals,
    effective=st.dates(),
    currency=st.sampled_from(Currency),
    reasons=st.lists(st.text(), max_size=3).map(tuple),
    limit=st.none() | money,
    event_id=st.uuids(),
    occurred_at=aware_datetimes,
)


def exact(value: object) -> object:
    """A picture of ``value`` that tells apart what == would not.

    Entities compare by id alone, Decimal('1.0') == Decimal('1.00') and equal instants in
    different offsets are equal: none of that may hide a lossy round-trip.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value),
            tuple(exact(getattr(value, f.name)) for f in dataclasses.fields(value)),
        )
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    if isinstance(value, datetime):
        return ("datetime", value.isoformat())
    if isinstance(value, float):
        return ("float", math.copysign(1.0, value), value)
    if isinstance(value, list | tuple):
        return (type(value), tuple(exact(item) for item in value))
    if isinstance(value, set | frozenset):
        return (type(value), frozenset(exact(item) for item in value))
    if isinstance(value, dict):
        return (dict, frozenset((exact(k), exact(v)) for k, v in value.items()))
    return (type(value), value)


def is_plain_json(value: object) -> bool:
    """True when ``value`` is made only of what json.loads returns."""
    if isinstance(value, dict):
        return all(type(k) is str and is_plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain_json(item) for item in value)
    return value is None or type(value) in (bool, int, float, str)


def through_json(codec: JsonCodec, obj: object) -> object:
    """Encode, check it is plain strict JSON, and decode from the JSON text."""
    encoded = codec.encode(obj)
    assert is_plain_json(encoded)
    text = json.dumps(encoded, allow_nan=False)
    assert json.loads(text) == encoded
    assert codec.dumps(obj) == json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)
    return codec.loads(type(obj), text)


class TestRoundTrip:
    @given(everything)
    def test_every_supported_annotation_round_trips_exactly(self, value: Everything) -> None:
        """A value of every supported annotation comes back from JSON exactly as it was."""
        assert exact(through_json(JsonCodec(), value)) == exact(value)

    @given(money)
    def test_value_objects_round_trip(self, value: Money) -> None:
        """A value object round-trips, Decimal digits and all (NaN and infinities included)."""
        decoded = through_json(JsonCodec(), value)
        assert exact(decoded) == exact(value)
        if not value.amount.is_nan():
            assert decoded == value

    @given(policies)
    def test_aggregates_with_child_entities_round_trip(self, policy: Policy) -> None:
        """An aggregate with a list of child entities round-trips field by field, recursively."""
        codec = JsonCodec()
        state = codec.aggregate_to_state(policy)
        assert "version" not in state
        assert is_plain_json(state)
        stored = json.loads(json.dumps(state, allow_nan=False))
        loaded = codec.aggregate_from_state(Policy, stored, version=policy.version)
        assert exact(loaded) == exact(policy)
        assert [type(c) for c in loaded.claims] == [Claim] * len(policy.claims)

    @given(policies, st.integers(0, 99))
    def test_aggregate_version_comes_from_the_caller(self, policy: Policy, version: int) -> None:
        """The stored version, not anything in the state, sets the loaded aggregate's version."""
        codec = JsonCodec()
        state = {**codec.aggregate_to_state(policy), "version": 12345}
        assert codec.aggregate_from_state(Policy, state, version=version).version == version

    @given(claims)
    def test_entities_round_trip(self, claim: Claim) -> None:
        """A child entity on its own round-trips with its UUID id and aware datetime."""
        assert exact(through_json(JsonCodec(), claim)) == exact(claim)

    @given(premium_changes)
    def test_events_round_trip_through_records(self, event: PremiumChanged) -> None:
        """An event's record rebuilds the same event: id, time, Decimal without float rounding."""
        codec = JsonCodec()
        record = codec.event_to_record(event)
        assert record == EventRecord("tests.test_codec.PremiumChanged", 1, codec.encode(event))
        payload = json.loads(json.dumps(record.payload, allow_nan=False))
        assert type(payload["amount"]) is str
        rebuilt = codec.event_from_record(record.type_name, record.schema_version, payload)
        assert (rebuilt.event_id, rebuilt.occurred_at) == (event.event_id, event.occurred_at)
        assert exact(rebuilt) == exact(event)

    @given(trees)
    def test_recursive_values_round_trip(self, tree: Node) -> None:
        """A value object containing tuples of itself round-trips to any depth."""
        assert through_json(JsonCodec(), tree) == tree

    @given(st.integers(), st.none() | st.integers(), st.lists(st.integers(), max_size=3))
    def test_type_parameters_are_resolved_through_generic_bases(
        self, id_: int, parent: int | None, related: list[int]
    ) -> None:
        """Fields typed with a base's type parameter are read as the concrete argument."""
        shelf = Shelf(id_, parent, related, "top")
        codec = JsonCodec()
        loaded = codec.aggregate_from_state(Shelf, codec.aggregate_to_state(shelf), version=0)
        assert exact(loaded) == exact(shelf)

    def test_annotated_type_arguments_are_read_as_their_type(self) -> None:
        """Keyed[Annotated[int, ...]] stores and reads its ids as plain integers."""
        codec = JsonCodec()
        shelf = NumberedShelf(3, 1, [2])
        state = codec.aggregate_to_state(shelf)
        assert state == {"id": 3, "parent": 1, "related": [2]}
        with pytest.raises(DeserializationError, match=r"related\[0\]: expected an integer"):
            codec.aggregate_from_state(NumberedShelf, {**state, "related": ["2"]}, version=0)

    def test_unbound_type_parameters_are_stored_as_json_values(self) -> None:
        """A generic aggregate used without an argument stores its id as any JSON value."""
        codec = JsonCodec()
        loose = Keyed({"any": ["json"]}, None, [1, "two"])
        loaded = codec.aggregate_from_state(Keyed, codec.aggregate_to_state(loose), version=0)
        assert (loaded.id, loaded.related) == ({"any": ["json"]}, [1, "two"])

    def test_fields_outside_init_are_stored_and_restored(self) -> None:
        """A field with init=False is written, and put back without calling __init__ with it."""
        codec = JsonCodec()
        assert codec.encode(Derived(4)) == {"base": 4, "doubled": 8}
        assert codec.decode(Derived, {"base": 4, "doubled": 8}).doubled == 8
        assert codec.decode(Derived, {"base": 4}).doubled == 8

    @given(st.lists(st.text(max_size=3), max_size=6))
    def test_sets_are_written_in_a_stable_order(self, items: list[str]) -> None:
        """Equal sets give identical JSON text, whatever order they were built in."""
        codec = JsonCodec()
        policy = Policy(
            UUID(int=1), "a", Money(Decimal(1), Currency.USD), Period(date.min, date.max)
        )
        forwards = codec.dumps(dataclasses.replace(policy, tags=frozenset(items)))
        backwards = codec.dumps(dataclasses.replace(policy, tags=frozenset(reversed(items))))
        assert forwards == backwards

    def test_decimals_are_strings_not_floats(self) -> None:
        """A Decimal is written as its exact string, never as a JSON number."""
        encoded = JsonCodec().encode(
            Money(Decimal("0.1000000000000000055511151231257827"), Currency.EUR)
        )
        assert encoded == {"amount": "0.1000000000000000055511151231257827", "currency": "EUR"}

    def test_aware_datetimes_keep_their_offset(self) -> None:
        """An aware datetime comes back with the same instant and the same UTC offset."""
        when = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-7)))
        claim = Claim(UUID(int=5), Money(Decimal(1), Currency.USD), when)
        loaded = through_json(JsonCodec(), claim)
        assert isinstance(loaded, Claim)
        assert loaded.filed_at == when
        assert loaded.filed_at.utcoffset() == timedelta(hours=-7)

    def test_integral_numbers_are_accepted_for_floats(self) -> None:
        """A float field accepts a JSON integer (JSON has one number type) and makes it a float."""
        value = JsonCodec().decode(Everything, {**JsonCodec().encode(_sample()), "ratio": 2})
        assert value.ratio == 2.0
        assert type(value.ratio) is float

    def test_output_is_json_never_pickle(self) -> None:
        """Encoded output is JSON text; the codec modules never reference pickle or marshal."""
        import tactical._codec
        import tactical._codec_plans
        import tactical._codec_values

        text = JsonCodec().dumps(_sample())
        assert isinstance(json.loads(text), dict)
        for module in (tactical._codec, tactical._codec_plans, tactical._codec_values):
            assert not {"pickle", "marshal", "shelve"} & set(vars(module)), module.__name__


def _sample() -> Everything:
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    cash = Money(Decimal("1.50"), Currency.USD)
    return Everything(
        flag=True,
        count=1,
        ratio=0.5,
        text="t",
        amount=Decimal("2.25"),
        ref=UUID(int=7),
        day=date(2024, 1, 2),
        at=moment,
        currency=Currency.EUR,
        priority=Priority.HIGH,
        user=UserId(3),
        grams=10,
        kind=3,
        pair=(1, "one"),
        many=(cash,),
        members=frozenset({1, 2}),
        unique={"u"},
        periods=[Period(date(2024, 1, 1), date(2024, 1, 2))],
        by_name={"n": 1},
        by_currency={Currency.USD: Decimal("0.01")},
        by_priority={Priority.LOW: "low"},
        by_number={-4: "minus four"},
        by_day={date(2024, 1, 1): 1},
        by_time={moment: "then"},
        by_ref={UUID(int=9): True},
        by_amount={Decimal("9.99"): "price"},
        nested={"k": [cash]},
        maybe=cash,
        optional=None,
        either="e",
        anything={"a": [1, None]},
        nothing=None,
        bare_list=[1, "x"],
        bare_tuple=(1, "x"),
        bare_dict={"d": 1},
    )


class TestTypeNames:
    def test_default_name_is_module_and_qualified_name(self) -> None:
        """Unregistered classes are stored under module.QualifiedName at schema version 1."""
        codec = JsonCodec()
        assert codec.type_name(PremiumChanged) == "tests.test_codec.PremiumChanged"
        assert codec.schema_version(PremiumChanged) == 1
        assert codec.resolve("tests.test_codec.PremiumChanged") is PremiumChanged
        assert codec.resolve("tests.test_codec.Policy") is Policy

    def test_an_aggregate_with_two_aggregate_bases_is_found_by_default_name(self) -> None:
        """Discovery walks a class hierarchy with diamonds and still finds the class."""
        codec = JsonCodec()
        assert codec.resolve("tests.test_codec.AuditedArchive") is AuditedArchive
        loaded = codec.aggregate_from_state(
            AuditedArchive,
            codec.aggregate_to_state(AuditedArchive("a", auditor="x", archive="y")),
            version=2,
        )
        assert (loaded.auditor, loaded.archive, loaded.version) == ("x", "y", 2)

    def test_registered_name_overrides_the_default(self) -> None:
        """register(name=...) sets the stored name; the class resolves from it."""
        codec = JsonCodec()
        codec.register(Unregistered, name="audit.Noted")
        event = Unregistered("x")
        record = codec.event_to_record(event)
        assert record.type_name == "audit.Noted"
        assert codec.resolve("audit.Noted") is Unregistered
        assert codec.event_from_record(*record) == event

    def test_a_renamed_class_is_no_longer_found_by_its_default_name(self) -> None:
        """After registering a stable name, the default name resolves only if given as alias."""
        codec = JsonCodec()
        codec.register(Unregistered, name="audit.Noted")
        with pytest.raises(UnknownTypeError, match=r"tests.test_codec.Unregistered"):
            codec.resolve("tests.test_codec.Unregistered")
        codec.register(Unregistered, name="audit.Noted", aliases=("tests.test_codec.Unregistered",))
        assert codec.resolve("tests.test_codec.Unregistered") is Unregistered

    def test_aliases_read_old_data_as_the_class(self) -> None:
        """Data stored under an alias is read as the registered class, written under the name."""
        codec = JsonCodec()
        codec.register(Unregistered, name="audit.Noted", aliases=("legacy.Note", "older.Note"))
        event = Unregistered("kept")
        payload = codec.encode(event)
        for old_name in ("legacy.Note", "older.Note"):
            assert codec.event_from_record(old_name, 1, payload) == event
        assert codec.event_to_record(event).type_name == "audit.Noted"

    def test_names_are_per_codec(self) -> None:
        """A name registered on one codec is unknown to another."""
        one, other = JsonCodec(), JsonCodec()
        one.register(Unregistered, name="audit.Noted")
        assert other.type_name(Unregistered) == "tests.test_codec.Unregistered"
        with pytest.raises(UnknownTypeError):
            other.resolve("audit.Noted")

    def test_a_taken_name_or_alias_is_refused_naming_both_classes(self) -> None:
        """A name or alias already used by another class raises ValueError naming both."""
        codec = JsonCodec()
        codec.register(Unregistered, name="shared.Name", aliases=("shared.Old",))
        for name, aliases in (("shared.Name", ()), ("fresh.Name", ("shared.Old",))):
            with pytest.raises(ValueError, match="already registered") as refused:
                codec.register(PremiumChanged, name=name, aliases=aliases)
            assert "tests.test_codec.Unregistered" in str(refused.value)
            assert "tests.test_codec.PremiumChanged" in str(refused.value)
        assert codec.resolve("shared.Name") is Unregistered
        with pytest.raises(UnknownTypeError):  # the refused registration left nothing behind
            codec.resolve("fresh.Name")

    def test_a_name_found_by_discovery_is_taken(self) -> None:
        """Once a default name has resolved to a class, another class cannot register it."""
        codec = JsonCodec()
        assert codec.resolve("tests.test_codec.Unregistered") is Unregistered
        with pytest.raises(ValueError, match="already registered"):
            codec.register(PremiumChanged, name="tests.test_codec.Unregistered")

    def test_registering_the_same_class_again_updates_it(self) -> None:
        """Re-registering a class with its own name changes its version without complaint."""
        codec = JsonCodec()
        codec.register(AddressChanged, name="shop.AddressChanged")
        codec.register(AddressChanged, name="shop.AddressChanged", version=3)
        assert codec.schema_version(AddressChanged) == 3

    @pytest.mark.parametrize("version", [0, -1])
    def test_schema_versions_start_at_one(self, version: int) -> None:
        """A schema version below 1 is refused, naming the class and the version."""
        with pytest.raises(ValueError, match=f"AddressChanged must be >= 1, got {version}"):
            JsonCodec().register(AddressChanged, version=version)

    def test_discovery_skips_classes_superseded_by_their_slotted_copy(self) -> None:
        """The pre-slots class left behind by an event's creation is never resolved."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:

            class Fresh(DomainEvent):
                note: str

            twins = [
                c for c in DomainEvent.__subclasses__() if c.__qualname__ == Fresh.__qualname__
            ]
            assert len(twins) == 2  # the superseded class is still alive: the test means something
            codec = JsonCodec()
            resolved = codec.resolve(codec.type_name(Fresh))
            assert resolved is Fresh
            assert (
                codec.event_from_record(codec.type_name(Fresh), 1, codec.encode(Fresh("n"))).note
                == "n"
            )  # type: ignore[attr-defined]
        finally:
            if was_enabled:
                gc.enable()


class TestUpcasters:
    @staticmethod
    def codec() -> JsonCodec:
        codec = JsonCodec()
        codec.register(
            AddressChanged, name="shop.AddressChanged", version=3, aliases=("shop.AddressMoved",)
        )
        codec.add_upcaster("shop.AddressChanged", 1, lambda p: {**p, "city": "unknown"})
        codec.add_upcaster(
            "shop.AddressChanged",
            2,
            lambda p: {"line1": p.pop("street"), **p},
        )
        return codec

    def test_records_carry_the_current_schema_version(self) -> None:
        """An event is written at its registered schema version."""
        record = self.codec().event_to_record(AddressChanged("1 Main St", "Springfield"))
        assert (record.type_name, record.schema_version) == ("shop.AddressChanged", 3)

    @given(st.text(), st.text())
    def test_old_payloads_are_upcast_through_the_chain(self, street: str, city: str) -> None:
        """v1 passes both upcasters, v2 only the second, v3 none; all read as the current class."""
        codec = self.codec()
        when = datetime(2020, 1, 1, tzinfo=UTC)
        meta = {"event_id": str(UUID(int=3)), "occurred_at": when.isoformat()}
        v1 = {**meta, "street": street}
        v2 = {**meta, "street": street, "city": city}
        v3 = {**meta, "line1": street, "city": city}
        expected = AddressChanged(street, city, event_id=UUID(int=3), occurred_at=when)
        assert codec.event_from_record("shop.AddressChanged", 1, v1) == dataclasses.replace(
            expected, city="unknown"
        )
        assert codec.event_from_record("shop.AddressChanged", 2, v2) == expected
        assert codec.event_from_record("shop.AddressMoved", 2, v2) == expected
        assert codec.event_from_record("shop.AddressChanged", 3, v3) == expected
        assert v1 == {**meta, "street": street}  # the caller's payload is not changed
        assert v2 == {**meta, "street": street, "city": city}

    def test_a_missing_step_is_reported(self) -> None:
        """A payload whose chain has a gap raises DeserializationError naming the step."""
        codec = JsonCodec()
        codec.register(AddressChanged, name="shop.AddressChanged", version=3)
        codec.add_upcaster("shop.AddressChanged", 1, lambda p: p)
        with pytest.raises(
            DeserializationError,
            match=r"no upcaster from version 2 to 3 of shop\.AddressChanged \(outbox 7\)",
        ):
            codec.event_from_record("shop.AddressChanged", 1, {"street": "x"}, context="outbox 7")

    def test_a_payload_newer_than_the_code_is_refused(self) -> None:
        """A schema version above the registered one raises, naming both versions."""
        with pytest.raises(
            DeserializationError,
            match=r"schema version 4, newer than the code's version 3 \(row 9\)",
        ):
            self.codec().event_from_record("shop.AddressChanged", 4, {}, context="row 9")

    def test_a_second_upcaster_for_one_step_is_refused(self) -> None:
        """Two upcasters for the same name and version raise ValueError."""
        codec = self.codec()
        with pytest.raises(ValueError, match=r"'shop.AddressChanged' version 1 exists"):
            codec.add_upcaster("shop.AddressChanged", 1, lambda p: p)

    def test_an_upcaster_that_produces_a_bad_payload_is_reported(self) -> None:
        """If upcasting yields an invalid payload, the error names the class and the context."""
        codec = JsonCodec()
        codec.register(AddressChanged, name="shop.AddressChanged", version=2)
        codec.add_upcaster("shop.AddressChanged", 1, lambda p: p)
        payload = {**codec.encode(AddressChanged("a", "c")), "street": "a"}
        del payload["line1"]
        with pytest.raises(
            DeserializationError, match=r"AddressChanged \(outbox 1\): line1: missing"
        ):
            codec.event_from_record("shop.AddressChanged", 1, payload, context="outbox 1")


class TestErrors:
    def test_unknown_type_name(self) -> None:
        """An unknown type name raises UnknownTypeError, a DeserializationError and LookupError."""
        with pytest.raises(UnknownTypeError, match=r"'nowhere.Gone'") as raised:
            JsonCodec().event_from_record("nowhere.Gone", 1, {})
        assert isinstance(raised.value, DeserializationError)
        assert isinstance(raised.value, LookupError)

    def test_unknown_type_name_names_the_row(self) -> None:
        """The unknown-type error of a stored event says which row it came from."""
        with pytest.raises(UnknownTypeError, match=r"'nowhere.Gone'.* \(outbox position 7\)$"):
            JsonCodec().event_from_record("nowhere.Gone", 1, {}, context="outbox position 7")

    def test_value_objects_are_not_discovered_by_name(self) -> None:
        """Only events and aggregates are found by default name; a value object needs register()."""
        codec = JsonCodec()
        with pytest.raises(UnknownTypeError):
            codec.resolve("tests.test_codec.Money")
        codec.register(Money)
        assert codec.resolve("tests.test_codec.Money") is Money

    @pytest.mark.parametrize("payload", [[], "x", None, 3])
    def test_event_payload_must_be_an_object(self, payload: object) -> None:
        """An event payload that is not a JSON object is refused with the context."""
        with pytest.raises(
            DeserializationError, match=r"PremiumChanged payload is not a JSON object \(outbox 3\)"
        ):
            JsonCodec().event_from_record(
                "tests.test_codec.PremiumChanged", 1, payload, context="outbox 3"
            )

    @pytest.mark.parametrize("state", [[], "x", None])
    def test_aggregate_state_must_be_an_object(self, state: object) -> None:
        """Aggregate state that is not a JSON object names the class and the context."""
        with pytest.raises(
            DeserializationError,
            match=r"Policy state is not a JSON object \(tactical_aggregates Policy 1\)",
        ):
            JsonCodec().aggregate_from_state(
                Policy, state, version=1, context="tactical_aggregates Policy 1"
            )
        with pytest.raises(DeserializationError, match=r"^Policy state is not a JSON object$"):
            JsonCodec().aggregate_from_state(Policy, state, version=1)

    def test_malformed_rows_name_context_type_and_field_path(self) -> None:
        """A wrong value deep inside names the context, the class and the path to the field."""
        codec = JsonCodec()
        state = codec.aggregate_to_state(
            Policy(
                UUID(int=1),
                "ada",
                Money(Decimal(1), Currency.USD),
                Period(date(2024, 1, 1), date(2024, 2, 1)),
                [Claim(UUID(int=2), Money(Decimal(2), Currency.USD), datetime.now(UTC))],
            )
        )
        state["claims"][0]["amount"]["currency"] = "XXX"
        with pytest.raises(DeserializationError) as raised:
            codec.aggregate_from_state(Policy, state, version=1, context="table t, id 1")
        assert str(raised.value) == (
            "cannot read Policy (table t, id 1): claims[0].amount.currency: "
            "'XXX' is not a Currency value"
        )

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"flag": 1}, "flag: expected a boolean, got 1"),
            ({"count": True}, "count: expected an integer, got True"),
            ({"count": 1.0}, "count: expected an integer, got 1.0"),
            ({"ratio": "1.5"}, "ratio: expected a number, got '1.5'"),
            ({"ratio": True}, "ratio: expected a number, got True"),
            ({"text": None}, "text: expected a string, got None"),
            ({"amount": 1.5}, "amount: expected decimal as a string, got 1.5"),
            ({"amount": "one"}, "amount: invalid decimal 'one'"),
            ({"ref": "not-a-uuid"}, "ref: invalid UUID 'not-a-uuid'"),
            ({"day": "2024-02-30"}, "day: invalid date '2024-02-30'"),
            ({"at": 1700000000}, "at: expected datetime as a string, got 1700000000"),
            ({"at": "yesterday"}, "at: invalid datetime 'yesterday'"),
            ({"currency": "GBP"}, "currency: 'GBP' is not a Currency value"),
            ({"priority": "1"}, "priority: '1' is not a Priority value"),
            ({"kind": "c"}, "kind: 'c' is not one of"),
            ({"kind": True}, "kind: True is not one of"),
            ({"kind": 3.0}, "kind: 3.0 is not one of"),
            ({"pair": [1]}, "pair: expected 2 items, got 1"),
            ({"pair": [1, 2]}, "pair[1]: expected a string, got 2"),
            ({"pair": {"0": 1}}, "pair: expected array, got {'0': 1}"),
            (
                {"many": [{"amount": "1", "currency": "EUR"}, {"amount": "x", "currency": "EUR"}]},
                "many[1].amount: invalid decimal 'x'",
            ),
            ({"members": ["1"]}, "members[0]: expected an integer, got '1'"),
            (
                {"periods": [{"start": "2024-01-02", "end": "2024-01-01"}]},
                "periods[0]: Period refused the stored values: Period end 2024-01-01 is before start 2024-01-02",
            ),
            ({"periods": [{"start": "2024-01-02"}]}, "periods[0].end: missing"),
            (
                {"periods": [{"start": "2024-01-01", "end": "2024-01-02", "extra": 1}]},
                "periods[0]: unexpected field(s) extra",
            ),
            ({"periods": ["2024"]}, "periods[0]: expected a JSON object for Period, got '2024'"),
            ({"by_name": []}, "by_name: expected object, got []"),
            ({"by_name": {"a": "x"}}, "by_name['a']: expected an integer, got 'x'"),
            ({"by_number": {"one": "x"}}, "by_number: invalid integer key 'one'"),
            ({"by_number": {"01": "x"}}, "by_number: invalid integer key '01'"),
            ({"by_number": {"1_0": "x"}}, "by_number: invalid integer key '1_0'"),
            ({"by_priority": {"3": "x"}}, "by_priority: 3 is not a Priority value"),
            ({"by_day": {"day one": 1}}, "by_day: invalid date 'day one'"),
            ({"nested": {"k": [{"amount": "1"}]}}, "nested['k'][0].currency: missing"),
            (
                {"maybe": {"amount": "1", "currency": 1}},
                "maybe.currency: 1 is not a Currency value",
            ),
            ({"optional": "1"}, "optional: expected an integer, got '1'"),
            ({"nothing": 0}, "nothing: expected null, got 0"),
            ({"unexpected": 1, "other": 2}, "unexpected field(s) other, unexpected"),
        ],
    )
    def test_wrong_json_types_are_reported_with_the_field_path(
        self, change: dict[str, Any], message: str
    ) -> None:
        """Each malformed field raises DeserializationError naming the type, path and value."""
        codec = JsonCodec()
        data = {**codec.encode(_sample()), **change}
        with pytest.raises(DeserializationError) as raised:
            codec.decode(Everything, data, context="fixture")
        assert str(raised.value).startswith(f"cannot read Everything (fixture): {message}")

    def test_long_values_are_shortened_in_messages(self) -> None:
        """A huge offending value is cut in the message rather than dumped whole."""
        codec = JsonCodec()
        with pytest.raises(DeserializationError) as raised:
            codec.decode(Money, {"amount": "1", "currency": "x" * 500})
        assert len(str(raised.value)) < 200
        assert "xxx... is not a Currency value" in str(raised.value)

    def test_missing_fields_without_default_are_named(self) -> None:
        """A missing field that has no default is an error naming it."""
        codec = JsonCodec()
        with pytest.raises(DeserializationError, match=r"cannot read Money: currency: missing"):
            codec.decode(Money, {"amount": "1"})

    def test_state_written_before_a_defaulted_field_existed_reads_with_the_default(
        self,
    ) -> None:
        """Aggregates and values may gain fields with defaults without migrating documents."""
        codec = JsonCodec()
        assert codec.decode(Node, {"label": "leaf"}) == Node("leaf")
        state = codec.aggregate_to_state(Shelf(7, 3, [4], label="top"))
        del state["label"], state["related"]
        shelf = codec.aggregate_from_state(Shelf, state, version=2)
        assert (shelf.id, shelf.parent, shelf.related, shelf.label) == (7, 3, [], "")

    def test_events_missing_a_field_are_refused_even_with_a_default(self) -> None:
        """A stored event's event_id must never be replaced by a fresh default."""
        codec = JsonCodec()
        payload = codec.encode(Unregistered("x"))
        del payload["event_id"]
        with pytest.raises(DeserializationError, match="event_id: missing"):
            codec.event_from_record("tests.test_codec.Unregistered", 1, payload)

    def test_top_level_must_be_an_object(self) -> None:
        """Decoding something other than a JSON object names the expected class."""
        with pytest.raises(
            DeserializationError,
            match=r"cannot read Money: expected a JSON object for Money, got \[\]",
        ):
            JsonCodec().decode(Money, [])

    def test_invalid_json_text_is_a_deserialization_error(self) -> None:
        """loads() turns invalid JSON (or invalid UTF-8) into DeserializationError."""
        with pytest.raises(DeserializationError, match="invalid JSON for Money"):
            JsonCodec().loads(Money, "{not json")
        with pytest.raises(DeserializationError, match="invalid JSON for Money"):
            JsonCodec().loads(Money, b"\xff\xfe{")

    def test_naive_occurred_at_is_refused_on_read(self) -> None:
        """A stored event with a naive occurred_at is refused, naming the class and the field."""
        codec = JsonCodec()
        payload = codec.encode(Unregistered("x"))
        payload["occurred_at"] = "2024-01-01T00:00:00"
        with pytest.raises(
            DeserializationError,
            match=r"Unregistered \(outbox 5\).*occurred_at must be timezone-aware",
        ):
            codec.event_from_record("tests.test_codec.Unregistered", 1, payload, context="outbox 5")

    def test_validation_failures_on_read_are_deserialization_errors(self) -> None:
        """Stored values that break a value object's invariant cannot be loaded."""
        with pytest.raises(DeserializationError, match="Period refused the stored values"):
            JsonCodec().decode(Period, {"start": "2024-01-02", "end": "2024-01-01"})

    def test_subclass_instances_are_refused_on_write(self) -> None:
        """A field holding a subclass of its declared type cannot be stored (no polymorphism)."""

        class SpecialMoney(Money):
            pass

        value = Everything(
            **{**vars_of(_sample()), "maybe": SpecialMoney(Decimal(1), Currency.USD)}
        )
        with pytest.raises(
            TypeError,
            match=r"^cannot store Everything: maybe: expected exactly Money, got .*SpecialMoney",
        ):
            JsonCodec().encode(value)

    @pytest.mark.parametrize(
        ("anything", "pattern"),
        [
            (Decimal("1.5"), r"anything: expected a JSON value .*, got Decimal Decimal\('1\.5'\)"),
            ({"a": [1, UUID(int=7)]}, r"anything: expected a JSON value .*, got UUID"),
            ((1, 2), r"anything: expected a JSON value .*, got tuple \(1, 2\)"),
            ({1: "one"}, r"anything: expected a JSON value, got int 1 as a key"),
        ],
    )
    def test_an_any_field_refuses_what_json_cannot_hold(
        self, anything: object, pattern: str
    ) -> None:
        """An `Any` field holding a non-JSON value is refused on write, naming field and value."""
        value = dataclasses.replace(_sample(), anything=anything)
        with pytest.raises(TypeError, match=f"^cannot store Everything: {pattern}"):
            JsonCodec().encode(value)
        with pytest.raises(TypeError, match=r"^cannot store Everything: anything"):
            JsonCodec().dumps(value)

    def test_an_any_field_refuses_non_finite_floats(self) -> None:
        """NaN inside an `Any` field is refused as it is in a float field."""
        value = dataclasses.replace(_sample(), anything=[math.nan])
        with pytest.raises(
            ValueError, match=r"^cannot store Everything: anything: .*non-finite float nan"
        ):
            JsonCodec().encode(value)

    def test_a_bad_value_deep_inside_names_each_enclosing_field(self) -> None:
        """The error of a nested value names the path of classes and fields down to it."""

        class SpecialMoney(Money):
            pass

        period = Period(date(2024, 1, 1), date(2024, 2, 1))
        object.__setattr__(period, "start", SpecialMoney(Decimal(1), Currency.USD))
        value = dataclasses.replace(_sample(), periods=[period])
        with pytest.raises(TypeError, match=r"^cannot store Everything: periods\[0\]\.start: "):
            JsonCodec().encode(value)

    def test_unsupported_annotations_are_named(self) -> None:
        """A class with an unsupported field type cannot be serialized; the field is named."""
        for cls, pattern in (
            (Weird, r"Weird\.payload: unsupported annotation <class 'bytes'>"),
            (TwoWay, r"TwoWay\.value: only `X \| None` unions are supported"),
            (BoolKeys, r"BoolKeys\.flags: unsupported dict key type <class 'bool'>"),
            (TupleKeys, r"TupleKeys\.grid: unsupported dict key type"),
        ):
            with pytest.raises(TypeError, match=pattern):
                JsonCodec().encode(cls.__new__(cls))

    @pytest.mark.parametrize("ratio", [math.nan, math.inf, -math.inf])
    def test_non_finite_floats_are_refused_on_write(self, ratio: float) -> None:
        """NaN and infinities have no JSON form: writing one raises, naming the value."""
        value = dataclasses.replace(_sample(), ratio=ratio)
        with pytest.raises(ValueError, match=f"non-finite float {ratio!r}"):
            JsonCodec().encode(value)
        with pytest.raises(ValueError, match="non-finite"):
            JsonCodec().dumps(value)

    def test_non_dataclasses_are_refused(self) -> None:
        """Only dataclass instances can be encoded or decoded."""
        with pytest.raises(TypeError, match="str is not a dataclass"):
            JsonCodec().encode("text")
        with pytest.raises(TypeError, match="int is not a dataclass"):
            JsonCodec().decode(int, {})

    def test_unresolvable_annotations_are_reported(self) -> None:
        """A class whose annotations name a local type asks to be defined at module level."""

        class Local(ValueObject):
            x: int

        class UsesLocal(ValueObject):
            inner: Local

        with pytest.raises(
            TypeError, match=r"cannot resolve the annotations of .*UsesLocal.*module level"
        ):
            JsonCodec().encode(UsesLocal(Local(1)))


def vars_of(value: ValueObject) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}  # type: ignore[arg-type]
