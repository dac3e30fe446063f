"""JsonCodec at its edges: unusual but legal annotations, and stored data that is not."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, NewType, TypeVar
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.codec_model import Node

from tactical import (
    AggregateRoot,
    DeserializationError,
    DomainEvent,
    Entity,
    JsonCodec,
    ValueObject,
)

T = TypeVar("T")
SkuCode = NewType("SkuCode", str)


class Shade(enum.Enum):
    LIGHT = 1
    DARK = 2


class Size(enum.StrEnum):
    SMALL = "s"
    LARGE = "l"


class Box(ValueObject, Generic[T]):
    """A generic value object, used with its type argument in other classes."""

    item: T


class Pair(ValueObject, Generic[T]):
    first: T
    second: Box[T] | None = None


class Crate(ValueObject):
    amounts: Box[Decimal]
    days: Box[list[date]]
    pairs: tuple[Pair[UUID], ...]
    maybe: Box[int] | None = None


class Choices(ValueObject):
    mode: Literal["fast", "slow"]
    shade: Literal[Shade.DARK]
    size: Literal[Size.SMALL, "other"] | None = None


@dataclasses.dataclass(frozen=True)
class Keys:
    by_sku: dict[SkuCode, int]
    by_mode: dict[Literal["fast", "slow"], int]
    by_level: dict[Literal[1, 2], str]
    by_shade: dict[Shade, int]


@dataclasses.dataclass(frozen=True)
class LooseKeys:
    by_note: dict[Annotated[int, "note"], str]
    by_any: dict[Any, int]


@dataclasses.dataclass(frozen=True)
class Shelved(Generic[T]):
    by_key: dict[T, str]


class NoteShelf(Shelved[Annotated[int, "note number"]]):
    """Annotated survives in generic bases (get_type_hints strips it from annotations)."""


@dataclasses.dataclass(frozen=True)
class FloatKeys:
    by_ratio: dict[Literal[1.5], int]


class Stamped(AggregateRoot[int]):
    at: datetime
    day: date


class Moved(DomainEvent):
    street: str


# -- unusual but legal ----------------------------------------------------------------------


def through_json(codec: JsonCodec, obj: object) -> object:
    return codec.loads(type(obj), json.dumps(codec.encode(obj), allow_nan=False))


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=4)
# What a store can carry: no NUL and no lone surrogate.
storable = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")


class TestLegalAnnotations:
    @given(
        st.builds(
            Crate,
            amounts=st.builds(Box[Decimal], decimals),
            days=st.builds(Box[list[date]], st.lists(st.dates(), max_size=3)),
            pairs=st.lists(
                st.builds(
                    Pair[UUID],
                    st.uuids(),
                    st.none() | st.builds(Box[UUID], st.uuids()),
                ),
                max_size=3,
            ).map(tuple),
            maybe=st.none() | st.builds(Box[int], st.integers()),
        )
    )
    def test_generic_value_objects_round_trip_with_their_type_arguments(self, crate: Crate) -> None:
        """`Box[Decimal]` as a field stores and reads the item as a Decimal, not raw JSON."""
        codec = JsonCodec()
        assert through_json(codec, crate) == crate
        assert type(crate.amounts.item) is Decimal
        assert codec.encode(crate)["amounts"] == {"item": str(crate.amounts.item)}

    @given(
        st.sampled_from(["fast", "slow"]),
        st.none() | st.sampled_from([Size.SMALL, "other"]),
    )
    def test_literals_of_enum_members_round_trip_through_json(
        self, mode: Literal["fast", "slow"], size: Literal[Size.SMALL, "other"] | None
    ) -> None:
        """A Literal of enum members is stored by the member's value and read as the member."""
        value = Choices(mode, Shade.DARK, size)
        codec = JsonCodec()
        assert codec.encode(value)["shade"] == 2
        read = through_json(codec, value)
        assert read == value
        assert isinstance(read, Choices)
        assert read.shade is Shade.DARK

    @given(
        st.dictionaries(st.text(storable).map(SkuCode), st.integers(), max_size=3),
        st.dictionaries(st.sampled_from(["fast", "slow"]), st.integers(), max_size=2),
        st.dictionaries(st.sampled_from([1, 2]), st.text(storable), max_size=2),
    )
    def test_new_types_and_literals_are_dict_keys(
        self,
        by_sku: dict[SkuCode, int],
        by_mode: dict[Literal["fast", "slow"], int],
        by_level: dict[Literal[1, 2], str],
    ) -> None:
        """Dict keys may be any key type's NewType, or a Literal of strings or integers."""
        value = Keys(by_sku, by_mode, by_level, {Shade.LIGHT: 1})
        assert through_json(JsonCodec(), value) == value

    @given(
        st.datetimes(
            timezones=st.integers(-86399, 86399).map(lambda s: timezone(timedelta(seconds=s)))
        ),
        st.dates(),
    )
    def test_datetimes_keep_any_offset_and_dates_stay_dates(self, at: datetime, day: date) -> None:
        """Offsets with seconds survive; a date reads back as a date."""
        stamped = Stamped(1, at, day)
        read = through_json(JsonCodec(), stamped)
        assert isinstance(read, Stamped)
        assert (read.at.isoformat(), read.day) == (at.isoformat(), day)
        assert type(read.day) is date


