"""JSON serialization of the domain model, driven by the classes' type annotations."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar, cast

from tactical._codec_plans import FieldPlans
from tactical._codec_values import Malformed, Unstorable, show, unstorable_text
from tactical._model import SUPERSEDED, AggregateRoot, DomainEvent

__all__ = ["DeserializationError", "EventRecord", "JsonCodec", "UnknownTypeError", "Upcaster"]

T = TypeVar("T")
A = TypeVar("A", bound=AggregateRoot[Any])

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns an event payload of one schema version into the next version's."""


class DeserializationError(ValueError):
    """Stored data could not be turned back into domain objects.

    The message names what was being read (the ``context`` the caller gave, such as the
    table, aggregate type and id) and what was wrong with it.

    .. versionadded:: 0.1.0
    """


class UnknownTypeError(DeserializationError, LookupError):
    """A stored type name matches no registered or discoverable class.

    .. versionadded:: 0.1.0
    """


class EventRecord(NamedTuple):
    """An event as stored: its type name, schema version and JSON payload.

    Made by :meth:`JsonCodec.event_to_record` (``type_name`` is the name the event's class
    is stored under, ``schema_version`` the version of ``payload``, the event's fields as
    JSON); read back with :meth:`JsonCodec.event_from_record`.

    .. versionadded:: 0.1.0
    """

    type_name: str
    schema_version: int
    payload: dict[str, Any]


