"""Properties of the domain model's base classes, checked with Hypothesis.

Equality and hash laws, immutability, validation on every construction, subclassing,
the kinds of values a value object may hold, recorded events and the error hierarchy.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tactical import (
    AggregateNotFound,
    AggregateRoot,
    ConcurrencyError,
    DomainError,
    DomainEvent,
    Entity,
    InvalidStateError,
    InvariantViolation,
    ValueObject,
)
from tactical._model import recorded_in_order

# -- the model under test ----------------------------------------------------------------------


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


class Point(ValueObject):
    x: int
    y: int


class Pair(ValueObject):
    """Same field names and types as Point, but a different concept."""

    x: int
    y: int


class Span(ValueObject):
    low: int
    high: int

    def validate(self) -> None:
        if self.low > self.high:
            raise InvariantViolation(f"Span low {self.low} is above high {self.high}")


class LabelledSpan(Span):
    """A subclass of a value object subclass: adds a field and a rule of its own."""

    label: str = "span"

    def validate(self) -> None:
        super().validate()
        if self.low == self.high:
            raise InvariantViolation(f"LabelledSpan {self.label!r} is empty at {self.low}")


class NonNegativeSpan(Span):
    """A subclass that validates in ``__post_init__``, calling the base's to keep validate()."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low < 0:
            raise InvariantViolation(f"NonNegativeSpan low {self.low} is negative")


class Holdings(ValueObject):
    """A value object holding every kind of value the issue names."""

    points: tuple[Point, ...]
    tags: frozenset[str]
    origin: Point
    price: Decimal
    ref: UUID
    day: date
    at: datetime
    shade: Shade


class Ordered(ValueObject, order=True):
    major: int
    minor: int


class Named(ValueObject, kw_only=True):
    first: str
    last: str


class Claim(Entity[int]):
    amount: int
    note: str = ""


class OtherClaim(Entity[int]):
    amount: int
    note: str = ""


class SpecialClaim(Claim):
    pass


class KeywordEntity(Entity[str], kw_only=True):
    name: str


class Happened(DomainEvent):
    number: int


class Policy(AggregateRoot[int]):
    holder: str
    claims: list[Claim] = field(default_factory=list[Claim])

    def file(self, claim: Claim) -> None:
        self.claims.append(claim)
        self.record(Happened(claim.id))


class Ledger(AggregateRoot[int]):
    holder: str


# -- strategies ------------------------------------------------------------------------------

small = st.integers(min_value=-2, max_value=2)  # collisions are likely, so laws get tested
points = st.builds(Point, small, small)
aware = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]))
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=2)

HOLDINGS: dict[str, st.SearchStrategy[Any]] = {
    "points": st.lists(points, max_size=3).map(tuple),
    "tags": st.frozensets(st.sampled_from("abc")),
    "origin": points,
    "price": st.decimals(min_value=-2, max_value=2, places=1),
    "ref": st.sampled_from([UUID(int=1), UUID(int=2)]),
    "day": st.dates(min_value=date(2024, 1, 1), max_value=date(2024, 1, 3)),
    "at": st.sampled_from([datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)]),
    "shade": st.sampled_from(Shade),
}
holdings_fields = st.fixed_dictionaries(HOLDINGS)
holdings = holdings_fields.map(lambda values: Holdings(**values))


def _spans() -> st.SearchStrategy[Span]:
    return st.tuples(small, small).map(sorted).map(lambda b: Span(b[0], b[1]))