# -- malformed stored data ------------------------------------------------------------------


class TestMalformedInput:
    @pytest.mark.parametrize("stored", [[1], {"x": 1}, ["fast"]])
    def test_a_literal_field_holding_an_array_or_object_is_named(self, stored: object) -> None:
        """A Literal field with an unhashable stored value is a DeserializationError."""
        with pytest.raises(DeserializationError, match=r"Choices \(row 3\): mode: .* is not one"):
            JsonCodec().decode(Choices, {"mode": stored, "shade": 2}, context="row 3")

    def test_a_literal_enum_field_holding_another_value_is_named(self) -> None:
        """Only the member's value reads as a Literal member."""
        with pytest.raises(DeserializationError, match=r"shade: 1 is not one of"):
            JsonCodec().decode(Choices, {"mode": "fast", "shade": 1})

    @pytest.mark.parametrize("key", ["abc", "", "{", "[1]", "null"])
    def test_a_bad_key_of_a_non_string_enum_is_named(self, key: str) -> None:
        """An enum key that is not valid JSON (or no member's value) is a DeserializationError."""
        with pytest.raises(DeserializationError, match=r"Keys: by_shade"):
            JsonCodec().decode(
                Keys, {"by_sku": {}, "by_mode": {}, "by_level": {}, "by_shade": {key: 1}}
            )

    @pytest.mark.parametrize(
        ("field", "stored", "message"),
        [
            ("by_mode", {"medium": 1}, r"by_mode: invalid key 'medium'"),
            ("by_level", {"3": "x"}, r"by_level: invalid key '3'"),
            ("by_level", {"01": "x"}, r"by_level: invalid integer key '01'"),
        ],
    )
    def test_a_dict_key_outside_its_literal_is_named(
        self, field: str, stored: object, message: str
    ) -> None:
        """A stored key that is not one of the Literal's values is a DeserializationError."""
        data = {"by_sku": {}, "by_mode": {}, "by_level": {}, "by_shade": {}, field: stored}
        with pytest.raises(DeserializationError, match=message):
            JsonCodec().decode(Keys, data)

    def test_a_generic_value_object_item_of_the_wrong_type_is_named(self) -> None:
        """The type argument is enforced on read, with the field path."""
        data = {
            "amounts": {"item": 1.5},
            "days": {"item": []},
            "pairs": [],
        }
        with pytest.raises(DeserializationError, match=r"amounts\.item: expected decimal as a"):
            JsonCodec().decode(Crate, data)

    def test_unexpected_keys_of_any_kind_are_listed(self) -> None:
        """Extra keys are named even when they are not all strings (data built in Python)."""
        with pytest.raises(DeserializationError, match=r"unexpected field\(s\) 1, extra"):
            JsonCodec().decode(Box[int], {"item": 1, 1: 2, "extra": 3})


