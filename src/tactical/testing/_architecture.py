"""Architecture rules a user asserts in pytest: a pure domain, references by id, plain values.

Each rule takes the modules (or packages, meaning every module in them) that make up a
domain layer and raises :class:`AssertionError` listing every violation found, with where
it is, so one test run shows all of them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Iterable, Iterator
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from types import ModuleType
from typing import Any, get_args, get_type_hints

from tactical._model import AggregateRoot, Entity, ValueObject

__all__ = [
    "INFRASTRUCTURE",
    "assert_aggregates_reference_by_id",
    "assert_no_infrastructure_imports",
    "assert_value_objects_hold_no_entities",
]

INFRASTRUCTURE: tuple[str, ...] = (
    # tactical's own adapters
    "tactical.sqlalchemy",
    "tactical.outbox",
    # databases, ORMs and drivers
    "sqlalchemy",
    "alembic",
    "sqlite3",
    "psycopg",
    "psycopg2",
    "asyncpg",
    "pymysql",
    "MySQLdb",
    "pymongo",
    "motor",
    "redis",
    "django",
    "peewee",
    "tortoise",
    "sqlmodel",
    # messaging
    "pika",
    "aio_pika",
    "kombu",
    "celery",
    "nats",
    "kafka",
    "confluent_kafka",
    "boto3",
    # web frameworks and HTTP clients
    "flask",
    "fastapi",
    "starlette",
    "aiohttp",
    "tornado",
    "falcon",
    "pyramid",
    "requests",
    "httpx",
    "urllib3",
)
"""Top-level names :func:`assert_no_infrastructure_imports` refuses by default.

