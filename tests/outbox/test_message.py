"""OutboxMessage.from_wire: whatever a broker delivers, a malformed message is a ValueError."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tactical.outbox import HEADER_NAMES, OutboxMessage

DEEP = 100_000
"""A nesting depth beyond what json can parse on any supported Python.

Not ``sys.getrecursionlimit() + 100``: from Python 3.12 json's C scanner counts against a C
recursion limit of its own, and parses a body 1,100 levels deep without error.
"""


def deep_json(depth: int = DEEP) -> bytes:
    """A JSON object holding a list nested ``depth`` levels deep."""
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


def valid_headers() -> dict[str, str]:
    """The headers of a well-formed message, as strings."""
    return {
        "type": "billing.Invoiced",
        "version": "1",
        "event_id": str(uuid4()),
        "position": "3",
        "aggregate_type": "billing.Invoice",
        "aggregate_id": "inv-1",
        "aggregate_version": "2",
        "occurred_at": "2024-05-01T12:30:00+00:00",
    }


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
header_values = st.one_of(
    json_values,
    st.sampled_from(["", "x", "1", "-1", "nan", str(uuid4()), "2024-05-01T12:30:00+00:00"]),
    st.integers(),
    st.binary(),
)
headers_strategy = st.one_of(
    st.dictionaries(st.sampled_from(HEADER_NAMES), header_values),
    st.builds(
        lambda base, changes: {**base, **changes},
        st.builds(valid_headers),
        st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=2),
    ),
    json_values,
)
bodies = st.one_of(
    st.binary(),
    st.text(),
    st.builds(lambda value: json.dumps(value).encode(), json_values),
    st.builds(deep_json, st.integers(min_value=1, max_value=DEEP)),
)


class TestMalformedMessages:
    @given(body=bodies, headers=headers_strategy)
    def test_any_body_and_headers_give_a_message_or_a_value_error(
        self, body: bytes | str, headers: Any
    ) -> None:
        """No input makes from_wire raise anything but its documented ValueError."""
        outcome: object
        try:
            outcome = OutboxMessage.from_wire(body, headers)
        except ValueError as error:
            outcome = error
        if isinstance(outcome, ValueError):
            assert "malformed tactical message" in str(outcome)
        else:
            assert isinstance(outcome, OutboxMessage)

    def test_body_nested_beyond_the_recursion_limit_is_a_value_error(self) -> None:
        """A body nested deeper than Python can parse is refused as malformed, naming the event."""
        headers = valid_headers()
        with pytest.raises(ValueError, match="nested deeper than the recursion limit") as raised:
            OutboxMessage.from_wire(deep_json(), headers)
        assert headers["event_id"] in str(raised.value)

    @pytest.mark.parametrize("headers", [["event_id", "x"], "event_id", 7, None])
    def test_headers_that_are_not_a_mapping_are_a_value_error(self, headers: Any) -> None:
        """Headers that are a list, a string, a number or null are refused as malformed."""
        with pytest.raises(ValueError, match="headers must be a mapping"):
            OutboxMessage.from_wire(b"{}", headers)

    def test_header_that_is_not_text_is_named(self) -> None:
        """A header value that is a list, not text, is refused with the header's name."""
        headers: dict[str, object] = {**valid_headers(), "position": [1]}
        with pytest.raises(ValueError, match="header 'position' is a list, not text"):
            OutboxMessage.from_wire(b"{}", headers)

    def test_body_that_is_not_utf8_is_a_value_error(self) -> None:
        """A body of bytes that are not UTF-8 is refused as malformed."""
        with pytest.raises(ValueError, match="malformed tactical message"):
            OutboxMessage.from_wire(b'{"a": "\xff"}', valid_headers())
