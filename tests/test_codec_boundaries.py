"""JsonCodec at its edges: unusual but legal annotations, and stored data that is not."""

from __future__ import annotations

import dataclasses
import enum
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, NewType, TypeVar
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
        st.dictionaries(st.text().map(SkuCode), st.integers(), max_size=3),
        st.dictionaries(st.sampled_from(["fast", "slow"]), st.integers(), max_size=2),
        st.dictionaries(st.sampled_from([1, 2]), st.text(), max_size=2),
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
