"""How the codec writes one value of a scalar or JSON type, checks it, and reads it back.

Encoders raise :class:`Unstorable` for a value that does not fit its annotation (it could not
be read back); decoders raise :class:`Malformed` for stored data that does not fit. Both carry
the path to the field, which :class:`tactical.JsonCodec` turns into its public errors.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import typing
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, cast
from uuid import UUID

T = TypeVar("T")

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]


class Malformed(Exception):
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


class Unstorable(Malformed):
    """Raised inside encoders: a value does not fit its annotation and could not be read back.

    ``kind`` is the exception :meth:`JsonCodec.encode` raises (TypeError or ValueError).
    """

    def __init__(self, message: str, kind: type[Exception] = TypeError) -> None:
        super().__init__(message)
        self.kind = kind


def refuse(expected: str, value: Any) -> Any:
    raise Unstorable(f"expected {expected}, got {type(value).__qualname__} {show(value)}")


def _identity(value: Any) -> Any:
    return value


def is_instance(value: Any, kind: type | tuple[type, ...]) -> bool:
    # A plain bool: isinstance() would narrow the caller's Any to a partly unknown type.
    return isinstance(value, kind)


def encode_json_value(value: object) -> Any:
    """A value of an ``Any`` field: it must already be JSON, or it would not read back equal."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return _encode_float(value)
    if kind is list:
        return [encode_json_value(x) for x in cast("list[Any]", value)]
    if kind is dict:
        mapping = cast("dict[Any, Any]", value)
        for key in mapping:
            if type(key) is not str:
                raise Unstorable(
                    f"expected a JSON value, got {type(key).__qualname__} {show(key)} as a key"
                )
        return {k: encode_json_value(x) for k, x in mapping.items()}
    return refuse("a JSON value (None, bool, int, float, str, list, dict)", value)


def json_native(value: Any) -> Any:
    return value


def literal(args: tuple[Any, ...]) -> tuple[Encode, Decode]:
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
            raise Malformed(f"{show(value)} is not one of {expected}") from None

    def encode(value: Any) -> Any:
        stored: object = value.value if isinstance(value, enum.Enum) else value
        key: tuple[type[object], object] = (type(stored), stored)
        try:
            if members.get(key, members) is value:
                return stored
        except TypeError:  # unhashable: not a member
            pass
        return refuse(f"one of {', '.join(expected)}", value)

    return encode, decode


def type_label(key: Any) -> str:
    """The name of a class, or of a parameterised generic class (``Box[Decimal]``)."""
    origin = typing.get_origin(key)
    if origin is None:
        return cast("str", key.__qualname__)
    arguments = ", ".join(getattr(a, "__qualname__", repr(a)) for a in typing.get_args(key))
    return f"{origin.__qualname__}[{arguments}]"


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def expect(kind: type, json_name: str) -> Decode:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise Malformed(f"expected {json_name}, got {show(value)}")
        return value

    return check


def at(index: int | str, decode: Decode, value: Any) -> Any:
    try:
        return decode(value)
    except Malformed as error:
        error.path.insert(0, f"[{index}]")
        raise


def _parse(kind: Callable[[str], T], json_name: str) -> Decode:
    def parse(value: Any) -> Any:
        if type(value) is not str:
            raise Malformed(f"expected {json_name} as a string, got {show(value)}")
        try:
            return kind(value)
        except (ValueError, InvalidOperation):
            raise Malformed(f"invalid {json_name} {value!r}") from None

    return parse


def _decode_int_key(value: Any) -> int:
    # Only the form str(int) writes: int() would also take " 1", "01" and "1_0", so two
    # different stored keys could silently collapse into one.
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or str(number) != value:
        raise Malformed(f"invalid integer key {value!r}")
    return number


def _encode_float(value: Any) -> float:
    if isinstance(value, float):
        # json.dumps would write NaN/Infinity, which is not JSON: PostgreSQL's JSONB and other
        # readers refuse it. Use Decimal for values that may be non-finite.
        if not math.isfinite(value):
            raise Unstorable(
                f"cannot store the non-finite float {value!r} as JSON (use a Decimal)", ValueError
            )
        return float(value)
    if isinstance(value, int):  # an int is a float to a type checker
        try:
            return float(value)
        except OverflowError:
            raise Unstorable(f"{show(value)} is too large for a float", ValueError) from None
    return cast("float", refuse("a number", value))


