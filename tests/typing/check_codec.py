"""Type-checked, never run: what a downstream user's checker sees of the JSON codec."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, assert_type
from uuid import UUID, uuid4

from tactical import (
    AggregateRoot,
    DeserializationError,
    DomainEvent,
    EventRecord,
    JsonCodec,
    UnknownTypeError,
    ValueObject,
)


class Money(ValueObject):
    amount: Decimal
    currency: str


class PolicyIssued(DomainEvent):
    policy_id: UUID
    premium: Money


class Policy(AggregateRoot[UUID]):
    holder: str


def rename_holder(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "holder": payload.pop("name")}


codec = JsonCodec()
assert_type(codec.register(PolicyIssued, name="insurance.PolicyIssued", version=2), None)
assert_type(codec.register(Policy, aliases=("old.Policy",)), None)
assert_type(codec.add_upcaster("insurance.PolicyIssued", 1, rename_holder), None)
assert_type(codec.add_upcaster("insurance.PolicyIssued", 2, lambda p: {**p, "x": 1}), None)
assert_type(codec.type_name(PolicyIssued), str)
assert_type(codec.schema_version(PolicyIssued), int)
assert_type(codec.resolve("insurance.PolicyIssued"), type)

money = Money(Decimal("1.00"), "USD")
event = PolicyIssued(uuid4(), money)
policy = Policy(uuid4(), "ada")

assert_type(codec.encode(money), dict[str, Any])
assert_type(codec.decode(Money, {"amount": "1", "currency": "USD"}), Money)
assert_type(codec.decode(Money, None, context="row 1"), Money)
assert_type(codec.dumps(money), str)
assert_type(codec.loads(Money, '{"amount": "1", "currency": "USD"}'), Money)
assert_type(codec.loads(Money, b"{}", context="bytes"), Money)

record = codec.event_to_record(event)
assert_type(record, EventRecord)
type_name, schema_version, payload = record
assert_type(type_name, str)
assert_type(schema_version, int)
assert_type(payload, dict[str, Any])
assert_type(codec.event_from_record(*record), DomainEvent)
assert_type(codec.event_from_record("x", 1, {}, context="outbox 3"), DomainEvent)
assert_type(EventRecord("x", 1, {}), EventRecord)

assert_type(codec.aggregate_to_state(policy), dict[str, Any])
assert_type(codec.aggregate_from_state(Policy, {}, version=1), Policy)
assert_type(codec.aggregate_from_state(Policy, {}, version=1, context="row"), Policy)

try:
    codec.resolve("nowhere.Gone")
except UnknownTypeError as unknown:
    assert_type(unknown, UnknownTypeError)
    as_lookup: LookupError = unknown
    as_deserialization: DeserializationError = unknown
except DeserializationError as malformed:
    as_value_error: ValueError = malformed

# -- misuse both checkers must reject -----------------------------------------------------------

codec.register(PolicyIssued, version="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
codec.register(PolicyIssued, aliases="old.Name")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
codec.register(PolicyIssued, "insurance.PolicyIssued")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
codec.add_upcaster("insurance.PolicyIssued", "1", rename_holder)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
codec.add_upcaster("insurance.PolicyIssued", 1, lambda p: None)  # type: ignore[arg-type, return-value]  # pyright: ignore[reportArgumentType]
codec.event_to_record(money)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
codec.event_to_record(policy)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
codec.aggregate_to_state(event)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
codec.aggregate_from_state(Money, {}, version=1)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]
codec.aggregate_from_state(Policy, {})  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
codec.event_from_record("x", "1", {})  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
codec.loads(Money, 3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
decoded_wrong: Policy = codec.decode(Money, {})  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
loaded_wrong: str = codec.event_from_record("x", 1, {})  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
record.type_name = "renamed"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
