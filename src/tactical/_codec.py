"""JSON serialization of the domain model, driven by the classes' type annotations."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import threading
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TypeVar, cast
from uuid import UUID

from tactical._model import SUPERSEDED, AggregateRoot, DomainEvent

__all__ = ["DeserializationError", "EventRecord", "JsonCodec", "UnknownTypeError", "Upcaster"]

T = TypeVar("T")
A = TypeVar("A", bound=AggregateRoot[Any])

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns an event payload of one schema version into the next version's."""

_Encode = Callable[[Any], Any]
_Decode = Callable[[Any], Any]


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
    """An event as stored: its type name, schema version and JSON payload."""

    type_name: str
    schema_version: int
    payload: dict[str, Any]


class _Malformed(Exception):
    """Raised inside decoders; turned into DeserializationError with the field path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def describe(self) -> str:
        where = ""
        for step in self.path:
            where += step if step.startswith("[") or not where else f".{step}"
        return f"{where}: {self.message}" if where else self.message


class _Unstorable(_Malformed):
    """Raised inside encoders: a value does not fit its annotation and could not be read back.

    ``kind`` is the exception :meth:`JsonCodec.encode` raises (TypeError or ValueError).
    """

    def __init__(self, message: str, kind: type[Exception] = TypeError) -> None:
        super().__init__(message)
        self.kind = kind


def _refuse(expected: str, value: Any) -> Any:
    raise _Unstorable(f"expected {expected}, got {type(value).__qualname__} {_show(value)}")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    init: bool
    encode: _Encode
    decode: _Decode
    # A stored state written before this field existed may omit it; the default fills it.
    optional: bool = False


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
    refused on write with an error naming the field path. Never pickles.

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
        self._version_of: dict[type, int] = {}
        self._class_of: dict[str, type] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._plans: dict[type, tuple[_Field, ...]] = {}
        self._decoders: dict[type, _Decode] = {}

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
            ValueError: The name or an alias is already taken by another class, or the
                version is below 1.
        """
        if version < 1:
            raise ValueError(f"schema version of {cls.__qualname__} must be >= 1, got {version}")
        canonical = name or _default_name(cls)
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
        """The name ``cls`` is stored under."""
        return self._name_of.get(cls) or _default_name(cls)

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
        """The stored form of ``event``: type name, schema version, payload (all fields)."""
        cls = type(event)
        return EventRecord(self.type_name(cls), self.schema_version(cls), self.encode(event))

    def event_from_record(
        self, type_name: str, schema_version: int, payload: Any, *, context: str = ""
    ) -> DomainEvent:
        """Rebuild an event from its stored form, upcasting old schema versions first.

        Raises:
            UnknownTypeError: ``type_name`` is not known; the message includes ``context``.
            DeserializationError: The payload is malformed, newer than the code, or an
                upcaster step is missing; the message includes ``context``.
        """
        where = f" ({context})" if context else ""
        if type(type_name) is not str:
            raise DeserializationError(
                f"event type name must be a string, got {_show(type_name)}{where}"
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
                f"{_show(schema_version)}{where}"
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
                    f"{step} returned {_show(upcast)}, not a JSON object{where}"
                )
            data = cast("dict[str, Any]", upcast)
        return cast("DomainEvent", self.decode(cls, data, context=context))

    # -- aggregates --------------------------------------------------------------------------

    def aggregate_to_state(self, aggregate: AggregateRoot[Any]) -> dict[str, Any]:
        """The JSON state of ``aggregate``: every field except ``version`` (stored apart)."""
        state = self.encode(aggregate)
        del state["version"]
        return state

    def aggregate_from_state(
        self, cls: type[A], state: Any, *, version: int, context: str = ""
    ) -> A:
        """Rebuild an aggregate of ``cls`` from its JSON state, at ``version``.

        Raises:
            DeserializationError: The state is malformed; the message includes ``context``.
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
                be read back, so it is not written. The message names the field path.
            ValueError: A ``float`` field holds a value JSON cannot represent (NaN,
                infinities, an integer too large for a float).
        """
        try:
            return _encode_fields(self._plan(type(obj)), obj)
        except _Unstorable as error:
            raise error.kind(f"cannot store {type(obj).__qualname__}: {error.describe()}") from None

    def decode(self, cls: type[T], data: Any, *, context: str = "") -> T:
        """Rebuild an instance of ``cls`` from :meth:`encode`'s output.

        Raises:
            DeserializationError: ``data`` does not fit ``cls``, or constructing it failed
                validation; the message names the field path and includes ``context``.
        """
        try:
            return cast("T", self._decoder_for_class(cls)(data))
        except _Malformed as error:
            where = f" ({context})" if context else ""
            raise DeserializationError(
                f"cannot read {cls.__qualname__}{where}: {error.describe()}"
            ) from None

    def dumps(self, obj: object) -> str:
        """:meth:`encode` as JSON text."""
        return json.dumps(self.encode(obj), separators=(",", ":"), ensure_ascii=False)

    def loads(self, cls: type[T], text: str | bytes, *, context: str = "") -> T:
        """:meth:`decode` from JSON text."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise DeserializationError(f"invalid JSON for {cls.__qualname__}: {error}") from None
        return self.decode(cls, data, context=context)

    # -- plans -------------------------------------------------------------------------------

    def _plan(self, cls: Any) -> tuple[_Field, ...]:
        # ``cls`` is a class or a parameterised generic one (``Box[Decimal]``), whose type
        # arguments decide how its fields are stored: each has a plan of its own.
        plan = self._plans.get(cls)
        if plan is None:
            plan = self._build_plan(cls)
            self._plans[cls] = plan
        return plan

    def _build_plan(self, key: Any) -> tuple[_Field, ...]:
        cls: type = typing.get_origin(key) or key
        name = _name(key)
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{name} is not a dataclass: cannot serialize it")
        try:
            hints = typing.get_type_hints(cls)
        except NameError as error:
            raise TypeError(
                f"cannot resolve the annotations of {cls.__qualname__}: {error} "
                "(define the class at module level)"
            ) from error
        bindings = _type_bindings(cls)
        if cls is not key:
            parameters = getattr(cls, "__parameters__", ())
            bindings.update(zip(parameters, typing.get_args(key), strict=False))
        fields: list[_Field] = []
        for f in dataclasses.fields(cls):
            annotation = _substitute(hints[f.name], bindings)
            try:
                encode, decode = self._converters(annotation)
            except TypeError as error:
                raise TypeError(f"{name}.{f.name}: {error}") from None
            # Events are immutable records: a missing field is damage, never "use the default"
            # (that would give a stored event a fresh event_id). Other state may gain fields.
            optional = not issubclass(cls, DomainEvent) and (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            fields.append(_Field(f.name, f.init, encode, decode, optional))
        return tuple(fields)

    def _decoder_for_class(self, key: Any) -> _Decode:
        decoder = self._decoders.get(key)
        if decoder is None:
            decoder = self._build_decoder(key)
            self._decoders[key] = decoder
        return decoder

    def _build_decoder(self, key: Any) -> _Decode:
        plan = self._plan(key)
        names = frozenset(f.name for f in plan)
        cls: type = typing.get_origin(key) or key
        name = _name(key)

        def decode(data: Any) -> Any:
            if not isinstance(data, dict):
                raise _Malformed(f"expected a JSON object for {name}, got {_show(data)}")
            mapping = cast("dict[str, Any]", data)
            init: dict[str, Any] = {}
            later: dict[str, Any] = {}
            for f in plan:
                if f.name not in mapping:
                    if f.init and not f.optional:
                        missing = _Malformed("missing")
                        missing.path.append(f.name)
                        raise missing
                    continue
                try:
                    value = f.decode(mapping[f.name])
                except _Malformed as error:
                    error.path.insert(0, f.name)
                    raise
                (init if f.init else later)[f.name] = value
            unknown = mapping.keys() - names
            if unknown:
                raise _Malformed(f"unexpected field(s) {', '.join(sorted(map(str, unknown)))}")
            try:
                instance = cls(**init)
            except (ValueError, TypeError) as error:
                raise _Malformed(f"{name} refused the stored values: {error}") from None
            for field_name, value in later.items():
                object.__setattr__(instance, field_name, value)
            return instance

        return decode

    def _converters(self, annotation: Any) -> tuple[_Encode, _Decode]:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            return self._converters(args[0])
        supertype = getattr(annotation, "__supertype__", None)
        if supertype is not None:  # NewType
            return self._converters(supertype)
        if annotation is Any or annotation is object:
            return _encode_json_value, _json_native
        if annotation is type(None) or annotation is None:
            return (lambda v: None if v is None else _refuse("None", v)), _expect(
                type(None), "null"
            )
        if origin in (typing.Union, types.UnionType):
            members = [a for a in args if a is not type(None)]
            if len(members) != 1 or len(args) != 2:
                raise TypeError(f"only `X | None` unions are supported, not {annotation}")
            inner_encode, inner_decode = self._converters(members[0])
            return (
                lambda v: None if v is None else inner_encode(v),
                lambda v: None if v is None else inner_decode(v),
            )
        if origin is typing.Literal:
            return _literal(args)
        if isinstance(origin, type) and dataclasses.is_dataclass(origin):  # Box[Decimal]
            return self._nested(annotation)
        if isinstance(annotation, type):
            scalar = _scalar(annotation)
            if scalar is not None:
                return scalar
            if dataclasses.is_dataclass(annotation):
                return self._nested(annotation)
        if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
            return self._sequence(origin or annotation, args)
        if origin is dict or annotation is dict:
            key_args = args or (str, Any)
            key_encode, key_decode = _key_converters(key_args[0])
            value_encode, value_decode = self._converters(key_args[1])

            def encode_dict(v: Any) -> Any:
                if not _is_instance(v, Mapping):
                    return _refuse("a dict", v)
                mapping: Mapping[Any, Any] = v
                return {key_encode(k): _at(repr(k), value_encode, x) for k, x in mapping.items()}

            return (
                encode_dict,
                lambda v: {
                    key_decode(k): _at(repr(k), value_decode, x)
                    for k, x in _expect(dict, "object")(v).items()
                },
            )
        raise TypeError(f"unsupported annotation {annotation!r} for JSON serialization")

    def _nested(self, key: Any) -> tuple[_Encode, _Decode]:
        cls: type = typing.get_origin(key) or key

        def encode(value: Any) -> Any:
            if type(value) is not cls:
                raise _Unstorable(
                    f"expected exactly {cls.__qualname__}, got {type(value).__qualname__}: "
                    "fields are stored by their declared type (no subclass polymorphism)"
                )
            return _encode_fields(self._plan(key), value)

        decode_holder: list[_Decode] = []

        def decode(value: Any) -> Any:
            if not decode_holder:
                decode_holder.append(self._decoder_for_class(key))
            return decode_holder[0](value)

        return encode, decode

    def _sequence(self, kind: Any, args: tuple[Any, ...]) -> tuple[_Encode, _Decode]:
        if kind is tuple and args and args[-1] is not Ellipsis:
            converters = [self._converters(a) for a in args]

            def decode_fixed(v: Any) -> Any:
                items = _expect(list, "array")(v)
                if len(items) != len(converters):
                    raise _Malformed(f"expected {len(converters)} items, got {len(items)}")
                return tuple(
                    _at(i, d, x)
                    for i, ((_, d), x) in enumerate(zip(converters, items, strict=True))
                )

            def encode_fixed(v: Any) -> Any:
                if not _is_instance(v, tuple):
                    return _refuse("a tuple", v)
                items: tuple[Any, ...] = v
                if len(items) != len(converters):
                    raise _Unstorable(f"expected {len(converters)} items, got {len(items)}")
                return [
                    _at(i, e, x)
                    for i, ((e, _), x) in enumerate(zip(converters, items, strict=True))
                ]

            return encode_fixed, decode_fixed
        item_encode, item_decode = self._converters(args[0] if args else Any)
        builders: dict[Any, Callable[[Iterator[Any]], Any]] = {
            list: list[Any],
            tuple: tuple[Any, ...],
            set: set[Any],
            frozenset: frozenset[Any],
        }
        build = builders[kind]
        accepted: type | tuple[type, ...] = (set, frozenset) if kind in (set, frozenset) else kind
        expected = "an array" if kind is list else f"a {kind.__name__}"

        def encode_items(v: Any) -> list[Any]:
            if not _is_instance(v, accepted):
                return cast("list[Any]", _refuse(expected, v))
            values: Iterable[Any] = v
            try:
                return [item_encode(x) for x in values]
            except _Unstorable:
                # Only now find which item it was: keeping count on every write costs time.
                for i, x in enumerate(values):
                    _at(i, item_encode, x)
                raise  # pragma: no cover  (the second pass fails where the first did)

        if kind in (set, frozenset):

            def encode_set(v: Any) -> Any:
                return sorted(encode_items(v), key=lambda x: json.dumps(x, sort_keys=True))

            encode: _Encode = encode_set
        else:
            encode = encode_items

        def decode(v: Any) -> Any:
            items: list[Any] = _expect(list, "array")(v)
            return build(_at(i, item_decode, x) for i, x in enumerate(items))

        return (
            encode,
            decode,
        )


# -- scalar conversions ----------------------------------------------------------------------


def _identity(value: Any) -> Any:
    return value


def _encode_fields(plan: tuple[_Field, ...], obj: object) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for f in plan:
        try:
            encoded[f.name] = f.encode(getattr(obj, f.name))
        except _Unstorable as error:
            error.path.insert(0, f.name)
            raise
    return encoded


def _is_instance(value: Any, kind: type | tuple[type, ...]) -> bool:
    # A plain bool: isinstance() would narrow the caller's Any to a partly unknown type.
    return isinstance(value, kind)


def _encode_json_value(value: object) -> Any:
    """A value of an ``Any`` field: it must already be JSON, or it would not read back equal."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return _encode_float(value)
    if kind is list:
        return [_encode_json_value(x) for x in cast("list[Any]", value)]
    if kind is dict:
        mapping = cast("dict[Any, Any]", value)
        for key in mapping:
            if type(key) is not str:
                raise _Unstorable(
                    f"expected a JSON value, got {type(key).__qualname__} {_show(key)} as a key"
                )
        return {k: _encode_json_value(x) for k, x in mapping.items()}
    return _refuse("a JSON value (None, bool, int, float, str, list, dict)", value)