Extend it for your project: ``forbidden=(*INFRASTRUCTURE, "myapp.adapters")``.
"""

Modules = str | ModuleType


def assert_no_infrastructure_imports(
    *modules: Modules, forbidden: Iterable[str] = INFRASTRUCTURE
) -> None:
    """Assert the given domain modules import no infrastructure, directly or indirectly.

    Imports are read from the source (including those inside functions and under
    ``TYPE_CHECKING``); the modules are located on the import path without being imported,
    so none of them (nor their packages' ``__init__``) is executed. A module of your own project that a domain
    module imports is followed, so ``domain -> helpers -> sqlalchemy`` is caught and
    reported with its chain. A name is forbidden when it equals an entry of ``forbidden``
    or is a submodule of one.

    Args:
        modules: Module names or modules; a package stands for all its modules.
        forbidden: Module names the domain must not import (default :data:`INFRASTRUCTURE`).

    Raises:
        AssertionError: Listing each offending import as ``file:line: chain``.
        ModuleNotFoundError: A name in ``modules`` is not found on the import path.

    .. versionadded:: 0.1.0
    """
    banned = tuple(forbidden)
    names = list(_located_module_names(modules))
    roots = {name.partition(".")[0] for name in names}
    violations: list[str] = []
    seen: set[str] = set()
    pending: list[tuple[str, tuple[str, ...]]] = [(name, (name,)) for name in names]
    while pending:
        name, chain = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _source_of(name)
        if path is None:
            continue
        for line, imported in _imports(name, path):
            if _matches(imported, banned):
                trail = " -> ".join((*chain, imported))
                violations.append(f"{path}:{line}: {trail}")
            elif imported.partition(".")[0] in roots and imported not in seen:
                pending.append((imported, (*chain, imported)))
    if violations:
        raise AssertionError(
            "the domain imports infrastructure:\n  " + "\n  ".join(sorted(violations))
        )


def assert_aggregates_reference_by_id(*modules: Modules) -> None:
    """Assert no aggregate defined in ``modules`` holds another aggregate.

    Aggregates reference each other by id only: a field (or a field of a child entity or
    value object, or an element type of a collection or union) annotated with an
    :class:`~tactical.AggregateRoot` subclass is a violation.

    Args:
        modules: Module names or modules; a package stands for all its modules.

    Raises:
        AssertionError: Listing each path to an aggregate, e.g. ``Shipment.carrier: Carrier``.
        ModuleNotFoundError: A name in ``modules`` cannot be imported.

    .. versionadded:: 0.1.0
    """
    violations = [
        f"{path}: {found.__qualname__} is an aggregate; hold its id instead"
        for cls in _classes(modules, AggregateRoot)
        for path, found in _reachable(cls, AggregateRoot)
    ]
    if violations:
        raise AssertionError("aggregates hold other aggregates:\n  " + "\n  ".join(violations))


def assert_value_objects_hold_no_entities(*modules: Modules) -> None:
    """Assert no value object defined in ``modules`` holds an entity (or an aggregate).

    A value is defined by its attributes alone; an entity inside it would make equality by
    value meaningless and let the entity change under an immutable value.

    Args:
        modules: Module names or modules; a package stands for all its modules.

    Raises:
        AssertionError: Listing each path to an entity, e.g. ``Quote.parcel: Parcel``.
        ModuleNotFoundError: A name in ``modules`` cannot be imported.

    .. versionadded:: 0.1.0
    """
    violations = [
        f"{path}: {found.__qualname__} is an entity"
        for cls in _classes(modules, ValueObject)
        for path, found in _reachable(cls, Entity)
    ]
    if violations:
        raise AssertionError("value objects hold entities:\n  " + "\n  ".join(violations))


def _module_names(modules: Iterable[Modules]) -> Iterator[str]:
    for module in modules:
        loaded = importlib.import_module(module) if isinstance(module, str) else module
        yield loaded.__name__
        search = getattr(loaded, "__path__", None)
        if search is not None:
            for info in pkgutil.walk_packages(search, prefix=f"{loaded.__name__}."):
                yield info.name


def _source_of(name: str) -> Path | None:
    spec = _spec_of(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _spec_of(name: str) -> ModuleSpec | None:
    """Where module ``name`` is, found without importing it or its parent packages."""
    top, _, rest = name.partition(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name is located, not imported
    except (ImportError, ValueError):
        return None
    for part in rest.split(".") if rest else ():
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = PathFinder.find_spec(f"{spec.name}.{part}", list(spec.submodule_search_locations))
    return spec


def _located_module_names(modules: Iterable[Modules]) -> Iterator[str]:
    """The names of ``modules`` and of every module of the packages among them, unimported."""
    for module in modules:
        if isinstance(module, str):
            spec = _spec_of(module)
            if spec is None:
                raise ModuleNotFoundError(f"no module named {module!r}", name=module)
            name = spec.name
            search = spec.submodule_search_locations
        else:
            name, search = module.__name__, getattr(module, "__path__", None)
        yield name
        if search is not None:
            yield from _submodule_names(name, list(search))


def _submodule_names(package: str, search: list[str]) -> Iterator[str]:
    for info in pkgutil.iter_modules(search, prefix=f"{package}."):
        yield info.name
        if info.ispkg:
            finder_path = getattr(info.module_finder, "path", None)
            if finder_path is not None:
                short = info.name.rpartition(".")[2]
                yield from _submodule_names(info.name, [str(Path(finder_path) / short)])


def _imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, base
            # `from pkg import sub` may import the submodule pkg.sub.
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _matches(name: str, banned: tuple[str, ...]) -> bool:
    return any(name == entry or name.startswith(f"{entry}.") for entry in banned)


def _classes(modules: Iterable[Modules], base: type) -> Iterator[type]:
    for name in _module_names(modules):
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, base) and cls.__module__ == name:
                yield cls


def _reachable(root: type, target: type) -> Iterator[tuple[str, type]]:
    """(path, class) for every class derived from ``target`` reachable through fields."""
    visited: set[type] = {root}
    pending: list[tuple[str, type]] = [(root.__qualname__, root)]
    while pending:
        prefix, cls = pending.pop()
        for field_name, annotation in _field_hints(cls).items():
            for found in _classes_in(annotation):
                path = f"{prefix}.{field_name}"
                if issubclass(found, target):
                    yield path, found
                elif _is_model(found) and found not in visited:
                    visited.add(found)
                    pending.append((path, found))


def _field_hints(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    fields: dict[str, Any] = getattr(cls, "__dataclass_fields__", {})
    return {name: hint for name, hint in hints.items() if name in fields}


def _classes_in(annotation: Any) -> Iterator[type]:
    if isinstance(annotation, type) and not get_args(annotation):
        yield annotation
        return
    origin = getattr(annotation, "__origin__", None)
    if isinstance(origin, type):
        yield origin
    for argument in get_args(annotation):
        yield from _classes_in(argument)


def _is_model(cls: type) -> bool:
    return issubclass(cls, Entity | ValueObject)