class TestValueObjectEquality:
    @given(holdings)
    def test_equality_is_reflexive(self, value: Holdings) -> None:
        """Every value object equals itself."""
        assert value == value

    @given(holdings_fields)
    def test_values_built_from_equal_fields_are_equal_and_hash_alike(
        self, values: dict[str, Any]
    ) -> None:
        """Two separately built value objects with equal fields are equal, with equal hashes."""
        a = Holdings(**values)
        b = Holdings(**{name: _copy_of(value) for name, value in values.items()})
        assert a is not b
        assert a == b
        assert hash(a) == hash(b)

    @given(holdings, holdings)
    def test_equality_is_symmetric(self, a: Holdings, b: Holdings) -> None:
        """a == b exactly when b == a, and != is its negation."""
        assert (a == b) == (b == a)
        assert (a != b) != (a == b)

    @given(points, points, points)
    def test_equality_is_transitive_and_equal_means_same_hash(
        self, a: Point, b: Point, c: Point
    ) -> None:
        """If a == b and b == c then a == c; equal values always hash alike."""
        if a == b and b == c:
            assert a == c
        if a == b:
            assert hash(a) == hash(b)

    @given(points, points)
    def test_equal_exactly_when_all_fields_are_equal(self, a: Point, b: Point) -> None:
        """Two points are equal if and only if x and y are both equal."""
        assert (a == b) == (a.x == b.x and a.y == b.y)

    @given(holdings_fields, st.data())
    def test_changing_any_field_makes_an_unequal_value(
        self, values: dict[str, Any], data: st.DataObject
    ) -> None:
        """A value object differs from one whose fields differ in any single field."""
        name = data.draw(st.sampled_from(sorted(HOLDINGS)), label="field")
        other = data.draw(HOLDINGS[name].filter(lambda v: v != values[name]), label="new value")
        original = Holdings(**values)
        changed = original.replace(**{name: other})
        assert changed != original
        assert getattr(changed, name) == other
        assert Holdings(**{**values, name: other}) == changed

    @given(small, small)
    def test_different_classes_with_the_same_fields_are_never_equal(self, x: int, y: int) -> None:
        """A value object is never equal to one of another class, even with identical fields."""
        assert Point(x, y) != Pair(x, y)
        assert Point(x, y) != (x, y)

    @given(st.sets(points, max_size=10))
    def test_value_objects_work_as_set_members_and_dict_keys(self, members: set[Point]) -> None:
        """Equal value objects collapse in a set and find each other's dict entries."""
        copies = {Point(p.x, p.y) for p in members}
        assert copies == members
        index = {p: (p.x, p.y) for p in members}
        assert all(index[Point(p.x, p.y)] == (p.x, p.y) for p in members)

    @given(st.tuples(small, small), st.tuples(small, small))
    def test_order_keyword_compares_fields_in_declaration_order(
        self, a: tuple[int, int], b: tuple[int, int]
    ) -> None:
        """order=True makes comparisons follow the fields as a tuple."""
        assert (Ordered(*a) < Ordered(*b)) == (a < b)
        assert (Ordered(*a) <= Ordered(*b)) == (a <= b)

    def test_without_order_keyword_values_are_not_comparable(self) -> None:
        """A value object without order=True refuses < at run time."""
        with pytest.raises(TypeError):
            _ = Point(1, 2) < Point(2, 3)  # type: ignore[operator]

    def test_kw_only_keyword_requires_keywords(self) -> None:
        """kw_only=True makes every field keyword-only."""
        assert Named(first="Ada", last="Lovelace").last == "Lovelace"
        with pytest.raises(TypeError):
            Named("Ada", "Lovelace")  # type: ignore[misc]


def _copy_of(value: Any) -> Any:
    """An equal but distinct object, so equality is not decided by identity."""
    if isinstance(value, tuple):
        return tuple(Point(p.x, p.y) for p in value)
    if isinstance(value, frozenset):
        return frozenset(str(s) for s in value)
    if isinstance(value, Point):
        return Point(value.x, value.y)
    if isinstance(value, Decimal):
        return Decimal(str(value))
    if isinstance(value, UUID):
        return UUID(str(value))
    if isinstance(value, datetime):
        return datetime.fromisoformat(value.isoformat())
    if isinstance(value, date):
        return date.fromordinal(value.toordinal())
    return value


