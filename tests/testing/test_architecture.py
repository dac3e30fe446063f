"""Architecture rules: they pass a clean domain and name every violation in a bad one."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tactical.testing import (
    INFRASTRUCTURE,
    assert_aggregates_reference_by_id,
    assert_no_infrastructure_imports,
    assert_value_objects_hold_no_entities,
)

CLEAN_DOMAIN = """
from __future__ import annotations
from dataclasses import field
from decimal import Decimal
from uuid import UUID
from tactical import AggregateRoot, Entity, ValueObject
from . import rules

class Money(ValueObject):
    amount: Decimal

class Line(Entity[int]):
    price: Money

class Customer(AggregateRoot[UUID]):
    name: str

class Order(AggregateRoot[UUID]):
    customer_id: UUID
    lines: list[Line] = field(default_factory=list[Line])
"""

BAD_DOMAIN = """
from __future__ import annotations
from dataclasses import field
from uuid import UUID
from tactical import AggregateRoot, Entity, ValueObject
from .helpers import nothing

class Customer(AggregateRoot[UUID]):
    name: str

class Line(Entity[int]):
    buyer: Customer | None = None

class Snapshot(ValueObject):
    line: Line

class Quote(ValueObject):
    snapshots: tuple[Snapshot, ...]

class Order(AggregateRoot[UUID]):
    customer: Customer
    lines: list[Line] = field(default_factory=list[Line])

class Basket(AggregateRoot[UUID]):
    quote: Quote | None = None

def save() -> None:
    import sqlalchemy
"""


def write_package(root: Path, name: str, modules: dict[str, str]) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for throwaway packages, unloaded after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]
    importlib.invalidate_caches()


class TestNoInfrastructureImports:
    def test_clean_domain_passes(self, packages: Path) -> None:
        """A domain importing only tactical's core and itself passes."""
        write_package(packages, "clean", {"model": CLEAN_DOMAIN, "rules": "import decimal\n"})
        assert_no_infrastructure_imports("clean")

    def test_direct_and_function_level_imports_are_found(self, packages: Path) -> None:
        """An import inside a function is found, with file and line."""
        write_package(packages, "bad1", {"model": BAD_DOMAIN, "helpers": "nothing = 1\n"})
        with pytest.raises(AssertionError) as failure:
            assert_no_infrastructure_imports("bad1.model")
        line = textwrap.dedent(BAD_DOMAIN).splitlines().index("    import sqlalchemy") + 1
        assert f"model.py:{line}: bad1.model -> sqlalchemy" in str(failure.value)

    def test_indirect_imports_are_followed_through_the_project(self, packages: Path) -> None:
        """domain -> helpers -> psycopg is reported with its chain."""
        write_package(
            packages,
            "bad2",
            {"model": "from .helpers import connect\n", "helpers": "from psycopg import connect\n"},
        )
        with pytest.raises(AssertionError, match=r"bad2\.model -> bad2\.helpers -> psycopg"):
            assert_no_infrastructure_imports("bad2.model")

    def test_tactical_adapters_count_as_infrastructure(self, packages: Path) -> None:
        """Importing tactical.sqlalchemy from the domain is a violation; tactical is not."""
        write_package(packages, "bad3", {"model": "from tactical.sqlalchemy import metadata\n"})
        with pytest.raises(AssertionError, match=r"bad3\.model -> tactical\.sqlalchemy"):
            assert_no_infrastructure_imports("bad3")

    def test_forbidden_list_is_extensible(self, packages: Path) -> None:
        """A project adds its own adapter packages to the forbidden list."""
        write_package(packages, "bad4", {"model": "import json\n"})
        assert_no_infrastructure_imports("bad4")
        with pytest.raises(AssertionError, match="json"):
            assert_no_infrastructure_imports("bad4", forbidden=(*INFRASTRUCTURE, "json"))

    def test_modules_can_be_passed_as_objects(self, packages: Path) -> None:
        """A module object works like its name."""
        write_package(packages, "bad5", {"model": "import redis.client\n"})
        module = importlib.import_module("bad5")
        with pytest.raises(AssertionError, match=r"redis\.client"):
            assert_no_infrastructure_imports(module)

    def test_checked_modules_and_their_packages_are_not_executed(self, packages: Path) -> None:
        """The rule reads sources only: no package __init__ or module of the domain runs."""
        write_package(
            packages,
            "bad6",
            {
                "model": "raise RuntimeError('bad6.model was executed')\nimport pika\n",
                "sub": "",
            },
        )
        (packages / "bad6" / "__init__.py").write_text("raise RuntimeError('bad6 was executed')\n")
        nested = packages / "bad6" / "inner"
        nested.mkdir()
        (nested / "__init__.py").write_text("raise RuntimeError('bad6.inner was executed')\n")
        (nested / "rules.py").write_text("import redis\n")
        with pytest.raises(AssertionError) as failure:
            assert_no_infrastructure_imports("bad6")
        assert "bad6.model -> pika" in str(failure.value)
        assert "bad6.inner.rules -> redis" in str(failure.value)
        with pytest.raises(AssertionError, match=r"bad6\.inner\.rules -> redis"):
            assert_no_infrastructure_imports("bad6.inner.rules")
        assert not {"bad6", "bad6.model", "bad6.inner", "bad6.inner.rules"} & set(sys.modules)

    def test_a_missing_module_is_named(self, packages: Path) -> None:
        """A name not found on the import path raises ModuleNotFoundError naming it."""
        with pytest.raises(ModuleNotFoundError, match="no_such_domain"):
            assert_no_infrastructure_imports("no_such_domain.model")


class TestReferenceById:
    def test_clean_domain_passes(self, packages: Path) -> None:
        """Aggregates holding ids, child entities and values pass."""
        write_package(packages, "clean_ids", {"model": CLEAN_DOMAIN, "rules": ""})
        assert_aggregates_reference_by_id("clean_ids")

    def test_every_path_to_another_aggregate_is_reported(self, packages: Path) -> None:
        """Direct fields, child entities' fields and unions are all followed."""
        write_package(packages, "bad_ids", {"model": BAD_DOMAIN, "helpers": "nothing = 1\n"})
        with pytest.raises(AssertionError) as failure:
            assert_aggregates_reference_by_id("bad_ids")
        message = str(failure.value)
        assert "Order.customer: Customer is an aggregate" in message
        assert "Order.lines.buyer: Customer is an aggregate" in message
        assert "Basket.quote.snapshots.line.buyer: Customer is an aggregate" in message


class TestValueObjectsHoldNoEntities:
    def test_clean_domain_passes(self, packages: Path) -> None:
        """Values made of values pass."""
        write_package(packages, "clean_vos", {"model": CLEAN_DOMAIN, "rules": ""})
        assert_value_objects_hold_no_entities("clean_vos")

    def test_entities_inside_values_are_reported(self, packages: Path) -> None:
        """An entity directly or through a nested value object is reported with its path."""
        write_package(packages, "bad_vos", {"model": BAD_DOMAIN, "helpers": "nothing = 1\n"})
        with pytest.raises(AssertionError) as failure:
            assert_value_objects_hold_no_entities("bad_vos")
        message = str(failure.value)
        assert "Snapshot.line: Line is an entity" in message
        assert "Quote.snapshots.line: Line is an entity" in message