class JsonCodec:
    """Converts value objects, entities, aggregates and events to JSON and back.

    Reconstruction follows the classes' type annotations: ``Decimal`` (as an exact string),
    ``UUID``, ``date``, ``datetime`` (aware ones keep their offset), ``Enum`` (by value),
    ``bool``/``int``/``float``/``str``, ``Literal``, ``NewType``, ``X | None``, ``list``,
    ``tuple`` (variadic or fixed), ``set``/``frozenset``, ``dict`` (keys of any of the scalar
    types above), ``Any`` (a JSON value stored as it is: ``None``, ``bool``, ``int``,
    ``float``, ``str``, ``list``, ``dict`` with ``str`` keys), and nested dataclasses: value
    objects, child entities, other events.
    Type parameters are resolved from generic bases, so ``class Policy(AggregateRoot[UUID])``
    stores its ``id`` as a UUID, and from parameterised field types (``price: Box[Decimal]``).
    A value that does not fit its field's annotation, and so could not be read back, is
    refused on write with an error naming the field path, and so is a value no store or
    broker can carry (see :meth:`encode`); reading refuses the same. Never pickles.

    Events and aggregates are stored under a type name: by default the class's
    ``module.QualifiedName``; :meth:`register` sets a stable name of your own (do this for
    anything stored long-term, so moving a class does not orphan its data), a schema version,
    and aliases for names used before. Unregistered event and aggregate classes are found by
    their default name. :meth:`add_upcaster` migrates old event payloads on read.

    Aggregates, entities and value objects may gain fields: a stored state without a field
    that has a default is read with the default, so adding ``notes: str = ""`` to an
    aggregate needs no migration of its stored documents. An event's payload must have
    every field (events are immutable records; change them with a version and an upcaster).
    Fields absent from the class, and fields without a default, are errors.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._name_of: dict[type, str] = {}
        # Default names already checked, so that every commit need not build and check them.
        self._default_names: dict[type, str] = {}
        self._version_of: dict[type, int] = {}
        self._class_of: dict[str, type] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._plans = FieldPlans()

    # -- type names ------------------------------------------------------------------------

    def register(
        self,
        cls: type,
        *,
        name: str | None = None,
        version: int = 1,
        aliases: tuple[str, ...] = (),
    ) -> None:
        """Store ``cls`` under ``name`` (default ``module.QualifiedName``) at schema ``version``.

        Args:
            cls: An event, aggregate or other dataclass type.
            name: The stable type name written to storage.
            version: The current schema version of its payload (events), starting at 1.
            aliases: Earlier names whose stored data should be read as ``cls``.

        Raises:
            ValueError: The name or an alias is already taken by another class; the version
                is below 1 or above 2**31 - 1 (the outbox's INTEGER column); or the name is
                one no store or broker can carry: over 255 bytes of UTF-8 (a RabbitMQ
                routing key, tactical's String(255) columns) or holding a NUL or a lone
                surrogate.
            TypeError: ``name`` is omitted for a class defined in ``__main__``, whose default
                name no other program could resolve.
        """
        if not 1 <= version <= _MAX_VERSION:
            raise ValueError(
                f"schema version of {cls.__qualname__} must be between 1 and {_MAX_VERSION}, "
                f"got {version}"
            )
        canonical = name or _stable_default_name(cls)
        _check_type_name(canonical, cls)
        with self._lock:
            for taken in (canonical, *aliases):
                owner = self._class_of.get(taken)
                if owner is not None and owner is not cls:
                    raise ValueError(
                        f"type name {taken!r} is already registered for {owner.__module__}."
                        f"{owner.__qualname__}; cannot register {cls.__module__}.{cls.__qualname__}"
                    )
            self._name_of[cls] = canonical
            self._version_of[cls] = version
            for taken in (canonical, *aliases):
                self._class_of[taken] = cls

    def type_name(self, cls: type) -> str:
        """The name ``cls`` is stored under.

        Raises:
            ValueError: ``cls`` is not registered and its default name is one no store or
                broker can carry (as :meth:`register` refuses).
            TypeError: ``cls`` is defined in ``__main__`` and has no registered name: a row
                stored as ``__main__.X`` could never be read by another program.

        .. versionchanged:: 0.2.0
           Refuses unregistered classes of ``__main__``, and names no store or broker carries.
        """
        name = self._name_of.get(cls)
        if name is None:
            name = self._default_names.get(cls)
        if name is None:
            name = _stable_default_name(cls)
            _check_type_name(name, cls)
            if len(self._default_names) >= 4096:  # classes made at run time: keep it bounded
                self._default_names.clear()
            self._default_names[cls] = name
        return name

    def schema_version(self, cls: type) -> int:
        """The current schema version of ``cls`` (1 unless registered otherwise)."""
        return self._version_of.get(cls, 1)

    def resolve(self, type_name: str) -> type:
        """The class stored under ``type_name``.

        Raises:
            UnknownTypeError: No registered class has this name or alias, and no event or
                aggregate class has it as its default name.
        """
        found = self._class_of.get(type_name)
        if found is not None:
            return found
        for candidate in _subclasses(DomainEvent, AggregateRoot):
            if candidate not in self._name_of and _default_name(candidate) == type_name:
                with self._lock:
                    self._class_of.setdefault(type_name, candidate)
                return candidate
        raise UnknownTypeError(
            f"unknown type name {type_name!r}: no class is registered under it and no "
            "imported event or aggregate class has it as its default name "
            "(import the module that defines it, or register it with an alias)"
        )

    def add_upcaster(self, type_name: str, from_version: int, upcaster: Upcaster) -> None:
        """Register how to turn a ``type_name`` payload of ``from_version`` into the next version.

        Raises:
            ValueError: An upcaster for that name and version already exists.
        """
        key = (type_name, from_version)
        with self._lock:
            if key in self._upcasters:
                raise ValueError(f"an upcaster for {type_name!r} version {from_version} exists")
            self._upcasters[key] = upcaster

    # -- events ------------------------------------------------------------------------------

    def event_to_record(self, event: DomainEvent) -> EventRecord:
        """The stored form of ``event``: type name, schema version, payload (all fields).

        Raises:
            TypeError: A field holds a value that does not fit its annotation, or an
                annotation is not supported; the message names the field path.
            ValueError: A value no store or broker can carry (see :meth:`encode`).
        """
        cls = type(event)
        return EventRecord(self.type_name(cls), self.schema_version(cls), self.encode(event))

    def event_from_record(
        self, type_name: str, schema_version: int, payload: Any, *, context: str = ""
    ) -> DomainEvent:
        """Rebuild an event from its stored form, upcasting old schema versions first.

        Raises:
            UnknownTypeError: ``type_name`` is not known; the message includes ``context``.
            DeserializationError: The payload is malformed, newer than the code, an
                upcaster step is missing, failed or returned something other than a JSON
                object; the message includes ``context``.
        """
        where = f" ({context})" if context else ""
        if type(type_name) is not str:
            raise DeserializationError(
                f"event type name must be a string, got {show(type_name)}{where}"
            )
        try:
            cls = self.resolve(type_name)
        except UnknownTypeError as unknown:
            if not context:
                raise
            raise UnknownTypeError(f"{unknown}{where}") from None
        canonical = self.type_name(cls)
        current = self.schema_version(cls)
        if type(schema_version) is not int:
            raise DeserializationError(
                f"schema version of {canonical} must be an integer, got "
                f"{show(schema_version)}{where}"
            )
        if schema_version > current:
            raise DeserializationError(
                f"{canonical} payload has schema version {schema_version}, newer than the "
                f"code's version {current}{where}"
            )
        if not isinstance(payload, dict):
            raise DeserializationError(f"{canonical} payload is not a JSON object{where}")
        data = cast("dict[str, Any]", payload)
        for version in range(schema_version, current):
            upcaster = self._upcasters.get((canonical, version))
            if upcaster is None:
                raise DeserializationError(
                    f"no upcaster from version {version} to {version + 1} of {canonical}{where}"
                )
            step = f"upcaster from version {version} to {version + 1} of {canonical}"
            try:
                upcast = cast("object", upcaster(dict(data)))  # user code: checked below
            except Exception as error:
                # A user's function meeting a payload it did not expect (a missing key, say):
                # the stored row is what is wrong, so it is reported as such, with the cause.
                raise DeserializationError(
                    f"{step} failed: {type(error).__name__}: {error}{where}"
                ) from error
            if not isinstance(upcast, dict):
                raise DeserializationError(
                    f"{step} returned {show(upcast)}, not a JSON object{where}"
                )
            data = cast("dict[str, Any]", upcast)
        return cast("DomainEvent", self.decode(cls, data, context=context))

    # -- aggregates --------------------------------------------------------------------------

    def aggregate_to_state(self, aggregate: AggregateRoot[Any]) -> dict[str, Any]:
        """The JSON state of ``aggregate``: every field except ``version`` (stored apart).

        Raises:
            TypeError: A field holds a value that does not fit its annotation, or an
                annotation is not supported; the message names the field path.
            ValueError: A value no store or broker can carry (see :meth:`encode`).
        """
        state = self.encode(aggregate)
        del state["version"]
        return state

    def aggregate_from_state(
        self, cls: type[A], state: Any, *, version: int, context: str = ""
    ) -> A:
        """Rebuild an aggregate of ``cls`` from its JSON state, at ``version``.

        Raises:
            DeserializationError: The state is malformed; the message includes ``context``.
            TypeError: ``cls`` is not a dataclass, or one of its field annotations is not
                supported; the message names the field.
        """
        if not isinstance(state, dict):
            raise DeserializationError(
                f"{cls.__qualname__} state is not a JSON object"
                + (f" ({context})" if context else "")
            )
        return self.decode(
            cls, {**cast("dict[str, Any]", state), "version": version}, context=context
        )

    # -- any dataclass -----------------------------------------------------------------------

    def encode(self, obj: object) -> dict[str, Any]:
        """The JSON object of a dataclass instance (value object, entity, event...).

        Raises:
            TypeError: A field holds a value that does not fit its annotation (an ``int``
                field holding ``1.5``, a ``date`` field holding a ``datetime``): it could not
                be read back, so it is not written. The message names the field path. Also
                when ``obj`` is not a dataclass instance, or one of its annotations is not
                supported.
            ValueError: A value no store or broker can carry: a non-finite ``float`` (or
                an integer too large for one), an integer of over 4300 digits, a NaN
                ``Decimal``, a string holding a NUL or a lone surrogate, an ``Any`` value
                nested more than 100 arrays or objects deep, or a recursive value type
                nested more than 100 levels deep. The message names the field path.

        .. versionchanged:: 0.2.0
           Strings with NUL or lone surrogates, NaN Decimals and deeply nested values
           are refused.
        """
        cls = type(obj)
        try:
            encoder = self._plans.encoders.get(cls) or self._plans.encoder(cls)
            return cast("dict[str, Any]", encoder(obj))
        except (Unstorable, RecursionError) as error:
            raise _refusal(obj, error) from None

    def _check_storable(self, obj: object) -> None:
        """Raise what :meth:`encode` raises for ``obj``, without building its JSON."""
        cls = type(obj)
        try:
            (self._plans.checkers.get(cls) or self._plans.checker(cls))(obj)
        except (Unstorable, RecursionError) as error:
            raise _refusal(obj, error) from None

    def decode(self, cls: type[T], data: Any, *, context: str = "") -> T:
        """Rebuild an instance of ``cls`` from :meth:`encode`'s output.

        Raises:
            DeserializationError: ``data`` does not fit ``cls``, holds what :meth:`encode`
                refuses (a non-finite number, a NaN ``Decimal``, a string with a NUL or a
                lone surrogate, an ``Any`` value nested too deeply), or constructing it
                failed validation; the message names the field path and includes
                ``context``.
            TypeError: ``cls`` is not a dataclass, or one of its field annotations is not
                supported; the message names the field.
        """
        where = f" ({context})" if context else ""
        try:
            decoder = self._plans.decoders.get(cls) or self._plans.decoder(cls)
            return cast("T", decoder(data))
        except Malformed as error:
            raise DeserializationError(
                f"cannot read {cls.__qualname__}{where}: {error.describe()}"
            ) from None
        except RecursionError:
            raise DeserializationError(
                f"cannot read {cls.__qualname__}{where}: nested too deeply for Python's "
                "recursion limit"
            ) from None

    def dumps(self, obj: object) -> str:
        """:meth:`encode` as JSON text.

        Raises:
            TypeError: As :meth:`encode`: a value does not fit its annotation, ``obj`` is
                not a dataclass instance, or an annotation is not supported.
            ValueError: A value no store or broker can carry (see :meth:`encode`).
        """
        return json.dumps(self.encode(obj), separators=(",", ":"), ensure_ascii=False)

    def loads(self, cls: type[T], text: str | bytes, *, context: str = "") -> T:
        """:meth:`decode` from JSON text.

        Raises:
            DeserializationError: ``text`` is not valid JSON, or as :meth:`decode`.
            TypeError: ``cls`` is not a dataclass, or one of its field annotations is not
                supported.
        """
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:  # RecursionError: nested too deeply
            raise DeserializationError(f"invalid JSON for {cls.__qualname__}: {error}") from None
        return self.decode(cls, data, context=context)

    # -- plans -------------------------------------------------------------------------------


def _refusal(obj: object, error: Unstorable | RecursionError) -> Exception:
    """The error :meth:`JsonCodec.encode` raises for what its encoders raised."""
    if isinstance(error, Unstorable):
        return error.kind(f"cannot store {type(obj).__qualname__}: {error.describe()}")
    # A recursive value type (a tree) nested deeper than Python's stack allows.
    return ValueError(
        f"cannot store {type(obj).__qualname__}: its values are nested too deeply "
        "for Python's recursion limit"
    )


# -- default type names   -------------------------------------------------------------------------


def _default_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_MAX_VERSION = 2**31 - 1
_MAX_NAME_BYTES = 255


def _check_type_name(name: str, cls: type) -> None:
    """Refuse a type name that no broker or column can carry (see :meth:`JsonCodec.register`)."""
    if len(name) <= _MAX_NAME_BYTES and name.isascii() and "\x00" not in name:
        return  # the common case, decided without encoding
    reason = unstorable_text(name)
    if reason is None and len(name.encode()) > _MAX_NAME_BYTES:
        reason = (
            f"{show(name)} is {len(name.encode())} bytes of UTF-8, over the "
            f"{_MAX_NAME_BYTES} that fit a RabbitMQ routing key and tactical's String(255) columns"
        )
    if reason is not None:
        raise ValueError(
            f"cannot store {cls.__module__}.{cls.__qualname__} under the type name {reason}: "
            "register a shorter name with JsonCodec.register(cls, name=...)"
        )


def _stable_default_name(cls: type) -> str:
    """``module.QualifiedName``, refused for a class of ``__main__`` (no other program has it)."""
    if cls.__module__ == "__main__":
        raise TypeError(
            f"{cls.__qualname__} is defined in __main__, so it would be stored as "
            f"'__main__.{cls.__qualname__}', a name no other program can read back: move it "
            "to a module that you import, or register a stable name with the codec, e.g. "
            f"codec.register({cls.__qualname__}, name='billing.{cls.__qualname__}')"
        )
    return _default_name(cls)


def _subclasses(*roots: type) -> Iterator[type]:
    seen: set[type] = set()
    stack = list(roots)
    while stack:
        cls = stack.pop()
        subclasses: list[type] = cls.__subclasses__()
        for sub in subclasses:
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                if SUPERSEDED not in vars(sub):
                    yield sub
