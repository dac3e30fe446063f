"""How the codec writes and reads the fields of a dataclass, compiled once per class.

A plan lists each field with the converters its annotation calls for; :class:`FieldPlans`
builds and caches the plans and the decoders built on them for one :class:`tactical.JsonCodec`.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from tactical._codec_compile import compile_check, compile_decoder, compile_encoder
from tactical._codec_values import (
    MAX_JSON_DEPTH,
    Decode,
    Encode,
    Malformed,
    Unstorable,
    at,
    decode_json_value,
    encode_json_value,
    expect,
    guard,
    is_instance,
    key_converters,
    literal,
    pass_through_guard,
    refuse,
    scalar,
    show,
    storable,
    storable_guard,
    type_label,
)
from tactical._generics import substitute, type_bindings
from tactical._model import DomainEvent


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a dataclass and the converters its annotation calls for."""

    name: str
    init: bool
    encode: Encode
    decode: Decode
    # A stored state written before this field existed may omit it; the default fills it.
    optional: bool = False


class FieldPlans:
    """The field plans and decoders of the classes one codec has met, built on first use."""

    def __init__(self) -> None:
        self._plans: dict[type, tuple[Field, ...]] = {}
        # What is built so far, by class: read by JsonCodec first (a hit costs no call), and
        # only ever added to, by the methods below.
        self.encoders: dict[type, Encode] = {}
        self.checkers: dict[type, Callable[[Any], None]] = {}
        self.decoders: dict[type, Decode] = {}

    def plan(self, cls: Any) -> tuple[Field, ...]:
        """The plan of ``cls``: raises ``TypeError`` for a class the codec cannot store."""
        # ``cls`` is a class or a parameterised generic one (``Box[Decimal]``), whose type
        # arguments decide how its fields are stored: each has a plan of its own.
        plan = self._plans.get(cls)
        if plan is None:
            plan = self._build_plan(cls)
            self._plans[cls] = plan
        return plan

    def _build_plan(self, key: Any) -> tuple[Field, ...]:
        cls: type = typing.get_origin(key) or key
        name = type_label(key)
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{name} is not a dataclass: cannot serialize it")
        try:
            hints = typing.get_type_hints(cls)
        except NameError as error:
            raise TypeError(
                f"cannot resolve the annotations of {cls.__qualname__}: {error} "
                "(define the class at module level)"
            ) from error
        bindings = type_bindings(cls)
        if cls is not key:
            parameters = getattr(cls, "__parameters__", ())
            bindings.update(zip(parameters, typing.get_args(key), strict=False))
        fields: list[Field] = []
        for f in dataclasses.fields(cls):
            annotation = substitute(hints[f.name], bindings)
            try:
                encode, decode = self._converters(annotation)
            except TypeError as error:
                raise TypeError(f"{name}.{f.name}: {error}") from None
            # Events are immutable records: a missing field is damage, never "use the default"
            # (that would give a stored event a fresh event_id). Other state may gain fields.
            optional = not issubclass(cls, DomainEvent) and (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            fields.append(Field(f.name, f.init, encode, decode, optional))
        return tuple(fields)

    def encoder(self, key: Any) -> Encode:
        """The encoder of ``key``: raises ``TypeError`` for a class the codec cannot store."""
        encoder = self.encoders.get(key)
        if encoder is None:
            encoder = compile_encoder(typing.get_origin(key) or key, self.plan(key))
            self.encoders[key] = encoder
        return encoder

    def checker(self, key: Any) -> Callable[[Any], None]:
        """The check of ``key``: raises what its encoder raises, without building JSON."""
        checker = self.checkers.get(key)
        if checker is None:
            checker = compile_check(typing.get_origin(key) or key, self.plan(key))
            self.checkers[key] = checker
        return checker

    def decoder(self, key: Any) -> Decode:
        """The decoder of ``key`` (a class or parameterised generic class)."""
        decoder = self.decoders.get(key)
        if decoder is None:
            decoder = self._build_decoder(key)
            self.decoders[key] = decoder
        return decoder

    def _build_decoder(self, key: Any) -> Decode:
        plan = self.plan(key)
        names = frozenset(f.name for f in plan)
        cls: type = typing.get_origin(key) or key
        name = type_label(key)

        def general(data: Any) -> Any:
            if not isinstance(data, dict):
                raise Malformed(f"expected a JSON object for {name}, got {show(data)}")
            mapping = cast("dict[str, Any]", data)
            init: dict[str, Any] = {}
            later: dict[str, Any] = {}
            for f in plan:
                if f.name not in mapping:
                    if f.init and not f.optional:
                        missing = Malformed("missing")
                        missing.path.append(f.name)
                        raise missing
                    continue
                try:
                    value = f.decode(mapping[f.name])
                except Malformed as error:
                    error.path.insert(0, f.name)
                    raise
                (init if f.init else later)[f.name] = value
            unknown = mapping.keys() - names
            if unknown:
                raise Malformed(f"unexpected field(s) {', '.join(sorted(map(str, unknown)))}")
            try:
                instance = cls(**init)
            except (ValueError, TypeError, ArithmeticError) as error:
                # ArithmeticError: validation meeting a stored Decimal it cannot compute with
                # (decimal.InvalidOperation from quantize, say) refused the values too.
                raise Malformed(f"{name} refused the stored values: {error}") from None
            for field_name, value in later.items():
                object.__setattr__(instance, field_name, value)
            return instance

        return compile_decoder(cls, name, plan, general)

    def _converters(self, annotation: Any) -> tuple[Encode, Decode]:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            return self._converters(args[0])
        supertype = getattr(annotation, "__supertype__", None)
        if supertype is not None:  # NewType
            return self._converters(supertype)
        if annotation is Any or annotation is object:
            return encode_json_value, decode_json_value
        if annotation is type(None) or annotation is None:
            return (lambda v: None if v is None else refuse("None", v)), expect(type(None), "null")
        if origin in (typing.Union, types.UnionType):
            members = [a for a in args if a is not type(None)]
            if len(members) != 1 or len(args) != 2:
                raise TypeError(f"only `X | None` unions are supported, not {annotation}")
            inner_encode, inner_decode = self._converters(members[0])
            return (
                _or_none(inner_encode),
                _or_none(inner_decode),
            )
        if origin is typing.Literal:
            return literal(args)
        if isinstance(origin, type) and dataclasses.is_dataclass(origin):  # Box[Decimal]
            return self._nested(annotation)
        if isinstance(annotation, type):
            converters = scalar(annotation)
            if converters is not None:
                return converters
            if dataclasses.is_dataclass(annotation):
                return self._nested(annotation)
        if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
            return self._sequence(origin or annotation, args)
        if origin is dict or annotation is dict:
            key_args = args or (str, Any)
            key_encode, key_decode = key_converters(key_args[0])
            value_encode, value_decode = self._converters(key_args[1])

            def encode_dict(v: Any) -> Any:
                if not is_instance(v, Mapping):
                    return refuse("a dict", v)
                mapping: Mapping[Any, Any] = v
                return {key_encode(k): at(repr(k), value_encode, x) for k, x in mapping.items()}

            return (
                encode_dict,
                lambda v: {
                    key_decode(k): at(repr(k), value_decode, x)
                    for k, x in expect(dict, "object")(v).items()
                },
            )
        raise TypeError(
            f"unsupported annotation {annotation!r} for JSON serialization: a stored field is "
            "a str, int, float, bool, Decimal, UUID, date, datetime, Enum, Literal, a value "
            "object or other dataclass, X | None, or a list, tuple, set, frozenset or dict of "
            "these (Any for a plain JSON value); make the field's class a ValueObject, or "
            "store it as one of these"
        )

    def _nested(self, key: Any) -> tuple[Encode, Decode]:
        cls: type = typing.get_origin(key) or key
        if not _is_recursive(cls):
            # Built now: only a class that can contain itself reaches its own plan again.
            return self.encoder(key), self.decoder(key)
        # A recursive type (a tree) meets itself before its plan exists: its converters are
        # looked up on first use, and bounded like JSON values, so that whatever is written
        # can be read back within Python's recursion limit.

        def encode(value: Any) -> Any:
            return self.encoder(key)(value)

        def decode(value: Any) -> Any:
            return self.decoder(key)(value)

        return _bounded(encode, cls, Unstorable), _bounded(decode, cls, Malformed)

    def _sequence(self, kind: Any, args: tuple[Any, ...]) -> tuple[Encode, Decode]:
        if kind is tuple and args and args[-1] is not Ellipsis:
            converters = [self._converters(a) for a in args]

            def decode_fixed(v: Any) -> Any:
                items = expect(list, "array")(v)
                if len(items) != len(converters):
                    raise Malformed(f"expected {len(converters)} items, got {len(items)}")
                return tuple(
                    at(i, d, x) for i, ((_, d), x) in enumerate(zip(converters, items, strict=True))
                )

            def encode_fixed(v: Any) -> Any:
                if not is_instance(v, tuple):
                    return refuse("a tuple", v)
                items: tuple[Any, ...] = v
                if len(items) != len(converters):
                    raise Unstorable(f"expected {len(converters)} items, got {len(items)}")
                return [
                    at(i, e, x) for i, ((e, _), x) in enumerate(zip(converters, items, strict=True))
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
            if not is_instance(v, accepted):
                return cast("list[Any]", refuse(expected, v))
            values: Iterable[Any] = v
            encoded: list[Any] = []
            try:
                for x in values:
                    encoded.append(item_encode(x))
            except Unstorable as error:
                # The failing item is the next one; encoding it again to find it would be
                # exponential in the depth of a recursive value.
                error.path.insert(0, f"[{len(encoded)}]")
                raise
            return encoded

        if kind in (set, frozenset):

            def encode_set(v: Any) -> Any:
                return sorted(encode_items(v), key=lambda x: json.dumps(x, sort_keys=True))

            encode: Encode = encode_set
        else:
            encode = encode_items

        def decode(v: Any) -> Any:
            if type(cast("object", v)) is not list:
                raise Malformed(f"expected array, got {show(v)}")
            decoded: list[Any] = []
            try:
                for x in v:
                    decoded.append(item_decode(x))
            except Malformed as error:
                error.path.insert(0, f"[{len(decoded)}]")  # the failing item is the next one
                raise
            return decoded if kind is list else build(iter(decoded))

        if kind in (set, frozenset):
            decode_items = decode

            def decode(v: Any) -> Any:
                try:
                    return decode_items(v)
                except TypeError as error:  # an array or object in a set[Any]
                    raise Malformed(f"a set item is not hashable: {error}") from None

        return (
            encode,
            decode,
        )


def _or_none(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert`` for an ``X | None`` field: None passes as it is."""

    def or_none(value: Any) -> Any:
        return None if value is None else convert(value)

    inner = storable_guard(convert)
    if inner is not None:
        storable(or_none, f"{{v}} is None or ({inner})")
    inner = pass_through_guard(convert)
    return guard(or_none, "{v} is None" if inner is None else f"{{v}} is None or ({inner})")


_nesting = threading.local()


def _bounded(convert: Callable[[Any], Any], cls: type, error: type[Malformed]) -> Encode:
    def bounded(value: Any) -> Any:
        depth: int = getattr(_nesting, "depth", 0)
        if depth >= MAX_JSON_DEPTH:
            too_deep = error(f"{cls.__qualname__} nested more than {MAX_JSON_DEPTH} levels deep")
            if isinstance(too_deep, Unstorable):
                too_deep.kind = ValueError
            raise too_deep
        _nesting.depth = depth + 1
        try:
            return convert(value)
        finally:
            _nesting.depth = depth

    return bounded


_recursive: dict[type, bool] = {}


def _is_recursive(cls: type) -> bool:
    """Whether a dataclass can contain itself through its fields' annotations."""
    found = _recursive.get(cls)
    if found is None:
        found = _recursive[cls] = cls in _reachable(cls)
    return found


def _reachable(start: type) -> set[type]:
    seen: set[type] = set()
    stack = [start]
    while stack:
        current = stack.pop()
        try:
            hints = typing.get_type_hints(current)
        except Exception:  # noqa: S112  (unresolvable: the plan reports it)
            continue
        pending = list(hints.values())
        while pending:
            annotation = pending.pop()
            pending.extend(typing.get_args(annotation))
            origin = typing.get_origin(annotation) or annotation
            if isinstance(origin, type) and dataclasses.is_dataclass(origin) and origin not in seen:
                seen.add(origin)
                stack.append(origin)
    return seen