class TestMalformedEventRecords:
    @staticmethod
    def codec(*steps: Any) -> JsonCodec:
        codec = JsonCodec()
        codec.register(Moved, name="shop.Moved", version=len(steps) + 1)
        for version, step in enumerate(steps, start=1):
            codec.add_upcaster("shop.Moved", version, step)
        return codec

    @staticmethod
    def payload() -> dict[str, Any]:
        return {
            "event_id": str(UUID(int=1)),
            "occurred_at": datetime(2020, 1, 1, tzinfo=UTC).isoformat(),
            "street": "Main St",
        }

    @pytest.mark.parametrize("garbage", [None, "text", 3, ["street"], [("a", 1)]])
    def test_an_upcaster_returning_no_object_is_named(self, garbage: object) -> None:
        """A step that returns anything but a dict is reported with its versions and context."""
        codec = self.codec(lambda p: garbage, lambda p: p)
        with pytest.raises(
            DeserializationError,
            match=r"upcaster from version 1 to 2 of shop\.Moved returned .*, not a JSON object "
            r"\(outbox 4\)",
        ):
            codec.event_from_record("shop.Moved", 1, self.payload(), context="outbox 4")

    def test_an_upcaster_that_fails_on_a_payload_is_named(self) -> None:
        """A step that raises on a malformed old payload is a DeserializationError with cause."""
        codec = self.codec(lambda p: {**p, "street": p["road"]})
        with pytest.raises(
            DeserializationError,
            match=r"upcaster from version 1 to 2 of shop\.Moved failed: KeyError: 'road' "
            r"\(outbox 5\)",
        ) as raised:
            codec.event_from_record("shop.Moved", 1, self.payload(), context="outbox 5")
        assert isinstance(raised.value.__cause__, KeyError)

    @pytest.mark.parametrize("version", ["1", 1.0, None, True])
    def test_a_schema_version_that_is_not_an_integer_is_named(self, version: object) -> None:
        """A stored schema version must be an integer."""
        with pytest.raises(
            DeserializationError, match=r"schema version of shop\.Moved must be an integer"
        ):
            self.codec().event_from_record("shop.Moved", version, self.payload())  # type: ignore[arg-type]

    @pytest.mark.parametrize("type_name", [None, 3, ["shop.Moved"], {"a": 1}])
    def test_a_type_name_that_is_not_a_string_is_named(self, type_name: object) -> None:
        """A stored type name must be a string; anything else is reported, never a TypeError."""
        with pytest.raises(DeserializationError, match=r"event type name must be a string"):
            self.codec().event_from_record(type_name, 1, self.payload(), context="row 2")  # type: ignore[arg-type]

    def test_an_event_with_a_generic_field_round_trips(self) -> None:
        """Events reach the same converters as value objects."""
        codec = self.codec()
        event = Moved("x")
        record = codec.event_to_record(event)
        assert codec.event_from_record(*record) == event


class TestEntities:
    def test_an_entity_with_a_generic_child_value_round_trips(self) -> None:
        """Entities holding a parameterised value object round-trip."""
        line = Line(7, Box(Decimal("1.10")))
        read = through_json(JsonCodec(), line)
        assert isinstance(read, Line)
        assert read.price.item.as_tuple() == Decimal("1.10").as_tuple()


class Line(Entity[int]):
    price: Box[Decimal]


# -- values that do not fit their annotation, on write --------------------------------------


@dataclasses.dataclass(frozen=True)
class Reading:
    """One field of each scalar kind, to be filled with values of the wrong kind."""

    count: int
    ratio: float
    label: str
    flag: bool
    amount: Decimal
    ref: UUID
    day: date
    at: datetime
    shade: Shade
    mode: Literal["fast", "slow"]
    maybe: int | None
    numbers: list[int]
    pair: tuple[int, str]
    by_name: dict[str, int]
    by_number: dict[int, str]
    anything: Any