class TestImmutability:
    @given(holdings, st.data())
    def test_assigning_any_field_raises(self, value: Holdings, data: st.DataObject) -> None:
        """Assigning to or deleting any field of a value object raises FrozenInstanceError."""
        name = data.draw(st.sampled_from([f.name for f in dataclasses.fields(value)]))
        before = getattr(value, name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, before)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(value, name)
        assert getattr(value, name) is before

    def test_new_attributes_cannot_be_added(self) -> None:
        """A value object has slots and no instance dictionary to smuggle state into."""
        point = Point(1, 2)
        assert not hasattr(point, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError, match="'z'"):
            point.z = 3  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError, match="'z'"):
            del point.z  # type: ignore[attr-defined]

    @given(st.integers(), st.sampled_from(["number", "event_id", "occurred_at"]))
    def test_events_are_immutable(self, number: int, name: str) -> None:
        """Every field of an event, including event_id and occurred_at, is read-only."""
        event = Happened(number)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, name, getattr(event, name))

    def test_subclass_of_a_subclass_is_frozen_too(self) -> None:
        """Immutability is inherited by a value object subclass, for its own and base fields."""
        span = LabelledSpan(1, 2, "a")
        for name in ("low", "label"):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(span, name, getattr(span, name))

    def test_entities_are_mutable_but_keep_equality_by_id(self) -> None:
        """Entity fields may change; equality and hash stay tied to the id."""
        claim = Claim(1, 10)
        before = hash(claim)
        claim.amount = 20
        assert claim == Claim(1, 99)
        assert hash(claim) == before


class TestValidation:
    @given(small, small)
    def test_construction_succeeds_exactly_for_valid_values(self, low: int, high: int) -> None:
        """A Span exists if and only if low <= high; otherwise construction raises."""
        if low <= high:
            span = Span(low, high)
            assert (span.low, span.high) == (low, high)
        else:
            with pytest.raises(InvariantViolation, match=f"low {low} is above high {high}"):
                Span(low, high)

    @given(_spans(), small)
    def test_replace_validates_like_construction(self, span: Span, low: int) -> None:
        """replace() succeeds exactly when a new value with those fields would be valid."""
        if low <= span.high:
            assert span.replace(low=low) == Span(low, span.high)
        else:
            with pytest.raises(InvariantViolation, match=str(low)):
                span.replace(low=low)
        assert span.low <= span.high  # the original is untouched either way

    @given(_spans())
    def test_replace_without_changes_returns_an_equal_copy(self, span: Span) -> None:
        """replace() with no changes gives an equal value of the same class."""
        copy = span.replace()
        assert copy == span
        assert type(copy) is Span

    @given(
        st.just("self")
        | st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1).filter(
            lambda n: n not in {"low", "high"}
        )
    )
    def test_replace_with_an_unknown_field_raises_type_error_naming_it(self, name: str) -> None:
        """replace() refuses a name that is not a field, naming it and the real fields."""
        with pytest.raises(TypeError, match=rf"unknown field\(s\) {name};") as raised:
            Span(1, 2).replace(**{name: 1})
        assert "it accepts low, high" in str(raised.value)

    def test_replace_names_every_unknown_field_sorted(self) -> None:
        """Several unknown fields are all named, in sorted order."""
        with pytest.raises(TypeError, match="alpha, zeta"):
            Point(1, 2).replace(zeta=1, alpha=2, x=3)

    def test_replace_refuses_a_field_excluded_from_init(self) -> None:
        """A field with init=False cannot be set through replace() either."""

        class Derived(ValueObject):
            base: int
            doubled: int = field(init=False, default=0)

        with pytest.raises(TypeError, match="doubled"):
            Derived(1).replace(doubled=4)

    def test_replace_accepts_any_field_name_even_self(self) -> None:
        """replace() takes the object positionally, so a field may be called self or changes."""

        class Odd(ValueObject):
            self: int  # type: ignore[misc]
            changes: int

        assert Odd(1, 2).replace(self=3, changes=4) == Odd(3, 4)
        with pytest.raises(TypeError, match="unknown field"):
            Odd(1, 2).replace(other=1)

    def test_plain_value_error_from_validate_is_propagated(self) -> None:
        """validate() may raise any ValueError; it reaches the caller unchanged."""

        class Even(ValueObject):
            n: int

            def validate(self) -> None:
                if self.n % 2:
                    raise ValueError(f"{self.n} is odd")

        with pytest.raises(ValueError, match="3 is odd"):
            Even(2).replace(n=3)

    def test_the_default_validate_accepts_everything(self) -> None:
        """A value object without validate() accepts any values."""
        assert Point(-(10**30), 10**30).x == -(10**30)


