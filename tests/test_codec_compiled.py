"""The generated decoders' fast path reads and refuses exactly what the general decoder does.

An object with exactly a class's fields takes the generated straight-line code; any other
input (a dict subclass here) takes the general decoder. For every field of a rich sample,
replaced by values of every JSON kind, both must give the same object or the same error.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from tests.codec_model import (
    Claim,
    Currency,
    Derived,
    Everything,
    Money,
    Node,
    Period,
    Policy,
    sample_everything,
)

from tactical import DeserializationError, JsonCodec
from tactical._structural import structural_state


def sample_policy() -> Policy:
    """A policy with a claim, limits, tags and an excess: nested objects of each kind."""
    usd = Money(Decimal("10.50"), Currency.USD)
    return Policy(
        UUID(int=1),
        "ada",
        usd,
        Period(date(2024, 1, 1), date(2024, 12, 31)),
        claims=[Claim(UUID(int=2), usd, datetime(2024, 3, 1, tzinfo=UTC), "hail")],
        limits=(usd, usd),
        tags=frozenset({"home"}),
        excess=usd,
    )


@dataclasses.dataclass
class Swapped:
    """A dataclass whose own __init__ takes its fields in another order than declared."""

    first: int
    second: str

    def __init__(self, second: str, first: int) -> None:
        self.first, self.second = first, second


class SpecialMoney(Money):
    """A subclass of a declared field type, which the codec refuses to store."""


class Routed(dict[str, Any]):
    """A JSON object the fast path does not take (it wants exactly a dict)."""


JSON_KINDS: list[Any] = [None, True, 0, -1, 1.5, "", "x\x00", "2024-01-02", [], [1], {}, {"a": 1}]


def outcome(codec: JsonCodec, cls: type, data: dict[str, Any]) -> object:
    try:
        return ("read", structural_state(codec.decode(cls, data)))
    except DeserializationError as error:
        return ("refused", str(error))


def variants(state: dict[str, Any]) -> list[dict[str, Any]]:
    """``state`` with each field replaced by each JSON kind, dropped, and one unknown added."""
    made = [dict(state), {**state, "unknown": 1}]
    for name in state:
        made.append({k: v for k, v in state.items() if k != name})
        made += [{**state, name: value} for value in JSON_KINDS]
    return made


class TestGeneratedDecoders:
    @pytest.mark.parametrize(
        ("cls", "sample"),
        [(Everything, sample_everything), (Policy, sample_policy)],
        ids=["Everything", "Policy"],
    )
    def test_the_fast_path_and_the_general_decoder_agree_on_every_variant(
        self, cls: type, sample: Any
    ) -> None:
        """Same object read, or the same error naming the same field, for each variant."""
        codec = JsonCodec()
        state = codec.encode(sample())
        for data in variants(state):
            assert outcome(codec, cls, data) == outcome(codec, cls, Routed(data))

    def test_nested_objects_take_the_fast_path_and_keep_the_error_path(self) -> None:
        """A malformed value deep inside a tree is named by its full path."""
        codec = JsonCodec()
        tree = {"label": "root", "children": [{"label": "leaf", "children": [{"label": 3}]}]}
        with pytest.raises(
            DeserializationError, match=r"children\[0\]\.children\[0\]\.label: expected a string"
        ):
            codec.decode(Node, tree)

    def test_fields_reach_an_init_that_orders_them_otherwise(self) -> None:
        """Values are passed by the class's own parameter order, never by declaration order."""
        read = JsonCodec().decode(Swapped, {"first": 1, "second": "two"})
        assert (read.first, read.second) == (1, "two")

    def test_a_field_outside_init_is_set_after_construction(self) -> None:
        """init=False fields are read back as stored, not recomputed."""
        codec = JsonCodec()
        assert codec.decode(Derived, {"base": 2, "doubled": 5}).doubled == 5


class TestGeneratedEncoders:
    def test_a_subclass_where_a_class_is_declared_is_refused_with_the_field_path(self) -> None:
        """Fields are stored by their declared type: a subclass value names its field."""
        codec = JsonCodec()
        policy = sample_policy()

        policy.premium = SpecialMoney(policy.premium.amount, policy.premium.currency)
        with pytest.raises(TypeError, match=r"premium: expected exactly Money, got SpecialMoney"):
            codec.encode(policy)

    def test_values_needing_no_conversion_and_values_needing_one_encode_alike(self) -> None:
        """An int in a float field is written as a float, as the converter writes it."""
        codec = JsonCodec()
        state = codec.encode(sample_everything())
        everything = codec.decode(Everything, {**state, "ratio": 2})
        assert type(codec.encode(everything)["ratio"]) is float