def a_reading() -> Reading:
    return Reading(
        count=1,
        ratio=0.5,
        label="x",
        flag=True,
        amount=Decimal("1.10"),
        ref=UUID(int=1),
        day=date(2020, 1, 2),
        at=datetime(2020, 1, 2, 3, 4, tzinfo=UTC),
        shade=Shade.DARK,
        mode="fast",
        maybe=None,
        numbers=[1, 2],
        pair=(1, "a"),
        by_name={"a": 1},
        by_number={1: "a"},
        anything={"k": [1, "two", None]},
    )


def with_field(value: Reading, name: str, stored: object) -> Reading:
    """A copy with one field set to ``stored``, bypassing what a type checker would refuse."""
    copy = Reading(**{f: getattr(value, f) for f in Reading.__dataclass_fields__})
    object.__setattr__(copy, name, stored)
    return copy


any_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.uuids()
    | st.dates()
    | st.datetimes()
    | st.sampled_from(Shade),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
    ),
    max_leaves=6,
)


class TestUnstorableValues:
    @given(st.sampled_from(sorted(Reading.__dataclass_fields__)), any_value)
    def test_whatever_a_field_holds_is_refused_on_write_or_read_back_equal(
        self, name: str, stored: object
    ) -> None:
        """Nothing is written that cannot be read back: a misfit value is refused on write."""
        value = with_field(a_reading(), name, stored)
        codec = JsonCodec()
        try:
            text = codec.dumps(value)
        except (TypeError, ValueError) as error:
            refused = str(error)
        else:
            refused = ""
        if refused:
            assert refused.startswith(f"cannot store Reading: {name}")
            return
        read = codec.loads(Reading, text)
        # A float field stores an int as the float it is to a type checker.
        assert getattr(read, name) == (float(stored) if name == "ratio" else stored)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("name", "stored", "message"),
        [
            ("count", 1.5, r"count: expected an integer, got float 1\.5"),
            ("count", "7", r"count: expected an integer, got str '7'"),
            ("label", 5, r"label: expected a string, got int 5"),
            ("flag", 1, r"flag: expected a boolean, got int 1"),
            ("amount", 0.1, r"amount: expected a Decimal, got float 0\.1"),
            ("ref", str(UUID(int=1)), r"ref: expected a UUID, got str"),
            ("day", datetime(2020, 1, 2, 3, 4), r"day: expected a date \(not a datetime"),
            ("at", date(2020, 1, 2), r"at: expected a datetime, got date"),
            ("shade", 2, r"shade: expected a Shade, got int 2"),
            ("mode", "medium", r"mode: expected one of 'fast', 'slow', got str 'medium'"),
            ("numbers", "12", r"numbers: expected an array, got str '12'"),
            ("numbers", [1, "2"], r"numbers\[1\]: expected an integer, got str '2'"),
            ("pair", (1, "a", 2), r"pair: expected 2 items, got 3"),
            ("pair", [1, "a"], r"pair: expected a tuple, got list \[1, 'a'\]"),
            ("mode", ["fast"], r"mode: expected one of 'fast', 'slow', got list"),
            ("by_name", {1: 1}, r"by_name: expected a string key, got int 1"),
            ("by_number", {"1": "a"}, r"by_number: expected an integer key, got str '1'"),
            ("by_name", {"a": "b"}, r"by_name\['a'\]: expected an integer, got str 'b'"),
            ("anything", {"a": Decimal(1)}, r"anything: expected a JSON value .*, got Decimal"),
            ("anything", {1: "a"}, r"anything: expected a JSON value, got int 1 as a key"),
        ],
    )
    def test_a_misfit_value_is_refused_naming_the_field(
        self, name: str, stored: object, message: str
    ) -> None:
        """The error names the class, the field path, the expected kind and the value."""
        with pytest.raises(TypeError, match=rf"cannot store Reading: {message}"):
            JsonCodec().encode(with_field(a_reading(), name, stored))

    def test_subclasses_of_int_and_str_are_stored_as_their_base(self) -> None:
        """True in an int field and a StrEnum in a str field are what their annotation says."""
        value = with_field(with_field(a_reading(), "count", True), "label", Size.LARGE)
        encoded = JsonCodec().encode(value)
        assert (type(encoded["count"]), encoded["count"]) == (int, 1)
        assert (type(encoded["label"]), encoded["label"]) == (str, "l")

    def test_an_integer_too_large_for_a_float_field_is_refused(self) -> None:
        """An int in a float field is stored as a float, if it fits one."""
        with pytest.raises(ValueError, match=r"cannot store Reading: ratio: .* too large"):
            JsonCodec().encode(with_field(a_reading(), "ratio", 10**400))

    def test_a_stored_number_too_large_for_a_float_is_named(self) -> None:
        """Reading a huge integer into a float field is a DeserializationError."""
        data = JsonCodec().encode(a_reading())
        data["ratio"] = 10**400
        with pytest.raises(DeserializationError, match=r"ratio: .* too large for a float"):
            JsonCodec().decode(Reading, data)

    def test_annotated_and_any_dict_keys(self) -> None:
        """An Annotated key is its type; Any keys are whatever JSON keeps (strings)."""
        value = LooseKeys({3: "c"}, {"k": 1})
        assert through_json(JsonCodec(), value) == value
        shelf = NoteShelf({4: "d"})
        assert through_json(JsonCodec(), shelf) == shelf

    def test_literal_keys_of_other_types_are_unsupported(self) -> None:
        """Only Literals of str or of int are dict keys."""
        with pytest.raises(TypeError, match=r"FloatKeys\.by_ratio: .*Literal keys are str or int"):
            JsonCodec().encode(FloatKeys({1.5: 1}))

    def test_a_literal_key_outside_the_literal_is_refused_on_write(self) -> None:
        """A key a Literal does not allow could not be read back."""
        with pytest.raises(
            TypeError, match=r"by_mode: expected a key in 'fast', 'slow', got str 'medium'"
        ):
            JsonCodec().encode(Keys({}, {"medium": 1}, {}, {}))  # type: ignore[dict-item]

    def test_a_misfit_inside_a_child_entity_names_the_path(self) -> None:
        """The path runs through nested value objects and list indexes."""
        crate = Crate(Box(Decimal(1)), Box([date(2020, 1, 1), "2020-01-02"]), ())  # type: ignore[list-item]
        with pytest.raises(
            TypeError, match=r"cannot store Crate: days\.item\[1\]: expected a date"
        ):
            JsonCodec().encode(crate)


