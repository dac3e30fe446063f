"""The codec's per-class encoders and decoders, generated once per class as straight-line code.

A loop over a plan's fields paid, for every field of every object, the loop itself, the
attribute lookups of the plan's entries and a ``getattr``; and every converter was a call
even where the value passes as it is (an ``int`` in an ``int`` field). The functions made
here read each field by name, skip the call where a converter's *pass-through guard* says the
value needs no conversion, and keep the field path of every error, as the plan says. Like
``dataclasses`` and ``attrs``, they are built from source text with ``exec``: only field names
(identifiers, checked) and the guards below go into that text, never a value.

A *check* per class refuses exactly what its encoder refuses without building JSON (the
in-memory store checks events it never keeps): it skips a value its field's *storable guard*
vouches for (an exact UUID, a Decimal that is a number) and hands any other to the encoder.

Decoding has a fast path for the common case, an object with exactly the plan's fields; any
other input (a missing field, an unknown one, not a dict) takes the general decoder, which
reports what is wrong.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from tactical._codec_values import (
    GUARD_NAMES,
    Decode,
    Encode,
    Malformed,
    Unstorable,
    pass_through_guard,
    storable_guard,
)

__all__ = ["compile_check", "compile_decoder", "compile_encoder"]


class Planned(Protocol):
    """One field of a plan, as the compilers read it."""

    @property
    def name(self) -> str: ...
    @property
    def init(self) -> bool: ...
    @property
    def encode(self) -> Encode: ...
    @property
    def decode(self) -> Decode: ...


def _attribute(name: str) -> str:
    # Field names are identifiers; anything else is read with getattr, never pasted as code.
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"obj.{name}"
    return f"getattr(obj, {name!r})"


def _converted(local: str, convert: str, function: Callable[[Any], Any]) -> str:
    guard = pass_through_guard(function)
    if guard is None:
        return f"{local} = {convert}({local})"
    return f"if not ({guard.format(v=local)}): {local} = {convert}({local})"


def _build(source: str, name: str, namespace: dict[str, Any]) -> Any:
    namespace = {**GUARD_NAMES, **namespace}
    exec(compile(source, f"<tactical codec {name}>", "exec"), namespace)  # noqa: S102  (see module docstring)
    return namespace[name]


def _refuse_class(cls: type, obj: object) -> None:
    raise Unstorable(
        f"expected exactly {cls.__qualname__}, got {type(obj).__qualname__}: "
        "fields are stored by their declared type (no subclass polymorphism)"
    )


def _each_field(
    cls: type, plan: Sequence[Planned], name: str, convert: Callable[[str, str, Planned], str]
) -> tuple[list[str], dict[str, Any]]:
    """The start of ``name(obj)``: refuse another class, then one line per field.

    ``convert(local, converter, field)`` is the line for a field read into ``local``, whose
    encoder is named ``converter``; an :class:`Unstorable` it raises gets the field's name.
    """
    lines = [
        f"def {name}(obj):",
        "    if type(obj) is not cls:",
        "        refuse_class(cls, obj)",
    ]
    namespace: dict[str, Any] = {
        "cls": cls,
        "Unstorable": Unstorable,
        "refuse_class": _refuse_class,
    }
    if plan:
        lines.append("    field = None")
        lines.append("    try:")
        for index, f in enumerate(plan):
            local, converter = f"v{index}", f"e{index}"
            namespace[converter] = f.encode
            lines.append(f"        field = {f.name!r}")
            lines.append(f"        {local} = {_attribute(f.name)}")
            lines.append(f"        {convert(local, converter, f)}")
        lines.append("    except Unstorable as error:")
        lines.append("        error.path.insert(0, field)")
        lines.append("        raise")
    return lines, namespace


def compile_encoder(cls: type, plan: Sequence[Planned]) -> Encode:
    """The function writing an instance of exactly ``cls`` as a JSON object, field by field.

    It raises :class:`Unstorable` with the field path for a value its field refuses, and
    for an instance of another class (a subclass included): fields are stored by their
    declared type.
    """

    def converted(local: str, converter: str, f: Planned) -> str:
        return _converted(local, converter, f.encode)

    lines, namespace = _each_field(cls, plan, "encode", converted)
    items = ", ".join(f"{f.name!r}: v{index}" for index, f in enumerate(plan))
    lines.append(f"    return {{{items}}}")
    return cast("Encode", _build("\n".join(lines), "encode", namespace))


def compile_check(cls: type, plan: Sequence[Planned]) -> Callable[[Any], None]:
    """The function refusing exactly what the encoder of ``cls`` refuses, building no JSON.

    A value its field's *storable guard* vouches for is not converted; any other value is
    given to the field's own encoder, so a refusal is the encoder's error, path included.
    """

    def checked(local: str, converter: str, f: Planned) -> str:
        storable = storable_guard(f.encode)
        if storable is None:
            return f"{converter}({local})"
        return f"if not ({storable.format(v=local)}): {converter}({local})"

    lines, namespace = _each_field(cls, plan, "check", checked)
    return cast("Callable[[Any], None]", _build("\n".join(lines), "check", namespace))


def _call_arguments(cls: type, values: dict[str, str]) -> str:
    """The arguments of ``cls(...)`` passing each field's value (``values``: name -> local).

    Positionally, in the order of the class's parameters, as far as they are the fields
    themselves (a keyword argument cost more than the rest of reading an entity); the
    others by keyword, as any ``__init__`` taking the fields by name accepts them.
    """
    positional: list[str] = []
    try:
        parameters = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # no signature to read: every value by keyword
        parameters = []
    for parameter in parameters:
        if parameter.kind is not parameter.POSITIONAL_OR_KEYWORD or parameter.name not in values:
            break
        positional.append(parameter.name)
    keywords = [name for name in values if name not in positional]
    return ", ".join(
        [values[name] for name in positional] + [f"{name}={values[name]}" for name in keywords]
    )


def compile_decoder(cls: type, label: str, plan: Sequence[Planned], general: Decode) -> Decode:
    """The function rebuilding a ``cls`` from its JSON object, as ``general`` does, faster.

    Objects with exactly the plan's fields are read in straight-line code; every other
    input is handed to ``general``, the plan's loop, which reports what is wrong with it.
    """
    if not all(f.name.isidentifier() and not keyword.iskeyword(f.name) for f in plan):
        return general  # keyword arguments could not be written for these names
    namespace: dict[str, Any] = {
        "cls": cls,
        "general": general,
        "Malformed": Malformed,
        "set_field": object.__setattr__,
        "label": label,
    }
    lines = [
        "def decode(data):",
        f"    if type(data) is not dict or len(data) != {len(plan)}:",
        "        return general(data)",
    ]
    if plan:
        reads = "; ".join(f"v{index} = data[{f.name!r}]" for index, f in enumerate(plan))
        lines += [
            "    try:",
            f"        {reads}",
            "    except KeyError:",
            "        return general(data)",
            "    field = None",
            "    try:",
        ]
        for index, f in enumerate(plan):
            local, convert = f"v{index}", f"d{index}"
            namespace[convert] = f.decode
            lines.append(f"        field = {f.name!r}")
            lines.append(f"        {_converted(local, convert, f.decode)}")
        lines += [
            "    except Malformed as error:",
            "        error.path.insert(0, field)",
            "        raise",
        ]
    arguments = _call_arguments(
        cls, {f.name: f"v{index}" for index, f in enumerate(plan) if f.init}
    )
    lines += [
        "    try:",
        f"        instance = cls({arguments})",
        # ArithmeticError: validation meeting a stored Decimal it cannot compute with
        # (decimal.InvalidOperation from quantize, say) refused the values too.
        "    except (ValueError, TypeError, ArithmeticError) as error:",
        "        raise Malformed(f'{label} refused the stored values: {error}') from None",
    ]
    for index, f in enumerate(plan):
        if not f.init:
            lines.append(f"    set_field(instance, {f.name!r}, v{index})")
    lines.append("    return instance")
    return cast("Decode", _build("\n".join(lines), "decode", namespace))