def _json_native(value: Any) -> Any:
    return value


def _literal(args: tuple[Any, ...]) -> tuple[_Encode, _Decode]:
    # Enum members are stored by value. Values are compared with their types: `true` must
    # not pass for Literal[1], nor 1.0.
    members: dict[tuple[type, Any], Any] = {}
    for arg in args:
        stored = arg.value if isinstance(arg, enum.Enum) else arg
        members[(type(stored), stored)] = arg
    expected = sorted(map(repr, args))

    def decode(value: Any) -> Any:
        try:
            return members[(type(value), value)]
        except (KeyError, TypeError):  # TypeError: a list or object, which cannot be a key
            raise _Malformed(f"{_show(value)} is not one of {expected}") from None

    def encode(value: Any) -> Any:
        stored: object = value.value if isinstance(value, enum.Enum) else value
        key: tuple[type[object], object] = (type(stored), stored)
        try:
            if members.get(key, members) is value:
                return stored
        except TypeError:  # unhashable: not a member
            pass
        return _refuse(f"one of {', '.join(expected)}", value)

    return encode, decode


def _name(key: Any) -> str:
    """The name of a class, or of a parameterised generic class (``Box[Decimal]``)."""
    origin = typing.get_origin(key)
    if origin is None:
        return cast("str", key.__qualname__)
    arguments = ", ".join(getattr(a, "__qualname__", repr(a)) for a in typing.get_args(key))
    return f"{origin.__qualname__}[{arguments}]"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expect(kind: type, json_name: str) -> _Decode:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise _Malformed(f"expected {json_name}, got {_show(value)}")
        return value

    return check


