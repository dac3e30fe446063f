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
import re
import typing
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, cast
from uuid import UUID

T = TypeVar("T")

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]

MAX_JSON_DEPTH = 100
"""How deep a JSON value of an ``Any`` field may nest arrays and objects, written or read.

A bound every JSON parser on the way (Python's on every supported version, PostgreSQL's,
a consumer's) meets well within its own limits, whatever the depth of the caller's stack.
"""

_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]").search


class Malformed(Exception):
    """Raised inside decoders; turned into DeserializationError with the field path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def describe(self) -> str:
        where = ""
        path = self.path
        if len(path) > 12:  # a deeply nested value: its first and last steps say where
            path = [*path[:6], "[...]", *path[-4:]]
        for step in path:
            where += step if step.startswith("[") or not where else f".{step}"
        return f"{where}: {self.message}" if where else self.message


class Unstorable(Malformed):
    """Raised inside encoders: a value does not fit its annotation and could not be read back.

    ``kind`` is the exception :meth:`JsonCodec.encode` raises (TypeError or ValueError).
    """

    def __init__(self, message: str, kind: type[Exception] = TypeError) -> None:
        super().__init__(message)
        self.kind = kind


class _TooDeep(Malformed):
    """A stored JSON value nested deeper than MAX_JSON_DEPTH (reported without its long path)."""


def refuse(expected: str, value: Any) -> Any:
    raise Unstorable(f"expected {expected}, got {type(value).__qualname__} {show(value)}")


def unstorable_text(text: str) -> str | None:
    """Why no store or broker can carry ``text`` (it holds a NUL or a lone surrogate), or None.

    PostgreSQL refuses NUL in text and JSONB; a lone surrogate has no UTF-8 form, so no
    database, JSON document or message body can hold it.
    """
    if text.isascii():
        if "\x00" not in text:
            return None
    elif _UNSTORABLE_CHARACTER(text) is None:
        return None
    found = _UNSTORABLE_CHARACTER(text)
    assert found is not None  # noqa: S101  (one of the two searches above found it)
    character = found.group()
    what = "a NUL character" if character == "\x00" else "a lone surrogate"
    return f"{show(text)} holds {what} at index {found.start()}"


def _storable_text(text: str) -> str:
    reason = unstorable_text(text)
    if reason is not None:
        raise Unstorable(
            f"cannot store the string {reason}, which no database or broker carries", ValueError
        )
    return text


def _readable_text(text: str) -> str:
    # What the encoder refuses is refused on read too (SQLite keeps it): otherwise the
    # aggregate read could never be saved again.
    reason = unstorable_text(text)
    if reason is not None:
        raise Malformed(f"the string {reason}, which tactical never writes")
    return text


def is_instance(value: Any, kind: type | tuple[type, ...]) -> bool:
    # A plain bool: isinstance() would narrow the caller's Any to a partly unknown type.
    return isinstance(value, kind)


def encode_json_value(value: object, depth: int = 0) -> Any:
    """A value of an ``Any`` field: it must already be JSON, or it would not read back equal."""
    kind = type(value)
    if kind is str:
        return _storable_text(cast("str", value))
    if kind is int:
        return _encode_int(value)
    if value is None or kind is bool:
        return value
    if kind is float:
        return _encode_float(value)
    if kind is list or kind is dict:
        if depth >= MAX_JSON_DEPTH:
            raise Unstorable(
                f"cannot store a JSON value nested more than {MAX_JSON_DEPTH} arrays or "
                "objects deep",
                ValueError,
            )
        if kind is list:
            return [encode_json_value(x, depth + 1) for x in cast("list[Any]", value)]
        mapping = cast("dict[Any, Any]", value)
        for key in mapping:
            if type(key) is not str:
                raise Unstorable(
                    f"expected a JSON value, got {type(key).__qualname__} {show(key)} as a key"
                )
            _storable_text(key)
        return {k: encode_json_value(x, depth + 1) for k, x in mapping.items()}
    return refuse("a JSON value (None, bool, int, float, str, list, dict)", value)


def decode_json_value(value: Any, depth: int = 0) -> Any:
    """A stored value of an ``Any`` field, refused where :func:`encode_json_value` would refuse it.

    Arrays and objects come back as new lists and dicts: what is read never shares a
    container with what was stored (the in-memory store's rows stay its own).
    """
    kind = type(cast("object", value))
    if kind is str:
        return _readable_text(value)
    if kind is float:
        return _decode_float(value)
    if kind is list or kind is dict:
        if depth >= MAX_JSON_DEPTH:
            raise _TooDeep(f"a JSON value nested more than {MAX_JSON_DEPTH} arrays or objects deep")
        if kind is list:
            items: list[Any] = []
            try:
                for item in cast("list[Any]", value):
                    items.append(decode_json_value(item, depth + 1))
            except _TooDeep:
                raise  # the path would be a hundred indexes long
            except Malformed as error:
                error.path.insert(0, f"[{len(items)}]")
                raise
            return items
        mapping: dict[str, Any] = {}
        for key, item in cast("dict[Any, Any]", value).items():
            try:
                if type(key) is not str:
                    raise Malformed(f"expected a JSON value, got {show(key)} as a key")
                mapping[_readable_text(key)] = decode_json_value(item, depth + 1)
            except _TooDeep:
                raise
            except Malformed as error:
                error.path.insert(0, f"[{key!r}]")
                raise
        return mapping
    if value is not None and kind is not bool and kind is not int:
        raise Malformed(f"expected a JSON value, got {type(value).__qualname__} {show(value)}")
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


_GUARDS: dict[Callable[[Any], Any], str] = {}


def pass_through_guard(convert: Callable[[Any], Any]) -> str | None:
    """A Python expression in ``{v}`` that is true when ``convert(v)`` would return ``v`` itself.

    The generated encoders and decoders test it inline and call ``convert`` only when it is
    false, so a value needing no conversion costs no call. It may name what
    :data:`GUARD_NAMES` holds, and must never raise.
    """
    return _GUARDS.get(convert)


def guard(convert: T, expression: str) -> T:
    """Register ``expression`` as the pass-through guard of ``convert``; return ``convert``."""
    _GUARDS[cast("Callable[[Any], Any]", convert)] = expression
    return convert


_STORABLE: dict[Callable[[Any], Any], str] = {}


def storable_guard(convert: Callable[[Any], Any]) -> str | None:
    """A Python expression in ``{v}`` that is true only when ``convert(v)`` would not raise.

    Weaker than a pass-through guard (which also says ``convert`` returns ``v`` itself, and is
    one): a UUID is storable, though its text is what is stored. The generated checks (which
    refuse what the encoders refuse without building JSON) call ``convert`` only when it is
    false, so a refusal is raised by the converter itself, with its message. It may name
    what :data:`GUARD_NAMES` holds, and must never raise.
    """
    return _STORABLE.get(convert) or _GUARDS.get(convert)


def storable(convert: T, expression: str) -> T:
    """Register ``expression`` as the storable guard of ``convert``; return ``convert``."""
    _STORABLE[cast("Callable[[Any], Any]", convert)] = expression
    return convert


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
        # readers refuse it. Use Decimal for values that may be infinite.
        if not math.isfinite(value):
            raise Unstorable(
                f"cannot store the non-finite float {value!r} as JSON (use a Decimal for "
                "infinities, None for a missing value)",
                ValueError,
            )
        return float(value)
    if isinstance(value, int):  # an int is a float to a type checker
        try:
            return float(value)
        except OverflowError:
            raise Unstorable(f"{show(value)} is too large for a float", ValueError) from None
    return cast("float", refuse("a number", value))


def _decode_float(value: Any) -> float:
    kind = type(cast("object", value))
    if kind is float:
        # Python's JSON parser reads NaN, Infinity and 1e400 (as inf): the encoder refuses
        # them, so an aggregate read with one could never be saved again.
        if not math.isfinite(value):
            raise Malformed(f"the non-finite number {value!r} is not JSON")
        return cast("float", value)
    if kind is not int:
        raise Malformed(f"expected a number, got {show(value)}")
    try:
        return float(value)
    except OverflowError:
        raise Malformed(f"{show(value)} is too large for a float") from None


def _encode_decimal(value: Any) -> Any:
    if not isinstance(value, Decimal):
        return refuse("a Decimal", value)
    if value.is_nan():
        # NaN is not equal to itself (a signalling one refuses even to be compared), so a
        # value object or change detection holding one misbehaves: it is not a number to store.
        raise Unstorable(f"cannot store the Decimal {value!r}: NaN is not a number", ValueError)
    return str(value)


def _decode_decimal(value: Any) -> Any:
    if type(value) is not str:
        raise Malformed(f"expected decimal as a string, got {show(value)}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise Malformed(f"invalid decimal {value!r}") from None
    if number.is_nan():
        raise Malformed(f"the decimal {value!r} is NaN, which tactical never writes")
    return number


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
        return value if -_HUGE < value < _HUGE else _refuse_huge(value)
    return _encode_int(int(value)) if isinstance(value, int) else refuse("an integer", value)


# Python writes and reads at most 4300 digits of an int as text by default
# (sys.set_int_max_str_digits); json.dumps would fail on more inside the database driver.
_MAX_DIGITS = 4300
_HUGE = 10**_MAX_DIGITS


def _refuse_huge(value: int) -> Any:
    raise Unstorable(
        f"cannot store an integer of {value.bit_length()} bits: JSON text holds at most "
        f"{_MAX_DIGITS} digits",
        ValueError,
    )


def _encode_str(value: Any) -> Any:
    if type(value) is str:
        # Inlined fast path of _storable_text: this runs for every string field of a commit.
        if value.isascii() and "\x00" not in value:
            return value
        return _storable_text(value)
    return (
        _storable_text(str.__str__(value)) if isinstance(value, str) else refuse("a string", value)
    )


def _decode_str(value: Any) -> Any:
    if type(value) is not str:
        raise Malformed(f"expected a string, got {show(value)}")
    if value.isascii() and "\x00" not in value:
        return value
    return _readable_text(value)


# A UUID's text is made in Python (str() of one cost as much as encoding the rest of a small
# aggregate), and the same ids are written and read again and again: as a row's key, in its
# state, in every event naming the aggregate. UUIDs are immutable, so both directions are
# memoised, in caches bounded like the codec's others.
_UUID_TEXTS: dict[int, str] = {}
_UUIDS: dict[str, UUID] = {}
_MEMO_SIZE = 4096


def uuid_text(value: UUID) -> str:
    """``str(value)``, memoised for exact UUIDs (a subclass may write itself otherwise)."""
    if type(value) is not UUID:
        return str(value)
    number = value.int
    text = _UUID_TEXTS.get(number)
    if text is None:
        if len(_UUID_TEXTS) >= _MEMO_SIZE:
            _UUID_TEXTS.clear()
        text = _UUID_TEXTS[number] = str(value)
    return text


def _encode_uuid(value: Any) -> Any:
    return uuid_text(value) if isinstance(value, UUID) else refuse("a UUID", value)


def _decode_uuid(value: Any) -> Any:
    if type(value) is not str:
        raise Malformed(f"expected UUID as a string, got {show(value)}")
    found = _UUIDS.get(value)
    if found is None:
        try:
            found = UUID(value)
        except ValueError:
            raise Malformed(f"invalid UUID {value!r}") from None
        if len(_UUIDS) >= _MEMO_SIZE:
            _UUIDS.clear()
        _UUIDS[value] = found
    return found


def _encode_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return refuse("a datetime", value)


def _encode_date(value: Any) -> Any:
    # A datetime is a date to a type checker, but date.isoformat would drop its time.
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return refuse("a date (not a datetime: its time would be lost)", value)


_decode_bool = expect(bool, "a boolean")
_decode_int = expect(int, "an integer")
_ASCII_WITHOUT_NUL = 'type({v}) is str and {v}.isascii() and "\\x00" not in {v}'
guard(_encode_bool, "type({v}) is bool")
guard(_decode_bool, "type({v}) is bool")
guard(_encode_int, "type({v}) is int and -_HUGE < {v} < _HUGE")
guard(_decode_int, "type({v}) is int")
guard(_encode_float, "type({v}) is float and isfinite({v})")
guard(_decode_float, "type({v}) is float and isfinite({v})")
guard(_encode_str, _ASCII_WITHOUT_NUL)
guard(_decode_str, _ASCII_WITHOUT_NUL)
# Exact types only: a subclass may override what the converter calls (str(), isoformat()).
storable(_encode_uuid, "type({v}) is UUID")
storable(_encode_decimal, "type({v}) is Decimal and not {v}.is_nan()")
storable(_encode_datetime, "type({v}) is datetime")  # naive ones too: encode stores them
storable(_encode_date, "type({v}) is date")

GUARD_NAMES: dict[str, object] = {
    "isfinite": math.isfinite,
    "_HUGE": _HUGE,
    "UUID": UUID,
    "Decimal": Decimal,
    "datetime": dt.datetime,
    "date": dt.date,
}
"""The names pass-through guards may use, for the namespace of the generated code."""


def scalar(cls: type) -> tuple[Encode, Decode] | None:
    if cls is bool:
        return _encode_bool, _decode_bool
    if issubclass(cls, enum.Enum):
        return _enum(cls)
    if cls is int:
        return _encode_int, _decode_int
    if cls is float:
        return _encode_float, _decode_float
    if cls is str:
        return _encode_str, _decode_str
    if cls is Decimal:
        return _encode_decimal, _decode_decimal
    if cls is UUID:
        return _encode_uuid, _decode_uuid
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
    if annotation is Any or annotation is str:
        # JSON keys are strings: a key of another type would read back as a different one.
        return _encode_str_key, _decode_str_key
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


def _decode_str_key(key: Any) -> Any:
    if type(key) is str and key.isascii() and "\x00" not in key:
        return key
    if type(key) is not str:
        raise Malformed(f"expected a string key, got {show(key)}")
    return _readable_text(key)


def _encode_int_key(key: Any) -> Any:
    return str(int(key)) if isinstance(key, int) else refuse("an integer key", key)


def _literal_key_converters(annotation: Any) -> tuple[Encode, Decode]:
    args = typing.get_args(annotation)
    allowed = frozenset(args)
    if all(type(a) is str for a in args):
        parse: Decode = _decode_str_key
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