class TestSubclassing:
    @given(small, small, st.text(max_size=3))
    def test_subclass_inherits_fields_and_runs_both_validations(
        self, low: int, high: int, label: str
    ) -> None:
        """A subclass of a value object subclass has the base's fields and both rules apply."""
        if low < high:
            span = LabelledSpan(low, high, label)
            assert (span.low, span.high, span.label) == (low, high, label)
            assert [f.name for f in dataclasses.fields(span)] == ["low", "high", "label"]
        else:
            with pytest.raises(InvariantViolation, match="above" if low > high else "empty"):
                LabelledSpan(low, high, label)

    @given(small, small)
    def test_post_init_subclass_keeps_the_base_validation(self, low: int, high: int) -> None:
        """A subclass validating in __post_init__ (calling super) keeps validate() running."""
        if 0 <= low <= high:
            assert NonNegativeSpan(low, high).low == low
        else:
            with pytest.raises(InvariantViolation, match="above" if low > high else "negative"):
                NonNegativeSpan(low, high)

    def test_subclass_replace_keeps_the_subclass_and_its_rules(self) -> None:
        """replace() on a subclass returns the subclass and runs its rules."""
        span = LabelledSpan(1, 3, "a")
        assert type(span.replace(high=2)) is LabelledSpan
        with pytest.raises(InvariantViolation, match="empty"):
            span.replace(high=1)

    def test_subclass_instance_is_not_equal_to_base_instance(self) -> None:
        """Equality includes the concrete class: a subclass value never equals a base value."""
        assert LabelledSpan(1, 2) != Span(1, 2)
        assert NonNegativeSpan(1, 2) != Span(1, 2)

    def test_every_subclass_is_a_slotted_frozen_dataclass(self) -> None:
        """Each level of subclassing is itself a frozen dataclass with slots."""
        for cls in (Span, LabelledSpan, NonNegativeSpan, Holdings):
            params = cls.__dataclass_params__  # type: ignore[attr-defined]
            assert params.frozen
            assert "__slots__" in vars(cls)


class TestHeldValues:
    @given(holdings_fields)
    def test_fields_keep_the_values_and_types_given(self, values: dict[str, Any]) -> None:
        """Tuples, frozensets, nested values, Decimal, UUID, date, datetime, Enum are held as is."""
        value = Holdings(**values)
        for name, given_value in values.items():
            assert getattr(value, name) is given_value

    @given(holdings)
    def test_value_with_held_collections_is_hashable(self, value: Holdings) -> None:
        """A value object of hashable parts is hashable and usable as a key."""
        assert {value: 1}[value] == 1

    def test_a_value_holding_a_mutable_list_is_not_hashable(self) -> None:
        """A list field is refused when the class is defined, pointing to tuples."""
        with pytest.raises(
            TypeError, match=r"Bag\.items: list\[int\] is mutable.*tuple\[X, \.\.\.\]"
        ):

            class Bag(ValueObject):
                items: list[int]

    @given(decimals, decimals)
    def test_decimal_fields_compare_by_numeric_value(self, a: Decimal, b: Decimal) -> None:
        """Decimal fields follow Decimal equality (1.0 == 1.00), with consistent hashes."""

        class Amount(ValueObject):
            value: Decimal

        assert (Amount(a) == Amount(b)) == (a == b)
        if a == b:
            assert hash(Amount(a)) == hash(Amount(b))