# -- what no store or broker can carry, written or read ------------------------------------


@dataclasses.dataclass(frozen=True)
class Gauge:
    """One field of each kind that can hold text or numbers no store can carry.

    A plain frozen dataclass: a value object may not hold the ``dict`` field.
    """

    label: str = "ok"
    ratio: float = 0.5
    amount: Decimal = Decimal("1.5")
    by_name: dict[str, int] = dataclasses.field(default_factory=dict[str, int])
    anything: Any = None
    tags: frozenset[Any] = frozenset()


class Leaf(ValueObject):
    """A value object whose validation computes with its Decimal."""

    amount: Decimal

    def validate(self) -> None:
        self.amount.quantize(Decimal("0.01"))


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


UNSTORABLE_TEXT = [
    pytest.param("bad\ud800", "a lone surrogate at index 3", id="lone-surrogate"),
    pytest.param("\udfffé", "a lone surrogate at index 0", id="non-ascii-surrogate"),
    pytest.param("bad\x00", "a NUL character at index 3", id="nul"),
]


class TestUnstorableText:
    @pytest.mark.parametrize(("text", "reason"), UNSTORABLE_TEXT)
    @pytest.mark.parametrize(
        ("name", "holding"),
        [
            ("label", lambda t: t),
            ("by_name", lambda t: {t: 1}),
            ("anything", lambda t: {"k": [t]}),
            ("anything", lambda t: {t: 1}),
            ("tags", lambda t: frozenset([t])),
        ],
    )
    def test_a_string_no_store_can_carry_is_refused_on_write_naming_the_field(
        self, text: str, reason: str, name: str, holding: Any
    ) -> None:
        """NUL (PostgreSQL refuses it) and lone surrogates (no UTF-8 form) are a ValueError."""
        with pytest.raises(ValueError, match=rf"cannot store Gauge: {name}.*{reason}"):
            JsonCodec().encode(Gauge(**{name: holding(text)}))

    @pytest.mark.parametrize(("text", "reason"), UNSTORABLE_TEXT)
    @pytest.mark.parametrize(
        ("name", "stored"),
        [
            ("label", lambda t: t),
            ("by_name", lambda t: {t: 1}),
            ("anything", lambda t: {"k": [t]}),
            ("anything", lambda t: {t: 1}),
            ("tags", lambda t: [t]),
        ],
    )
    def test_a_stored_string_the_encoder_refuses_is_refused_on_read(
        self, text: str, reason: str, name: str, stored: Any
    ) -> None:
        """SQLite keeps what PostgreSQL cannot: reading refuses it the same on both."""
        data = {**JsonCodec().encode(Gauge()), name: stored(text)}
        with pytest.raises(DeserializationError, match=rf"Gauge \(row 9\): {name}.*{reason}"):
            JsonCodec().decode(Gauge, data, context="row 9")

    def test_keys_of_a_dict_of_any_must_be_strings(self) -> None:
        """JSON keys are strings: an int key would read back as another key, so it is refused."""
        with pytest.raises(TypeError, match=r"by_any: expected a string key, got int 1"):
            JsonCodec().encode(LooseKeys({}, {1: 1}))

    @given(st.text(st.characters(exclude_categories=())))
    def test_any_string_is_stored_and_read_back_or_refused_with_a_value_error(
        self, text: str
    ) -> None:
        """Whatever text a field holds, it round-trips through JSON or is refused on write."""
        codec = JsonCodec()
        value = Gauge(label=text, by_name={text: 1}, anything=[text])
        unstorable = "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        if unstorable:
            with pytest.raises(ValueError, match=r"^cannot store Gauge: label: "):
                codec.encode(value)
        else:
            encoded = json.dumps(codec.encode(value), ensure_ascii=False).encode()
            assert codec.loads(Gauge, encoded) == value


