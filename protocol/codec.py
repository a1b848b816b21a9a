"""The one codec: orjson out, a typed decoder in.

`encode` hands dataclasses straight to orjson, which writes their fields natively.
`decode(cls, data)` checks every field of a JSON-shaped value against the dataclass's type
hints and raises `Invalid(field, reason)` naming the first bad field by its dotted path. It never
raises anything else, whatever the input: the gateway feeds it untrusted HTTP bodies and the bus
feeds it whatever arrives on a queue.

A decoder is compiled once per type into a chain of small closures, so the hot path is a few
isinstance checks per field.
"""

import dataclasses
import enum
import math
import re
import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints
from uuid import UUID

import orjson

from protocol.errors import Invalid

T = TypeVar("T")
Decoder = Callable[[Any, str], Any]

INT_MIN, INT_MAX = -(2**63), 2**63 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class MaxLen:
    """Constraint for `Annotated[str, MaxLen(n)]` (also tuples and dicts)."""

    n: int


@dataclasses.dataclass(frozen=True, slots=True)
class MinLen:
    n: int


@dataclasses.dataclass(frozen=True, slots=True)
class Range:
    """Inclusive bounds for `Annotated[int, Range(lo, hi)]`."""

    lo: int | float
    hi: int | float


@dataclasses.dataclass(frozen=True, slots=True)
class Pattern:
    regex: str


def encode(value: object) -> bytes:
    return orjson.dumps(value)


def decode(cls: type[T], data: Any, *, path: str = "", allow_extra: bool = False) -> T:
    """Validate JSON-shaped `data` into `cls`; raise `Invalid` naming the bad field."""
    return typing.cast(T, _decoder(cls, allow_extra)(data, path))


def decode_json(cls: type[T], raw: bytes | str, *, allow_extra: bool = False) -> T:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid("body", f"malformed JSON: {exc}") from None
    return decode(cls, data, allow_extra=allow_extra)


_cache: dict[tuple[Any, bool], Decoder] = {}


def _decoder(tp: Any, allow_extra: bool) -> Decoder:
    key = (tp, allow_extra)
    found = _cache.get(key)
    if found is None:
        found = _cache[key] = _build(tp, allow_extra)
    return found


def _at(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _build(tp: Any, allow_extra: bool) -> Decoder:
    if tp is Any or tp is object:
        return lambda value, path: value
    if tp is type(None) or tp is None:
        return _none
    if tp is str:
        return _str
    if tp is bool:
        return _bool
    if tp is int:
        return _int
    if tp is float:
        return _float
    if tp is UUID:
        return _uuid
    if tp is datetime:
        return _datetime
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, allow_extra)
    origin = get_origin(tp)
    if origin is Annotated:
        base, *constraints = get_args(tp)
        return _constrained(_decoder(base, allow_extra), constraints)
    if origin is Literal:
        return _literal(get_args(tp))
    if origin is Union or origin is types.UnionType:
        return _union(tuple(_decoder(arg, allow_extra) for arg in get_args(tp)), tp)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return _var_tuple(_decoder(args[0], allow_extra))
        return _fixed_tuple(tuple(_decoder(a, allow_extra) for a in args))
    if origin is dict:
        key_tp, value_tp = get_args(tp)
        if key_tp is not str:
            raise TypeError(f"dict keys must be str in protocol types, not {key_tp}")
        return _dict(_decoder(value_tp, allow_extra))
    raise TypeError(f"the codec cannot decode {tp!r}")


def _none(value: Any, path: str) -> None:
    if value is not None:
        raise Invalid(path, f"expected null, got {_type_name(value)}")


def _str(value: Any, path: str) -> str:
    if type(value) is not str:
        raise Invalid(path, f"expected a string, got {_type_name(value)}")
    if "\x00" in value:
        raise Invalid(path, "NUL characters are not allowed")
    return value


def _bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        raise Invalid(path, f"expected a boolean, got {_type_name(value)}")
    return value


def _int(value: Any, path: str) -> int:
    if type(value) is not int:
        raise Invalid(path, f"expected an integer, got {_type_name(value)}")
    if not INT_MIN <= value <= INT_MAX:
        raise Invalid(path, "integer out of range")
    return value


def _float(value: Any, path: str) -> float:
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:  # a Python int beyond any double; orjson never makes one
            raise Invalid(path, "expected a finite number") from None
    if type(value) is not float:
        raise Invalid(path, f"expected a number, got {_type_name(value)}")
    if not math.isfinite(value):
        raise Invalid(path, "expected a finite number")
    return value


def _uuid(value: Any, path: str) -> UUID:
    if type(value) is not str:
        raise Invalid(path, f"expected a UUID string, got {_type_name(value)}")
    try:
        return UUID(value)
    except ValueError:
        raise Invalid(path, f"{value[:64]!r} is not a UUID") from None