class TestEntityEquality:
    @given(small, small, st.integers(), st.integers(), st.text(max_size=2), st.text(max_size=2))
    def test_equal_exactly_when_ids_are_equal(
        self, id1: int, id2: int, amount1: int, amount2: int, note1: str, note2: str
    ) -> None:
        """Entities of one class are equal iff their ids are, whatever their other fields."""
        a, b = Claim(id1, amount1, note1), Claim(id2, amount2, note2)
        assert (a == b) == (id1 == id2)
        assert (a == b) == (b == a)
        if a == b:
            assert hash(a) == hash(b)

    @given(small, small, small)
    def test_equality_is_transitive(self, id1: int, id2: int, id3: int) -> None:
        """Entity equality is an equivalence relation over ids."""
        a, b, c = Claim(id1, 1), Claim(id2, 2), Claim(id3, 3)
        assert a == a
        if a == b and b == c:
            assert a == c

    @given(small, st.integers())
    def test_different_concrete_classes_are_never_equal(self, id_: int, amount: int) -> None:
        """Same id but another entity class, or a subclass, is not the same entity."""
        assert Claim(id_, amount) != OtherClaim(id_, amount)
        assert Claim(id_, amount) != SpecialClaim(id_, amount)
        assert SpecialClaim(id_, amount) != Claim(id_, amount)
        assert Claim(id_, amount) != id_

    @given(small, st.text(max_size=3), st.text(max_size=3), st.integers(0, 5), st.integers(0, 5))
    def test_aggregates_equal_by_type_and_id_only(
        self, id_: int, holder1: str, holder2: str, v1: int, v2: int
    ) -> None:
        """Aggregates compare by id alone, ignoring other fields and version."""
        a = Policy(id_, holder1, version=v1)
        b = Policy(id_, holder2, [Claim(1, 1)], version=v2)
        assert a == b
        assert hash(a) == hash(b)
        assert a != Ledger(id_, holder1)

    @given(small, st.lists(st.integers(), max_size=4))
    def test_recorded_events_are_not_part_of_equality_repr_or_fields(
        self, id_: int, numbers: list[int]
    ) -> None:
        """Recording events changes neither equality, hash, repr nor the dataclass fields."""
        busy, quiet = Ledger(id_, "ada"), Ledger(id_, "ada")
        for number in numbers:
            busy.record(Happened(number))
        assert busy == quiet
        assert hash(busy) == hash(quiet)
        assert repr(busy) == repr(quiet)
        assert dataclasses.asdict(busy) == dataclasses.asdict(quiet)
        assert [f.name for f in dataclasses.fields(busy)] == ["id", "version", "holder"]

    def test_entity_repr_shows_its_fields(self) -> None:
        """An entity's repr is the dataclass repr, naming id and fields."""
        assert repr(Claim(7, 10, "x")) == "Claim(id=7, amount=10, note='x')"

    def test_kw_only_entity_requires_keywords(self) -> None:
        """The kw_only class keyword makes an entity's fields keyword-only."""
        assert KeywordEntity(id="k", name="n").name == "n"
        with pytest.raises(TypeError):
            KeywordEntity("k", "n")  # type: ignore[misc]

    def test_version_is_keyword_only_and_defaults_to_zero(self) -> None:
        """An aggregate's version is keyword-only and starts at 0."""
        assert Ledger(1, "ada").version == 0
        assert Ledger(1, "ada", version=4).version == 4
        with pytest.raises(TypeError):
            Ledger(1, "ada", 4)  # type: ignore[misc]


