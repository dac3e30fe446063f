"""The codec's generated checks refuse exactly what its encoders refuse, with the same errors.

The in-memory store checks events without building their JSON: a check accepting a value the
encoder refuses would let a commit pass in memory that fails against a database. Every field
of rich samples is set to values of every kind (hostile ones included) and both must agree:
both accept, or both raise the same exception type with the same message.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.codec_model import (
    Claim,
    Currency,
    Money,
    Node,
    Period,
    PremiumChanged,
    Priority,
    aware_datetimes,
    claims,
    everything,
    policies,
    premium_changes,
    sample_everything,
)
from tests.test_codec_compiled import SpecialMoney, sample_policy

from tactical import JsonCodec


class SubUUID(UUID):
    """A UUID subclass: not vouched for by the check's guard, so the encoder decides."""


class SubDecimal(Decimal):
    """A Decimal subclass."""


class SubDatetime(datetime):
    """A datetime subclass."""


def nested_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def nested_node(depth: int) -> Node:
    node = Node("leaf")
    for _ in range(depth):
        node = Node("branch", (node,))
    return node


_MONEY = Money(Decimal("1.50"), Currency.USD)

HOSTILE: list[Any] = [
    None,
    True,
    0,
    -1,
    10**5000,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "text",
    "x\x00y",
    "lone \ud800 surrogate",
    "\udfff",
    "é",
    Decimal("1.25"),
    Decimal(0),
    Decimal("NaN"),
    Decimal("-sNaN"),
    Decimal("Infinity"),
    SubDecimal("2"),
    SubDecimal("NaN"),
    UUID(int=1),
    SubUUID(int=2),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2024, 1, 2, 3, 4, 5),  # naive
    SubDatetime(2024, 1, 2, tzinfo=UTC),
    date(2024, 1, 2),
    Currency.USD,
    Priority.HIGH,
    [],
    [1, "x"],
    ["\x00"],
    {},
    {"a": 1},
    {"\ud800": 1},
    {1: "int key"},
    nested_list(150),
    (1, "one"),
    (1, 2, 3),
    frozenset({1}),
    {"u"},
    _MONEY,
    SpecialMoney(Decimal(1), Currency.EUR),
    Money(Decimal("NaN"), Currency.USD),
    Period(date(2024, 1, 1), date(2024, 1, 2)),
    [_MONEY],
    nested_node(150),
    nested_node(3),
    object(),
    b"bytes",
]


def outcome(run: Any) -> object:
    try:
        run()
    except (TypeError, ValueError) as error:
        return (type(error), str(error))
    return "stored"


def agree(codec: JsonCodec, obj: object) -> None:
    """Assert that checking ``obj`` and encoding it end alike."""
    encoded = outcome(lambda: codec.encode(obj))
    checked = outcome(lambda: codec._check_storable(obj))  # pyright: ignore[reportPrivateUsage]
    assert checked == encoded


def replaced(obj: Any, name: str, value: Any) -> Any:
    """A copy of ``obj`` with field ``name`` set to ``value``, past any validation."""
    copy = dataclasses.replace(obj)
    object.__setattr__(copy, name, value)
    return copy


SAMPLES = {
    "Everything": sample_everything,
    "Policy": sample_policy,
    "Claim": lambda: Claim(UUID(int=3), _MONEY, datetime(2024, 1, 1, tzinfo=UTC), None),
    "Node": lambda: nested_node(2),
}


class TestChecksAgreeWithEncoders:
    @pytest.mark.parametrize("name", list(SAMPLES))
    def test_every_field_set_to_every_hostile_value_is_refused_alike(self, name: str) -> None:
        """Accepted by both, or refused by both with the same error type and message."""
        codec = JsonCodec()
        sample = SAMPLES[name]()
        for f in dataclasses.fields(sample):
            for value in HOSTILE:
                agree(codec, replaced(sample, f.name, value))

    def test_an_event_with_every_hostile_value_in_every_field_is_refused_alike(self) -> None:
        """Events, which the in-memory store only checks, are refused as the encoder does."""
        codec = JsonCodec()
        sample = PremiumChanged(
            UUID(int=4), Decimal("9.5"), date(2024, 5, 1), Currency.EUR, ("late",), _MONEY
        )
        for f in dataclasses.fields(sample):
            for value in HOSTILE:
                agree(codec, replaced(sample, f.name, value))

    def test_an_instance_of_another_class_is_refused_alike(self) -> None:
        """A subclass where a class is meant, and a non-dataclass, get the encoder's error."""
        codec = JsonCodec()
        agree(codec, SpecialMoney(Decimal(1), Currency.USD))
        agree(codec, object())
        agree(codec, Node)

    def test_a_check_builds_nothing_the_caller_sees(self) -> None:
        """A storable object is accepted, and returns None rather than its JSON."""
        codec = JsonCodec()
        assert codec._check_storable(sample_everything()) is None  # pyright: ignore[reportPrivateUsage]

    @given(everything | policies | claims | premium_changes)
    def test_generated_storable_objects_are_accepted(self, obj: object) -> None:
        """Whatever the encoder stores, the check accepts."""
        codec = JsonCodec()
        codec.encode(obj)
        codec._check_storable(obj)  # pyright: ignore[reportPrivateUsage]

    @given(
        everything | policies | claims | premium_changes,
        st.data(),
        st.one_of(
            st.sampled_from(HOSTILE),
            st.text(st.characters(exclude_categories=())),
            st.decimals(),
            st.datetimes() | aware_datetimes,
            st.dates(),
            st.integers(),
            st.floats(),
            st.uuids(),
            st.lists(st.text(st.characters(exclude_categories=())), max_size=3),
            st.dictionaries(st.text(st.characters(exclude_categories=())), st.decimals()),
        ),
    )
    def test_any_value_in_any_field_is_refused_alike(
        self, obj: Any, data: st.DataObject, value: Any
    ) -> None:
        """Hypothesis: a value of any kind in any field, checked and encoded, ends alike."""
        name = data.draw(st.sampled_from([f.name for f in dataclasses.fields(obj)]))
        agree(JsonCodec(), replaced(obj, name, value))
