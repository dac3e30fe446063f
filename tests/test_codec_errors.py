"""JsonCodec: every error path, on write and on read, names what was wrong."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from tests.codec_model import (
    BoolKeys,
    Claim,
    Currency,
    Everything,
    Money,
    Node,
    Period,
    Policy,
    Shelf,
    TupleKeys,
    TwoWay,
    Unregistered,
    Weird,
    sample_everything,
)

from tactical import (
    DeserializationError,
    JsonCodec,
    UnknownTypeError,
    ValueObject,
)


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
            codec.resolve("tests.codec_model.Money")
        codec.register(Money)
        assert codec.resolve("tests.codec_model.Money") is Money

    @pytest.mark.parametrize("payload", [[], "x", None, 3])
    def test_event_payload_must_be_an_object(self, payload: object) -> None:
        """An event payload that is not a JSON object is refused with the context."""
        with pytest.raises(
            DeserializationError, match=r"PremiumChanged payload is not a JSON object \(outbox 3\)"
        ):
            JsonCodec().event_from_record(
                "tests.codec_model.PremiumChanged", 1, payload, context="outbox 3"
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
        data = {**codec.encode(sample_everything()), **change}
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
            codec.event_from_record("tests.codec_model.Unregistered", 1, payload)

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
            codec.event_from_record(
                "tests.codec_model.Unregistered", 1, payload, context="outbox 5"
            )

    def test_validation_failures_on_read_are_deserialization_errors(self) -> None:
        """Stored values that break a value object's invariant cannot be loaded."""
        with pytest.raises(DeserializationError, match="Period refused the stored values"):
            JsonCodec().decode(Period, {"start": "2024-01-02", "end": "2024-01-01"})

    def test_subclass_instances_are_refused_on_write(self) -> None:
        """A field holding a subclass of its declared type cannot be stored (no polymorphism)."""

        class SpecialMoney(Money):
            pass

        value = Everything(
            **{**vars_of(sample_everything()), "maybe": SpecialMoney(Decimal(1), Currency.USD)}
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
        value = dataclasses.replace(sample_everything(), anything=anything)
        with pytest.raises(TypeError, match=f"^cannot store Everything: {pattern}"):
            JsonCodec().encode(value)
        with pytest.raises(TypeError, match=r"^cannot store Everything: anything"):
            JsonCodec().dumps(value)

    def test_an_any_field_refuses_non_finite_floats(self) -> None:
        """NaN inside an `Any` field is refused as it is in a float field."""
        value = dataclasses.replace(sample_everything(), anything=[math.nan])
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
        value = dataclasses.replace(sample_everything(), periods=[period])
        with pytest.raises(TypeError, match=r"^cannot store Everything: periods\[0\]\.start: "):
            JsonCodec().encode(value)

    def test_unsupported_annotations_are_named(self) -> None:
        """A class with an unsupported field type cannot be serialized; the field is named."""
        for cls, pattern in (
            (
                Weird,
                r"Weird\.payload: unsupported annotation <class 'bytes'> for JSON serialization: "
                r"a stored field is a str, int, .*; make the field's class a ValueObject",
            ),
            (TwoWay, r"TwoWay\.value: only `X \| None` unions are supported"),
            (BoolKeys, r"BoolKeys\.flags: unsupported dict key type <class 'bool'>"),
            (TupleKeys, r"TupleKeys\.grid: unsupported dict key type"),
        ):
            with pytest.raises(TypeError, match=pattern):
                JsonCodec().encode(cls.__new__(cls))

    @pytest.mark.parametrize("ratio", [math.nan, math.inf, -math.inf])
    def test_non_finite_floats_are_refused_on_write(self, ratio: float) -> None:
        """NaN and infinities have no JSON form: writing one raises, naming the value."""
        value = dataclasses.replace(sample_everything(), ratio=ratio)
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