class TestUnstorableNumbers:
    @pytest.mark.parametrize("stored", ["NaN", "Infinity", "-Infinity", "1e400"])
    def test_a_stored_non_finite_float_is_refused_as_the_encoder_refuses_it(
        self, stored: str
    ) -> None:
        """Python's parser reads NaN, Infinity and 1e400 (as inf): reading refuses them."""
        text = JsonCodec().dumps(Gauge()).replace('"ratio":0.5', f'"ratio":{stored}')
        with pytest.raises(DeserializationError, match=r"ratio: the non-finite number"):
            JsonCodec().loads(Gauge, text, context="row 1")

    def test_a_non_finite_float_inside_an_any_value_is_refused_on_read(self) -> None:
        """An ``Any`` field holding NaN reads as it writes: refused."""
        with pytest.raises(DeserializationError, match=r"anything\[1\]: the non-finite"):
            JsonCodec().loads(Gauge, '{"anything": [1, NaN]}')

    @pytest.mark.parametrize("name", ["count", "anything"])
    def test_an_integer_over_4300_digits_is_refused_on_write(self, name: str) -> None:
        """json.dumps would fail on it inside the driver; 4300 digits are stored."""
        assert through_json(JsonCodec(), with_field(a_reading(), name, 10**4299))
        with pytest.raises(ValueError, match=rf"cannot store Reading: {name}: .* at most 4300"):
            JsonCodec().encode(with_field(a_reading(), name, -(10**4300)))

    @pytest.mark.parametrize("amount", [Decimal("NaN"), Decimal("sNaN"), Decimal("-NaN")])
    def test_a_nan_decimal_is_refused_on_write(self, amount: Decimal) -> None:
        """NaN is not equal to itself (sNaN refuses comparison): it is not a number to store."""
        with pytest.raises(ValueError, match=r"cannot store Gauge: amount: .*NaN is not a"):
            JsonCodec().encode(Gauge(amount=amount))

    @pytest.mark.parametrize("stored", ["NaN", "sNaN", "-nan"])
    def test_a_stored_nan_decimal_is_refused_on_read(self, stored: str) -> None:
        """A NaN in a Decimal field is a DeserializationError, never decimal.InvalidOperation."""
        with pytest.raises(DeserializationError, match=r"amount: the decimal .* is NaN"):
            JsonCodec().decode(Gauge, {"amount": stored})

    @pytest.mark.parametrize("amount", [Decimal("Infinity"), Decimal("-Infinity")])
    def test_decimal_infinities_round_trip(self, amount: Decimal) -> None:
        """Infinities are numbers: a Decimal field stores them (a float field cannot)."""
        assert through_json(JsonCodec(), Gauge(amount=amount)) == Gauge(amount=amount)

    def test_validation_failing_on_a_stored_decimal_is_a_deserialization_error(self) -> None:
        """An ArithmeticError from validating stored values means the row is wrong."""
        with pytest.raises(DeserializationError, match=r"Leaf refused the stored values"):
            JsonCodec().decode(Leaf, {"amount": "1e999999999"})


