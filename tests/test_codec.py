"""JsonCodec: round-trips, type names, schema versions and upcasters."""

from __future__ import annotations

import dataclasses
import gc
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.codec_model import (
    AddressChanged,
    AuditedArchive,
    Claim,
    Currency,
    Derived,
    Everything,
    Keyed,
    Money,
    Node,
    NumberedShelf,
    Period,
    Policy,
    PremiumChanged,
    Shelf,
    Unregistered,
    claims,
    everything,
    exact,
    is_plain_json,
    money,
    policies,
    premium_changes,
    sample_everything,
    storable_characters,
    through_json,
    trees,
)

from tactical import (
    DeserializationError,
    DomainEvent,
    EventRecord,
    JsonCodec,
    UnknownTypeError,
)


class TestRoundTrip:
    @given(everything)
    def test_every_supported_annotation_round_trips_exactly(self, value: Everything) -> None:
        """A value of every supported annotation comes back from JSON exactly as it was."""
        assert exact(through_json(JsonCodec(), value)) == exact(value)

    @given(money)
    def test_value_objects_round_trip(self, value: Money) -> None:
        """A value object round-trips, Decimal digits and all (infinities included)."""
        decoded = through_json(JsonCodec(), value)
        assert exact(decoded) == exact(value)
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
        assert record == EventRecord("tests.codec_model.PremiumChanged", 1, codec.encode(event))
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

    @given(st.lists(st.text(storable_characters, max_size=3), max_size=6))
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
        value = JsonCodec().decode(
            Everything, {**JsonCodec().encode(sample_everything()), "ratio": 2}
        )
        assert value.ratio == 2.0
        assert type(value.ratio) is float

    def test_output_is_json_never_pickle(self) -> None:
        """Encoded output is JSON text; the codec modules never reference pickle or marshal."""
        import tactical._codec
        import tactical._codec_plans
        import tactical._codec_values

        text = JsonCodec().dumps(sample_everything())
        assert isinstance(json.loads(text), dict)
        for module in (tactical._codec, tactical._codec_plans, tactical._codec_values):
            assert not {"pickle", "marshal", "shelve"} & set(vars(module)), module.__name__


class TestTypeNames:
    def test_default_name_is_module_and_qualified_name(self) -> None:
        """Unregistered classes are stored under module.QualifiedName at schema version 1."""
        codec = JsonCodec()
        assert codec.type_name(PremiumChanged) == "tests.codec_model.PremiumChanged"
        assert codec.schema_version(PremiumChanged) == 1
        assert codec.resolve("tests.codec_model.PremiumChanged") is PremiumChanged
        assert codec.resolve("tests.codec_model.Policy") is Policy

    def test_an_aggregate_with_two_aggregate_bases_is_found_by_default_name(self) -> None:
        """Discovery walks a class hierarchy with diamonds and still finds the class."""
        codec = JsonCodec()
        assert codec.resolve("tests.codec_model.AuditedArchive") is AuditedArchive
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
        with pytest.raises(UnknownTypeError, match=r"tests.codec_model.Unregistered"):
            codec.resolve("tests.codec_model.Unregistered")
        codec.register(
            Unregistered, name="audit.Noted", aliases=("tests.codec_model.Unregistered",)
        )
        assert codec.resolve("tests.codec_model.Unregistered") is Unregistered

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
        assert other.type_name(Unregistered) == "tests.codec_model.Unregistered"
        with pytest.raises(UnknownTypeError):
            other.resolve("audit.Noted")

    def test_a_taken_name_or_alias_is_refused_naming_both_classes(self) -> None:
        """A name or alias already used by another class raises ValueError naming both."""
        codec = JsonCodec()
        codec.register(Unregistered, name="shared.Name", aliases=("shared.Old",))
        for name, aliases in (("shared.Name", ()), ("fresh.Name", ("shared.Old",))):
            with pytest.raises(ValueError, match="already registered") as refused:
                codec.register(PremiumChanged, name=name, aliases=aliases)
            assert "tests.codec_model.Unregistered" in str(refused.value)
            assert "tests.codec_model.PremiumChanged" in str(refused.value)
        assert codec.resolve("shared.Name") is Unregistered
        with pytest.raises(UnknownTypeError):  # the refused registration left nothing behind
            codec.resolve("fresh.Name")

    def test_a_name_found_by_discovery_is_taken(self) -> None:
        """Once a default name has resolved to a class, another class cannot register it."""
        codec = JsonCodec()
        assert codec.resolve("tests.codec_model.Unregistered") is Unregistered
        with pytest.raises(ValueError, match="already registered"):
            codec.register(PremiumChanged, name="tests.codec_model.Unregistered")

    def test_registering_the_same_class_again_updates_it(self) -> None:
        """Re-registering a class with its own name changes its version without complaint."""
        codec = JsonCodec()
        codec.register(AddressChanged, name="shop.AddressChanged")
        codec.register(AddressChanged, name="shop.AddressChanged", version=3)
        assert codec.schema_version(AddressChanged) == 3

    @pytest.mark.parametrize("version", [0, -1])
    def test_schema_versions_start_at_one(self, version: int) -> None:
        """A schema version below 1 is refused, naming the class and the version."""
        with pytest.raises(
            ValueError, match=f"AddressChanged must be between 1 and 2147483647, got {version}"
        ):
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

    @given(st.text(storable_characters), st.text(storable_characters))
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