def _decode_float(value: Any) -> float:
    if type(value) not in (float, int):
        raise Malformed(f"expected a number, got {show(value)}")
    try:
        return float(value)
    except OverflowError:
        raise Malformed(f"{show(value)} is too large for a float") from None


def _enum(cls: type[enum.Enum]) -> tuple[Encode, Decode]:
    def decode(value: Any) -> Any:
        try:
            return cls(value)
        except ValueError:
            raise Malformed(f"{show(value)} is not a {cls.__qualname__} value") from None

    def encode(value: Any) -> Any:
        return value.value if isinstance(value, cls) else refuse(f"a {cls.__qualname__}", value)

    return encode, decode


def _encode_bool(value: Any) -> Any:
    return value if type(value) is bool else refuse("a boolean", value)


def _encode_int(value: Any) -> Any:
    # True and IntEnum members are ints to a type checker: stored as the int they are.
    if type(value) is int:
        return value
    return int(value) if isinstance(value, int) else refuse("an integer", value)


def _encode_str(value: Any) -> Any:
    if type(value) is str:
        return value
    return str.__str__(value) if isinstance(value, str) else refuse("a string", value)


def _encode_as_str(cls: type, expected: str) -> Encode:
    def encode(value: Any) -> Any:
        return str(value) if isinstance(value, cls) else refuse(expected, value)

    return encode


def _encode_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return refuse("a datetime", value)


def _encode_date(value: Any) -> Any:
    # A datetime is a date to a type checker, but date.isoformat would drop its time.
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return refuse("a date (not a datetime: its time would be lost)", value)


def scalar(cls: type) -> tuple[Encode, Decode] | None:
    if cls is bool:
        return _encode_bool, expect(bool, "a boolean")
    if issubclass(cls, enum.Enum):
        return _enum(cls)
    if cls is int:
        return _encode_int, expect(int, "an integer")
    if cls is float:
        return _encode_float, _decode_float
    if cls is str:
        return _encode_str, expect(str, "a string")
    if cls is Decimal:
        return _encode_as_str(Decimal, "a Decimal"), _parse(Decimal, "decimal")
    if cls is UUID:
        return _encode_as_str(UUID, "a UUID"), _parse(UUID, "UUID")
    if cls is dt.datetime:
        return _encode_datetime, _parse(dt.datetime.fromisoformat, "datetime")
    if cls is dt.date:
        return _encode_date, _parse(dt.date.fromisoformat, "date")
    return None


def key_converters(annotation: Any) -> tuple[Encode, Decode]:
    supertype = getattr(annotation, "__supertype__", None)
    if supertype is not None:  # NewType
        return key_converters(supertype)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return key_converters(typing.get_args(annotation)[0])
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
                raise Malformed(f"invalid {annotation.__qualname__} key {key!r}") from None
            return enum_decode(value)

        return (lambda k: json.dumps(enum_encode(k))), decode_key
    if isinstance(annotation, type):
        converters = scalar(annotation)
        if converters is not None and annotation not in (bool, float):
            return converters
    raise TypeError(f"unsupported dict key type {annotation!r}")


def _encode_str_key(key: Any) -> Any:
    return _encode_str(key) if isinstance(key, str) else refuse("a string key", key)


def _encode_int_key(key: Any) -> Any:
    return str(int(key)) if isinstance(key, int) else refuse("an integer key", key)


def _literal_key_converters(annotation: Any) -> tuple[Encode, Decode]:
    args = typing.get_args(annotation)
    allowed = frozenset(args)
    if all(type(a) is str for a in args):
        parse: Decode = _identity
        write: Encode = _encode_str_key
    elif all(type(a) is int for a in args):
        parse, write = _decode_int_key, _encode_int_key
    else:
        raise TypeError(f"unsupported dict key type {annotation!r} (Literal keys are str or int)")

    def encode(key: Any) -> Any:
        if key not in allowed:
            return refuse(f"a key in {', '.join(sorted(map(repr, args)))}", key)
        return write(key)

    def decode(key: Any) -> Any:
        value = parse(key)
        if value not in allowed:
            raise Malformed(f"invalid key {key!r}, not one of {sorted(map(repr, args))}")
        return value

    return encode, decode
