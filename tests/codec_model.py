"""The model the JsonCodec tests store: value objects, entities, aggregates and events
covering every supported annotation, Hypothesis strategies for them, and exactness helpers.

Kept out of the test modules so that its classes' default type names
(``tests.codec_model.PremiumChanged``) are the same for every test that uses them.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, NewType, Optional, TypeVar, Union
from uuid import UUID

from hypothesis import strategies as st

from tactical import (
    AggregateRoot,
    DomainEvent,
    Entity,
    InvariantViolation,
    JsonCodec,
    ValueObject,
)

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


@dataclasses.dataclass
class Everything:
    """One field of every annotation the codec supports.

    A plain dataclass: a value object may not hold the lists, dicts and sets it includes.
    """

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


@dataclasses.dataclass(frozen=True)
class BoolKeys:
    flags: dict[bool, int]


@dataclasses.dataclass(frozen=True)
class TupleKeys:
    grid: dict[tuple[int, int], int]


# -- strategies ---------------------------------------------------------------------------------

# Any whole-second offset (real time zones have no finer ones; Python 3.11's fromisoformat
# drops the microseconds of an offset such as +00:00:00.000001).
offsets = st.integers(-86399, 86399).map(lambda s: timezone(timedelta(seconds=s)))
aware_datetimes = st.datetimes(timezones=offsets | st.just(UTC))
# Every Decimal but NaN and sNaN (which are not equal to themselves): infinities and -0 too.
decimals = st.decimals(allow_nan=False)
# Every string a store can carry: no NUL (PostgreSQL refuses it) and, as st.text() already
# ensures, no lone surrogate.
storable_characters = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
money = st.builds(Money, decimals, st.sampled_from(Currency))
periods = st.tuples(st.dates(), st.dates()).map(sorted).map(lambda p: Period(p[0], p[1]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite_floats | st.text(storable_characters),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(storable_characters), inner, max_size=3)
    ),
    max_leaves=4,
)
claims = st.builds(
    Claim,
    id=st.uuids(),
    amount=money,
    filed_at=aware_datetimes,
    note=st.none() | st.text(storable_characters),
)
policies = st.builds(
    Policy,
    id=st.uuids(),
    holder=st.text(storable_characters),
    premium=money,
    period=periods,
    claims=st.lists(claims, max_size=3),
    limits=st.lists(money, max_size=3).map(tuple),
    tags=st.frozensets(st.text(storable_characters), max_size=4),
    excess=st.none() | money,
    version=st.integers(0, 10**6),
)
everything = st.builds(
    Everything,
    flag=st.booleans(),
    count=st.integers(),
    ratio=finite_floats,
    text=st.text(storable_characters),
    amount=decimals,
    ref=st.uuids(),
    day=st.dates(),
    at=aware_datetimes,
    currency=st.sampled_from(Currency),
    priority=st.sampled_from(Priority),
    user=st.integers().map(UserId),
    grams=st.integers(),
    kind=st.sampled_from(["a", "b", 3]),
    pair=st.tuples(st.integers(), st.text(storable_characters)),
    many=st.lists(money, max_size=2).map(tuple),
    members=st.frozensets(st.integers(), max_size=3),
    unique=st.sets(st.text(storable_characters), max_size=3),
    periods=st.lists(periods, max_size=2),
    by_name=st.dictionaries(st.text(storable_characters), st.integers(), max_size=2),
    by_currency=st.dictionaries(st.sampled_from(Currency), decimals, max_size=2),
    by_priority=st.dictionaries(
        st.sampled_from(Priority), st.text(storable_characters), max_size=2
    ),
    by_number=st.dictionaries(st.integers(), st.text(storable_characters), max_size=2),
    by_day=st.dictionaries(st.dates(), st.integers(), max_size=2),
    by_time=st.dictionaries(aware_datetimes, st.text(storable_characters), max_size=2),
    by_ref=st.dictionaries(st.uuids(), st.booleans(), max_size=2),
    by_amount=st.dictionaries(
        st.decimals(allow_nan=False), st.text(storable_characters), max_size=2
    ),
    nested=st.dictionaries(st.text(storable_characters), st.lists(money, max_size=2), max_size=2),
    maybe=st.none() | money,
    optional=st.none() | st.integers(),
    either=st.none() | st.text(storable_characters),
    anything=json_values,
    nothing=st.none(),
    bare_list=st.lists(json_values, max_size=2),
    bare_tuple=st.lists(json_values, max_size=2).map(tuple),
    bare_dict=st.dictionaries(st.text(storable_characters), json_values, max_size=2),
)
trees = st.recursive(
    st.builds(Node, st.text(storable_characters, max_size=3)),
    lambda inner: st.builds(
        Node, st.text(storable_characters, max_size=3), st.lists(inner, max_size=3).map(tuple)
    ),
    max_leaves=10,
)
premium_changes = st.builds(
    PremiumChanged,
    policy_id=st.uuids(),
    amount=decimals,
    effective=st.dates(),
    currency=st.sampled_from(Currency),
    reasons=st.lists(st.text(storable_characters), max_size=3).map(tuple),
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


def sample_everything() -> Everything:
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