class TestRecordedEvents:
    @given(st.lists(st.integers(), max_size=8))
    def test_pending_events_are_in_recorded_order(self, numbers: list[int]) -> None:
        """pending_events lists the recorded events oldest first, without clearing them."""
        ledger = Ledger(1, "ada")
        events = [Happened(n) for n in numbers]
        for event in events:
            ledger.record(event)
        assert ledger.pending_events == tuple(events)
        assert ledger.pending_events == tuple(events)

    @given(st.lists(st.integers(), max_size=8), st.lists(st.integers(), max_size=3))
    def test_pull_events_returns_in_order_and_clears(
        self, first: list[int], then: list[int]
    ) -> None:
        """pull_events() returns the pending events in order and leaves none; later ones queue anew."""
        ledger = Ledger(1, "ada")
        for n in first:
            ledger.record(Happened(n))
        pulled = ledger.pull_events()
        assert [e.number for e in pulled] == first  # type: ignore[attr-defined]
        assert ledger.pending_events == ()
        assert ledger.pull_events() == ()
        for n in then:
            ledger.record(Happened(n))
        assert [e.number for e in ledger.pull_events()] == then  # type: ignore[attr-defined]

    @given(st.lists(st.integers(), max_size=8))
    def test_clear_events_forgets_them(self, numbers: list[int]) -> None:
        """clear_events() leaves nothing pending."""
        ledger = Ledger(1, "ada")
        for n in numbers:
            ledger.record(Happened(n))
        ledger.clear_events()
        assert ledger.pending_events == ()

    def test_clear_and_pull_on_a_fresh_aggregate_are_harmless(self) -> None:
        """An aggregate that never recorded anything has no events to clear or pull."""
        ledger = Ledger(1, "ada")
        ledger.clear_events()
        assert ledger.pull_events() == ()

    def test_events_are_per_aggregate(self) -> None:
        """Events recorded on one aggregate never show up on another."""
        a, b = Ledger(1, "ada"), Ledger(2, "bob")
        a.record(Happened(1))
        assert b.pending_events == ()
        assert len(a.pending_events) == 1

    @given(st.lists(st.sampled_from([0, 1, 2]), max_size=12))
    def test_recorded_order_is_kept_across_aggregates(self, which: list[int]) -> None:
        """Events recorded on several aggregates merge back into the order they were recorded."""
        ledgers = [Ledger(i, "x") for i in range(3)]
        expected = []
        for step, index in enumerate(which):
            event = Happened(step)
            ledgers[index].record(event)
            expected.append(event)
        assert recorded_in_order(reversed(ledgers)) == expected

    def test_record_refuses_what_is_not_an_event(self) -> None:
        """record() takes only DomainEvents and names what it got."""
        with pytest.raises(TypeError, match=r"Ledger\.record\(\) takes a DomainEvent, got 'oops'"):
            Ledger(1, "ada").record("oops")  # type: ignore[arg-type]

    def test_commands_record_their_events(self) -> None:
        """A command that changes state records the event describing it."""
        policy = Policy(1, "ada")
        policy.file(Claim(5, 100))
        assert policy.claims == [Claim(5, 0)]
        assert [e.number for e in policy.pending_events] == [5]  # type: ignore[attr-defined]