def _at(index: int | str, decode: _Decode, value: Any) -> Any:
    try:
        return decode(value)
    except _Malformed as error:
        error.path.insert(0, f"[{index}]")
        raise


def _parse(kind: Callable[[str], T], json_name: str) -> _Decode:
    def parse(value: Any) -> Any:
        if type(value) is not str:
            raise _Malformed(f"expected {json_name} as a string, got {_show(value)}")
        try:
            return kind(value)
        except (ValueError, InvalidOperation):
            raise _Malformed(f"invalid {json_name} {value!r}") from None

    return parse


def _decode_int_key(value: Any) -> int:
    # Only the form str(int) writes: int() would also take " 1", "01" and "1_0", so two
    # different stored keys could silently collapse into one.
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or str(number) != value:
        raise _Malformed(f"invalid integer key {value!r}")
    return number


def _encode_float(value: Any) -> float:
    if isinstance(value, float):
        # json.dumps would write NaN/Infinity, which is not JSON: PostgreSQL's JSONB and other
        # readers refuse it. Use Decimal for values that may be non-finite.
        if not math.isfinite(value):
            raise _Unstorable(
                f"cannot store the non-finite float {value!r} as JSON (use a Decimal)", ValueError
            )
        return float(value)
    if isinstance(value, int):  # an int is a float to a type checker
        try:
            return float(value)
        except OverflowError:
            raise _Unstorable(f"{_show(value)} is too large for a float", ValueError) from None
    return cast("float", _refuse("a number", value))