class TestNesting:
    def test_an_any_value_may_nest_a_hundred_levels(self) -> None:
        """MAX_JSON_DEPTH arrays inside each other are stored and read back."""
        value = Gauge(anything=nested_lists(100))
        assert through_json(JsonCodec(), value) == value

    @pytest.mark.parametrize("depth", [101, 5000])
    def test_an_any_value_nested_deeper_is_refused_on_write(self, depth: int) -> None:
        """Deeper nesting is a ValueError naming the field, never a RecursionError."""
        with pytest.raises(ValueError, match=r"cannot store Gauge: anything: .* more than 100"):
            JsonCodec().encode(Gauge(anything=nested_lists(depth)))

    def test_a_stored_any_value_nested_deeper_is_refused_on_read(self) -> None:
        """Reading refuses what writing refuses, naming the field."""
        with pytest.raises(DeserializationError, match=r"anything: a JSON value nested more"):
            JsonCodec().decode(Gauge, {"anything": nested_lists(101)})

    def test_json_text_nested_past_the_parsers_recursion_is_refused_on_read(self) -> None:
        """loads() turns the parser's RecursionError into a DeserializationError."""
        text = '{"anything": ' + "[" * 100_000 + "]" * 100_000 + "}"
        with pytest.raises(DeserializationError, match=r"invalid JSON for Gauge|nested more"):
            JsonCodec().loads(Gauge, text)

    def test_a_recursive_value_deeper_than_the_stack_is_refused_on_write(self) -> None:
        """A tree deeper than Python's recursion limit is a ValueError, not a RecursionError."""
        tree = Node("leaf")
        for _ in range(5000):
            tree = Node("branch", (tree,))
        with pytest.raises(ValueError, match=r"cannot store Node: .*Node nested more than 100"):
            JsonCodec().encode(tree)

    def test_a_stored_recursive_value_deeper_than_the_stack_is_refused_on_read(self) -> None:
        """Reading one is a DeserializationError naming the context."""
        data: dict[str, Any] = {"label": "leaf", "children": []}
        for _ in range(5000):
            data = {"label": "branch", "children": [data]}
        with pytest.raises(DeserializationError, match=r"Node \(row 2\): .*Node nested more"):
            JsonCodec().decode(Node, data, context="row 2")

    def test_the_deepest_recursive_value_written_is_read_back(self) -> None:
        """A tree as deep as the bound round-trips, so nothing written is unreadable."""
        tree = Node("leaf")
        for _ in range(100):  # 100 nested in the root
            tree = Node("branch", (tree,))
        assert through_json(JsonCodec(), tree) == tree
        with pytest.raises(ValueError, match=r"nested more than 100 levels"):
            JsonCodec().encode(Node("root", (tree,)))


