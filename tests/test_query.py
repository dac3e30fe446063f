"""Queries: what a finder's conditions mean, and the mistakes they refuse when made."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, NewType
from uuid import UUID, uuid4

import pytest

from tactical import AggregateRoot, Field, InMemoryUnitOfWork, Predicate, Query, ValueObject
from tactical._model import AggregateRoot as _AggregateRoot
from tactical._tracking import Change
from tactical._uow import TransactionalUnitOfWork
from tactical.testing import Counter, Tag

SkuId = NewType("SkuId", str)


class Size(enum.Enum):
    SMALL = "S"
    LARGE = "L"


class Window(ValueObject):
    opens: date
    closes: date | None = None


class Shelf(AggregateRoot[SkuId]):
    size: Size
    weight: float
    window: Window
    labels: list[str]
    anything: Any = None
    code: Annotated[str, "a label printer's code"] = ""
    either: int | str = 0


class TestMeaning:
    """Query.matches is the definition every store answers by."""

    state: ClassVar[dict[str, Any]] = {
        "name": "Zed",
        "count": 3,
        "ratio": 1.5,
        "flag": True,
        "tag": None,
        "nested": {"a": 1},
    }

    def holds(self, predicate: Predicate) -> bool:
        return predicate.matches(self.state)

    def test_equality_is_json_equality(self) -> None:
        """Numbers by value, booleans only to booleans, a missing or null field only to None."""
        assert self.holds(Field("count") == 3.0)
        assert not self.holds(Field("flag") == 1)
        assert not self.holds(Field("count") == True)  # noqa: E712
        assert self.holds(Field("tag") == None)  # noqa: E711
        assert self.holds(Field("missing.deeper") == None)  # noqa: E711
        assert not self.holds(Field("name") == None)  # noqa: E711
        assert not self.holds(Field("count") == "3")

    def test_a_null_field_is_unequal_and_unordered(self) -> None:
        """!= holds for a null field; <, >, and their negations' opposites do not."""
        assert self.holds(Field("tag") != "x")
        assert not self.holds(Field("tag") < "x")
        assert not self.holds(Field("tag") >= "x")
        assert self.holds(~(Field("tag") < "x"))

    def test_order_is_by_number_or_code_point(self) -> None:
        """Numbers compare by value, strings by code point; other pairs are never ordered."""
        assert self.holds(Field("ratio") > 1)
        assert self.holds(Field("count") <= 3)
        assert self.holds(Field("name") < "a")  # "Z" is before "a"
        assert not self.holds(Field("name") < 5)
        assert not self.holds(Field("flag") > 0)
        assert not self.holds(Field("nested") > 0)

    def test_combinations(self) -> None:
        """&, |, ~ and one_of combine as boolean logic; no condition at all finds everything."""
        assert self.holds((Field("count") == 3) & (Field("name") == "Zed"))
        assert not self.holds((Field("count") == 4) & (Field("name") == "Zed"))
        assert self.holds((Field("count") == 4) | (Field("name") == "Zed"))
        assert self.holds(Field("count").one_of([1, 3]))
        assert not self.holds(Field("count").one_of([]))
        assert Query(Counter).matches({})

    def test_values_are_compared_as_stored(self) -> None:
        """UUIDs as their text, enums as their value, dates in ISO form."""
        some = uuid4()
        assert (Field("id") == some).matches({"id": str(some)})
        assert (Field("size") == Size.LARGE).matches({"size": "L"})
        assert (Field("day") < date(2026, 3, 1)).matches({"day": "2026-02-28"})

    def test_reprs_say_the_condition(self) -> None:
        """A query's repr shows its type, conditions and order, for error messages."""
        query = Query(
            Counter,
            ~(Field("count") < 2) | Field("name").one_of(["a"]),
            ~((Field("count") == 1) & (Field("tag.text") == "x")),
            order_by=("name",),
        )
        assert repr(query) == (
            "Query(Counter, ((~(Field('count') < 2) | Field('name').one_of(['a'])) & "
            "~(Field('count') == 1 & Field('tag.text') == 'x')), order_by=['name'])"
        )
        assert repr(Field("tag.text")) == "Field('tag.text')"
        assert repr(Query(Counter)) == "Query(Counter, (everything))"

    def test_sort_keys_put_nulls_first_then_order_by_id(self) -> None:
        """order_by values sort ascending, nulls first; the id's text breaks ties."""
        query = Query(Counter, order_by="tag.text")
        states = [
            ({"tag": {"text": "b"}}, "1"),
            ({"tag": None}, "2"),
            ({"tag": {"text": "a"}}, "3"),
        ]
        ordered = sorted(states, key=lambda s: query.sort_key(s[0], s[1]))
        assert [key for _, key in ordered] == ["2", "3", "1"]