def _decode_float(value: Any) -> float:
    if type(value) not in (float, int):
        raise _Malformed(f"expected a number, got {_show(value)}")
    try:
        return float(value)
    except OverflowError:
        raise _Malformed(f"{_show(value)} is too large for a float") from None


def _enum(cls: type[enum.Enum]) -> tuple[_Encode, _Decode]:
    def decode(value: Any) -> Any:
        try:
            return cls(value)
        except ValueError:
            raise _Malformed(f"{_show(value)} is not a {cls.__qualname__} value") from None

    def encode(value: Any) -> Any:
        return value.value if isinstance(value, cls) else _refuse(f"a {cls.__qualname__}", value)

    return encode, decode


def _encode_bool(value: Any) -> Any:
    return value if type(value) is bool else _refuse("a boolean", value)


def _encode_int(value: Any) -> Any:
    # True and IntEnum members are ints to a type checker: stored as the int they are.
    if type(value) is int:
        return value
    return int(value) if isinstance(value, int) else _refuse("an integer", value)


def _encode_str(value: Any) -> Any:
    if type(value) is str:
        return value
    return str.__str__(value) if isinstance(value, str) else _refuse("a string", value)


def _encode_as_str(cls: type, expected: str) -> _Encode:
    def encode(value: Any) -> Any:
        return str(value) if isinstance(value, cls) else _refuse(expected, value)

    return encode