class TestDomainEvent:
    def test_naive_occurred_at_is_refused_naming_the_value(self) -> None:
        """A naive occurred_at raises ValueError naming the event class and the datetime."""
        with pytest.raises(ValueError, match=r"Happened\.occurred_at .* naive 2024-01-02T03:04:05"):
            Happened(1, occurred_at=datetime(2024, 1, 2, 3, 4, 5))

    @given(aware)
    def test_any_aware_occurred_at_is_kept(self, when: datetime) -> None:
        """Any timezone-aware occurred_at is accepted and kept as given."""
        assert Happened(1, occurred_at=when).occurred_at is when

    def test_defaults_are_a_fresh_uuid7_and_utc_now(self) -> None:
        """event_id defaults to a new UUID version 7 and occurred_at to the current UTC time."""
        before = datetime.now(UTC)
        event = Happened(1)
        after = datetime.now(UTC)
        assert event.event_id.version == 7
        assert before <= event.occurred_at <= after
        assert event.occurred_at.utcoffset() == timedelta(0)

    def test_event_ids_are_unique(self) -> None:
        """Every event gets its own event_id."""
        ids = {Happened(1).event_id for _ in range(1000)}
        assert len(ids) == 1000

    def test_event_id_and_occurred_at_are_keyword_only(self) -> None:
        """The base fields are keyword-only, so subclass fields stay positional."""
        event_id = uuid4()
        when = datetime(2024, 1, 1, tzinfo=UTC)
        event = Happened(3, event_id=event_id, occurred_at=when)
        assert (event.number, event.event_id, event.occurred_at) == (3, event_id, when)
        with pytest.raises(TypeError):
            Happened(3, event_id)  # type: ignore[misc]

    def test_events_are_equal_only_with_the_same_id_and_time(self) -> None:
        """Events are values: equal when every field including event_id and occurred_at is."""
        event = Happened(1)
        twin = Happened(1, event_id=event.event_id, occurred_at=event.occurred_at)
        assert event == twin
        assert hash(event) == hash(twin)
        assert event != Happened(1, occurred_at=event.occurred_at)

    def test_event_subclass_can_extend_post_init_with_super(self) -> None:
        """An event class may add checks in __post_init__ and still get the base's checks."""

        class Refunded(DomainEvent):
            amount: int

            def __post_init__(self) -> None:
                super().__post_init__()
                if self.amount <= 0:
                    raise ValueError(f"refund amount {self.amount} is not positive")

        assert Refunded(5).amount == 5
        with pytest.raises(ValueError, match="refund amount -1"):
            Refunded(-1)
        with pytest.raises(ValueError, match="naive"):
            Refunded(5, occurred_at=datetime(2024, 1, 1))

    def test_the_base_class_cannot_be_instantiated(self) -> None:
        """DomainEvent itself is abstract in practice: constructing it raises TypeError."""
        with pytest.raises(TypeError, match="subclass it"):
            DomainEvent()


class TestErrors:
    def test_domain_errors_are_value_errors(self) -> None:
        """DomainError is a ValueError; InvariantViolation and InvalidStateError are DomainErrors."""
        assert issubclass(DomainError, ValueError)
        assert issubclass(InvariantViolation, DomainError)
        assert issubclass(InvalidStateError, DomainError)
        with pytest.raises(ValueError, match="broken"):
            raise InvariantViolation("broken")

    def test_concurrency_error_is_not_a_domain_error(self) -> None:
        """ConcurrencyError is neither a DomainError nor a ValueError: it is retryable."""
        assert not issubclass(ConcurrencyError, ValueError)
        assert not issubclass(ConcurrencyError, DomainError)
        error = ConcurrencyError("plain")
        assert (error.aggregate_type, error.aggregate_id) == (None, None)
        assert (error.expected_version, error.actual_version) == (None, None)

    @given(small, st.integers(0, 10), st.one_of(st.none(), st.integers(0, 10)))
    def test_stale_error_names_type_id_and_versions(
        self, id_: int, expected: int, actual: int | None
    ) -> None:
        """ConcurrencyError.stale() names the aggregate, its id and both versions."""
        error = ConcurrencyError.stale(
            Ledger, id_, expected_version=expected, actual_version=actual
        )
        message = str(error)
        assert message.startswith(f"Ledger {id_} was changed concurrently")
        assert f"loaded at version {expected}" in message
        if actual is None:
            assert "it was removed" in message
        else:
            assert f"it is at version {actual}" in message
        assert (error.aggregate_type, error.aggregate_id) == (Ledger, id_)
        assert (error.expected_version, error.actual_version) == (expected, actual)

    def test_aggregate_not_found_is_a_lookup_error_naming_type_and_id(self) -> None:
        """AggregateNotFound is a LookupError (not a DomainError) whose message names type and id."""
        missing = UUID(int=42)
        error = AggregateNotFound(Policy, missing)
        assert isinstance(error, LookupError)
        assert not isinstance(error, DomainError)
        assert str(error) == f"Policy with id {missing} not found"
        assert (error.aggregate_type, error.aggregate_id) == (Policy, missing)
        with pytest.raises(LookupError, match=str(missing)):
            raise error