class TestStoredSets:
    @pytest.mark.parametrize("item", [[1], {"a": 1}])
    def test_an_unhashable_item_of_a_stored_set_is_named(self, item: object) -> None:
        """A ``frozenset[Any]`` holding an array or object is a DeserializationError."""
        with pytest.raises(DeserializationError, match=r"Gauge: tags: a set item is not hash"):
            JsonCodec().decode(Gauge, {"tags": ["a", item]})


class TestStoredTypeNames:
    def test_an_event_name_over_255_bytes_of_utf8_is_refused_at_register(self) -> None:
        """A RabbitMQ routing key is at most 255 bytes: 102 characters can be 302."""
        with pytest.raises(ValueError, match=r"is 302 bytes of UTF-8, over the 255"):
            JsonCodec().register(Moved, name="x." + "€" * 100)

    @pytest.mark.parametrize("name", ["shop.Mo\x00ved", "shop.\ud800"])
    def test_a_name_holding_a_nul_or_a_lone_surrogate_is_refused_at_register(
        self, name: str
    ) -> None:
        """No broker or column carries them."""
        with pytest.raises(ValueError, match=r"cannot store .*Moved under the type name"):
            JsonCodec().register(Moved, name=name)

    def test_a_name_of_exactly_255_bytes_is_accepted(self) -> None:
        """The bound is inclusive."""
        codec = JsonCodec()
        codec.register(Moved, name="x" * 252 + "€")
        assert codec.type_name(Moved) == "x" * 252 + "€"

    def test_a_default_name_over_255_bytes_is_refused(self) -> None:
        """A class whose module.qualname is too long cannot be stored until registered."""
        long_class = type("L" * 300, (Moved,), {"__module__": __name__})
        codec = JsonCodec()
        with pytest.raises(ValueError, match=r"register a shorter name"):
            codec.type_name(long_class)
        with pytest.raises(ValueError, match=r"bytes of UTF-8, over the 255"):
            codec.register(long_class)
        codec.register(long_class, name="shop.Long")
        assert codec.type_name(long_class) == "shop.Long"

    def test_a_schema_version_over_the_integer_column_is_refused_at_register(self) -> None:
        """The outbox's version column is a 32-bit INTEGER."""
        with pytest.raises(ValueError, match=r"between 1 and 2147483647, got 2147483648"):
            JsonCodec().register(Moved, version=2**31)


class Measured(DomainEvent):
    """An event with the fields the damaged payloads below break."""

    amount: Decimal
    ratio: float
    anything: Any
    tags: frozenset[Any]
    label: str


class TestMalformedEventPayloads:
    @pytest.mark.parametrize(
        ("field", "stored", "message"),
        [
            ("amount", "sNaN", r"amount: the decimal 'sNaN' is NaN"),
            ("ratio", math.inf, r"ratio: the non-finite number inf"),
            ("anything", nested_lists(101), r"anything: a JSON value nested more than 100"),
            ("tags", [[1]], r"tags: a set item is not hashable"),
            ("label", "a\x00", r"label: the string 'a\\x00' holds a NUL"),
        ],
    )
    def test_a_malformed_payload_is_a_deserialization_error_naming_the_message(
        self, field: str, stored: object, message: str
    ) -> None:
        """Consumers read events through event_from_record: the same errors, with context."""
        codec = JsonCodec()
        record = codec.event_to_record(Measured(Decimal(1), 0.5, None, frozenset(), "x"))
        payload = {**record.payload, field: stored}
        with pytest.raises(DeserializationError, match=rf"\(message 7\): {message}"):
            codec.event_from_record(record.type_name, 1, payload, context="message 7")