def _encode_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return _refuse("a datetime", value)


def _encode_date(value: Any) -> Any:
    # A datetime is a date to a type checker, but date.isoformat would drop its time.
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return _refuse("a date (not a datetime: its time would be lost)", value)


def _scalar(cls: type) -> tuple[_Encode, _Decode] | None:
    if cls is bool:
        return _encode_bool, _expect(bool, "a boolean")
    if issubclass(cls, enum.Enum):
        return _enum(cls)
    if cls is int:
        return _encode_int, _expect(int, "an integer")
    if cls is float:
        return _encode_float, _decode_float
    if cls is str:
        return _encode_str, _expect(str, "a string")
    if cls is Decimal:
        return _encode_as_str(Decimal, "a Decimal"), _parse(Decimal, "decimal")
    if cls is UUID:
        return _encode_as_str(UUID, "a UUID"), _parse(UUID, "UUID")
    if cls is dt.datetime:
        return _encode_datetime, _parse(dt.datetime.fromisoformat, "datetime")
    if cls is dt.date:
        return _encode_date, _parse(dt.date.fromisoformat, "date")
    return None


def _key_converters(annotation: Any) -> tuple[_Encode, _Decode]:
    supertype = getattr(annotation, "__supertype__", None)
    if supertype is not None:  # NewType
        return _key_converters(supertype)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _key_converters(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return _literal_key_converters(annotation)
    if annotation is Any:
        return _identity, _identity
    if annotation is str:
        return _encode_str_key, _identity
    if annotation is int:
        return _encode_int_key, _decode_int_key
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        enum_encode, enum_decode = _enum(annotation)
        if all(isinstance(m.value, str) for m in annotation):
            return enum_encode, enum_decode

        def decode_key(key: Any) -> Any:
            try:
                value = json.loads(key)
            except ValueError:
                raise _Malformed(f"invalid {annotation.__qualname__} key {key!r}") from None
            return enum_decode(value)

        return (lambda k: json.dumps(enum_encode(k))), decode_key
    if isinstance(annotation, type):
        scalar = _scalar(annotation)
        if scalar is not None and annotation not in (bool, float):
            return scalar
    raise TypeError(f"unsupported dict key type {annotation!r}")


def _encode_str_key(key: Any) -> Any:
    return _encode_str(key) if isinstance(key, str) else _refuse("a string key", key)


def _encode_int_key(key: Any) -> Any:
    return str(int(key)) if isinstance(key, int) else _refuse("an integer key", key)


def _literal_key_converters(annotation: Any) -> tuple[_Encode, _Decode]:
    args = typing.get_args(annotation)
    allowed = frozenset(args)
    if all(type(a) is str for a in args):
        parse: _Decode = _identity
        write: _Encode = _encode_str_key
    elif all(type(a) is int for a in args):
        parse, write = _decode_int_key, _encode_int_key
    else:
        raise TypeError(f"unsupported dict key type {annotation!r} (Literal keys are str or int)")

    def encode(key: Any) -> Any:
        if key not in allowed:
            return _refuse(f"a key in {', '.join(sorted(map(repr, args)))}", key)
        return write(key)

    def decode(key: Any) -> Any:
        value = parse(key)
        if value not in allowed:
            raise _Malformed(f"invalid key {key!r}, not one of {sorted(map(repr, args))}")
        return value

    return encode, decode


# -- type resolution -------------------------------------------------------------------------


def _default_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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


def _type_bindings(cls: type) -> dict[Any, Any]:
    """TypeVar -> concrete type, from ``class X(Base[int])``-style generic bases."""
    bindings: dict[Any, Any] = {}
    for klass in reversed(cls.__mro__):
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            parameters = getattr(origin, "__parameters__", ())
            for parameter, argument in zip(parameters, typing.get_args(base), strict=False):
                bindings[parameter] = _substitute(argument, bindings)
    return bindings


def _substitute(annotation: Any, bindings: Mapping[Any, Any]) -> Any:
    if isinstance(annotation, TypeVar):
        return bindings.get(annotation, annotation.__bound__ or Any)
    args = typing.get_args(annotation)
    # __parameters__ lists the type variables at any depth (`Box[T] | None` has T).
    if not args or not getattr(annotation, "__parameters__", ()):
        return annotation
    origin = typing.get_origin(annotation)
    substituted = tuple(_substitute(a, bindings) for a in args)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[substituted]  # noqa: UP007  (built from a tuple at run time)
    return origin[substituted]