class TestRefusals:
    """Mistakes are refused when the query is made, naming the field and the value."""

    def test_a_value_of_another_type_than_the_field(self) -> None:
        """A str for a UUID id, a bool for an int, a float for an int, a plain str for an enum."""
        with pytest.raises(TypeError, match=r"'id' is a UUID, got str 'x'"):
            Query(Counter, Field("id") == "x")
        with pytest.raises(TypeError, match=r"'count' is a int, got bool True"):
            Query(Counter, Field("count") == True)  # noqa: E712
        with pytest.raises(TypeError, match=r"'count' is a int, got float 1.5"):
            Query(Counter, Field("count").one_of([1, 1.5]))
        with pytest.raises(TypeError, match=r"'size' is a Size, got str 'S'"):
            Query(Shelf, Field("size") == "S")

    def test_values_that_fit_are_accepted(self) -> None:
        """NewType ids, ints for floats, optional nested fields and untyped fields pass."""
        Query(Shelf, Field("id") == SkuId("A-1"), Field("weight") > 2)
        Query(Shelf, Field("window.closes") == None, Field("anything") == 3)  # noqa: E711
        Query(Shelf, Field("size").one_of([Size.SMALL]), order_by=["window.opens"])
        Query(Shelf, Field("either") == 1, Field("either") == "one", Field("code") == "c")
        with pytest.raises(TypeError, match=r"'code' is a str, got int 1"):
            Query(Shelf, Field("code") == 1)

    def test_paths_that_name_no_field_or_step_into_a_collection(self) -> None:
        """A missing field, a step into a list or a scalar is a ValueError naming the path."""
        with pytest.raises(ValueError, match=r"'colour' names no field of Shelf"):
            Query(Shelf, Field("colour") == 1)
        with pytest.raises(ValueError, match=r"'window.shut' names no field of Window"):
            Query(Shelf, Field("window.shut") == None)  # noqa: E711
        with pytest.raises(ValueError, match=r"'labels' is not a value object or entity"):
            Query(Shelf, Field("labels.first") == "x")
        with pytest.raises(ValueError, match=r"'weight' is not a value object"):
            Query(Shelf, order_by="weight.grams")

    @pytest.mark.parametrize("path", ["", "a..b", "1st", "a.b-c"])
    def test_a_malformed_path(self, path: str) -> None:
        """A path is identifiers joined by dots."""
        with pytest.raises(ValueError, match=r"field names joined by dots"):
            Field(path)

    def test_values_no_store_compares_alike(self) -> None:
        """Decimals, datetimes and value objects are refused with the reason."""
        with pytest.raises(TypeError, match=r"Decimals are stored as text"):
            Field("premium") == Decimal("1.00")  # noqa: B015
        with pytest.raises(TypeError, match=r"datetimes are stored as text"):
            Field("at") < datetime.now(UTC)  # noqa: B015
        with pytest.raises(TypeError, match=r"cannot compare a Tag"):
            Field("tag") == Tag("x")  # noqa: B015
        with pytest.raises(TypeError, match=r"only numbers, strings and dates have an order"):
            Field("flag") < True  # noqa: B015
        with pytest.raises(TypeError, match=r"only numbers, strings and dates have an order"):
            Field("tag") > None  # noqa: B015

    def test_conditions_combine_only_with_conditions(self) -> None:
        """& with something else, or a non-condition in a Query, is a TypeError."""
        anything: Any = "name = 'x'"
        with pytest.raises(TypeError, match=r"combines with another condition"):
            (Field("name") == "x") & anything
        with pytest.raises(TypeError, match=r"combines with another condition"):
            Query(Counter, anything)

    def test_a_query_needs_an_aggregate_type(self) -> None:
        """Query(Tag) is refused: a value object is not found by a repository."""
        not_aggregate: Any = Tag
        with pytest.raises(TypeError, match=r"Query takes an AggregateRoot subclass"):
            Query(not_aggregate)

    def test_fields_are_not_hashable(self) -> None:
        """== builds a condition, so a Field cannot be a dict key or set member."""
        with pytest.raises(TypeError, match="unhashable"):
            hash(Field("name"))


class _NoFinders(TransactionalUnitOfWork):
    """A storage of a user's own that predates finders: only the required hooks."""

    def _begin(self) -> None:
        pass

    def _load(self, aggregate_type: type[Any], aggregate_id: object) -> Any:
        return None

    def _store(self, changes: Sequence[Change]) -> None:
        pass

    def _rollback(self) -> None:
        pass


class TestStoragesWithoutFinders:
    def test_find_says_the_storage_has_no_finders(self) -> None:
        """A TransactionalUnitOfWork without the _find hook raises NotImplementedError."""
        with _NoFinders() as uow, pytest.raises(NotImplementedError, match="_NoFinders has no"):
            uow.repository(Counter).find(Query(Counter))

    def test_find_with_a_codec_of_its_own(self) -> None:
        """Tracked aggregates are judged on the unit of work's codec's JSON state."""
        uow = InMemoryUnitOfWork()
        with uow:
            counter = Counter(uuid4(), "mine")
            uow.repository(Counter).add(counter)
            assert uow.repository(Counter).find(Query(Counter, Field("name") == "mine")) == [
                counter
            ]
            uow.rollback()
        assert isinstance(counter, _AggregateRoot)
        assert UUID(str(counter.id)) == counter.id