def _datetime(value: Any, path: str) -> datetime:
    if type(value) is not str:
        raise Invalid(path, f"expected a date-time string, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(path, f"{value[:64]!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise Invalid(path, "a date-time needs a time zone")
    return parsed


def _enum(tp: type[enum.Enum]) -> Decoder:
    by_value = {member.value: member for member in tp}
    allowed = ", ".join(repr(v) for v in by_value)

    def decode_enum(value: Any, path: str) -> enum.Enum:
        try:
            member = by_value[value]
        except (KeyError, TypeError):
            member = None
        # type() as well as ==: true and 1.0 must not pass for an IntEnum's 1.
        if member is None or type(value) is not type(member.value):
            raise Invalid(path, f"expected one of {allowed}")
        return member

    return decode_enum


def _literal(options: tuple[Any, ...]) -> Decoder:
    allowed = ", ".join(repr(v) for v in options)

    def decode_literal(value: Any, path: str) -> Any:
        # type() as well as ==: True == 1 must not pass for Literal[1].
        for option in options:
            if value == option and type(value) is type(option):
                return value
        raise Invalid(path, f"expected one of {allowed}")

    return decode_literal


def _union(options: tuple[Decoder, ...], tp: Any) -> Decoder:
    if len(options) == 2 and _none in options:
        inner = options[0] if options[1] is _none else options[1]

        def decode_optional(value: Any, path: str) -> Any:
            return None if value is None else inner(value, path)

        return decode_optional

    def decode_union(value: Any, path: str) -> Any:
        first: Invalid | None = None
        for option in options:
            try:
                return option(value, path)
            except Invalid as exc:
                first = first or exc
        assert first is not None
        raise first

    return decode_union


def _var_tuple(item: Decoder) -> Decoder:
    def decode_tuple(value: Any, path: str) -> tuple[Any, ...]:
        if type(value) is not list:
            raise Invalid(path, f"expected a list, got {_type_name(value)}")
        return tuple(item(v, _at(path, i)) for i, v in enumerate(value))

    return decode_tuple


def _fixed_tuple(items: tuple[Decoder, ...]) -> Decoder:
    def decode_tuple(value: Any, path: str) -> tuple[Any, ...]:
        if type(value) is not list or len(value) != len(items):
            raise Invalid(path, f"expected a list of {len(items)} items")
        return tuple(item(v, _at(path, i)) for i, (item, v) in enumerate(zip(items, value)))

    return decode_tuple


def _dict(item: Decoder) -> Decoder:
    def decode_dict(value: Any, path: str) -> dict[str, Any]:
        if type(value) is not dict:
            raise Invalid(path, f"expected an object, got {_type_name(value)}")
        out = {}
        for k, v in value.items():
            if "\x00" in k:
                raise Invalid(path, "NUL characters are not allowed in keys")
            out[k] = item(v, _at(path, k))
        return out

    return decode_dict


def _constrained(inner: Decoder, constraints: list[Any]) -> Decoder:
    checks: list[Callable[[Any, str], None]] = []
    for c in constraints:
        if isinstance(c, MaxLen):
            checks.append(_check_max_len(c.n))
        elif isinstance(c, MinLen):
            checks.append(_check_min_len(c.n))
        elif isinstance(c, Range):
            checks.append(_check_range(c.lo, c.hi))
        elif isinstance(c, Pattern):
            checks.append(_check_pattern(re.compile(c.regex)))

    def decode_constrained(value: Any, path: str) -> Any:
        out = inner(value, path)
        if out is not None:
            for check in checks:
                check(out, path)
        return out

    return decode_constrained


def _check_max_len(n: int) -> Callable[[Any, str], None]:
    def check(value: Any, path: str) -> None:
        if len(value) > n:
            raise Invalid(path, f"longer than {n}")

    return check


def _check_min_len(n: int) -> Callable[[Any, str], None]:
    def check(value: Any, path: str) -> None:
        if len(value) < n:
            raise Invalid(path, "must not be empty" if n == 1 else f"shorter than {n}")

    return check


def _check_range(lo: float, hi: float) -> Callable[[Any, str], None]:
    def check(value: Any, path: str) -> None:
        if not lo <= value <= hi:
            raise Invalid(path, f"must be between {lo} and {hi}")

    return check


def _check_pattern(regex: re.Pattern[str]) -> Callable[[Any, str], None]:
    def check(value: Any, path: str) -> None:
        if not regex.fullmatch(value):
            raise Invalid(path, f"must match {regex.pattern}")

    return check


def _dataclass(cls: type, allow_extra: bool) -> Decoder:
    hints = get_type_hints(cls, include_extras=True)
    fields = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.append((f.name, _decoder(hints[f.name], allow_extra), required))
    known = {name for name, _, _ in fields}

    def decode_dataclass(value: Any, path: str) -> Any:
        if type(value) is not dict:
            raise Invalid(path or cls.__name__, f"expected an object, got {_type_name(value)}")
        kwargs = {}
        for key, decoder, required in fields:
            if key in value:
                kwargs[key] = decoder(value[key], _at(path, key))
            elif required:
                raise Invalid(_at(path, key), "this field is required")
        if not allow_extra and len(value) > len(kwargs):
            for key in value:
                if key not in known:
                    raise Invalid(_at(path, str(key)), "unknown field")
        return cls(**kwargs)

    return decode_dataclass
