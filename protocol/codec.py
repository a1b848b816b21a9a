"""The one codec: orjson out, a typed decoder in.

`encode` hands dataclasses straight to orjson, which writes their fields natively.
`decode(cls, data)` checks every field of a JSON-shaped value against the dataclass's type
hints and raises `Invalid(field, reason)` naming the first bad field by its dotted path. It never
raises anything else, whatever the input: the gateway feeds it untrusted HTTP bodies and the bus
feeds it whatever arrives on a queue.

A decoder is compiled once per type into a chain of small closures, so the hot path is a few
isinstance checks per field. The bad field's path is built only when a value fails: each
container the failure crosses on its way up adds its own step (see `_Bad`).
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
Decoder = Callable[[Any], Any]

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
    try:
        return typing.cast(T, _decoder(cls, allow_extra)(data))
    except _Bad as bad:
        raise Invalid(bad.path(path), bad.reason) from None


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


class _Bad(Exception):
    """A value that failed, on its way up to `decode`: each container it leaves appends its
    step (a field's name, an item's index), so a path is built once, for the value that failed,
    instead of for every value that passed."""

    def __init__(self, reason: str, step: str | int | None = None, *, unnamed: str = "") -> None:
        self.reason = reason
        self.steps: list[str | int] = [] if step is None else [step]
        #: What to call the value when it has no path (a top-level object: its class's name).
        self.unnamed = unnamed

    def path(self, prefix: str) -> str:
        path = prefix
        for step in reversed(self.steps):
            path = _at(path, step)
        return path or self.unnamed


def _at(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _build(tp: Any, allow_extra: bool) -> Decoder:
    if tp is Any or tp is object:
        return lambda value: value
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


def _none(value: Any) -> None:
    if value is not None:
        raise _Bad(f"expected null, got {_type_name(value)}")


def _str(value: Any) -> str:
    if type(value) is not str:
        raise _Bad(f"expected a string, got {_type_name(value)}")
    if "\x00" in value:
        raise _Bad("NUL characters are not allowed")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _Bad(f"expected a boolean, got {_type_name(value)}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise _Bad(f"expected an integer, got {_type_name(value)}")
    if not INT_MIN <= value <= INT_MAX:
        raise _Bad("integer out of range")
    return value


def _float(value: Any) -> float:
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:  # a Python int beyond any double; orjson never makes one
            raise _Bad("expected a finite number") from None
    if type(value) is not float:
        raise _Bad(f"expected a number, got {_type_name(value)}")
    if not math.isfinite(value):
        raise _Bad("expected a finite number")
    return value


def _uuid(value: Any) -> UUID:
    if type(value) is not str:
        raise _Bad(f"expected a UUID string, got {_type_name(value)}")
    try:
        return UUID(value)
    except ValueError:
        raise _Bad(f"{value[:64]!r} is not a UUID") from None


def _datetime(value: Any) -> datetime:
    if type(value) is not str:
        raise _Bad(f"expected a date-time string, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"{value[:64]!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise _Bad("a date-time needs a time zone")
    return parsed


def _enum(tp: type[enum.Enum]) -> Decoder:
    by_value = {member.value: member for member in tp}
    allowed = ", ".join(repr(v) for v in by_value)

    def decode_enum(value: Any) -> enum.Enum:
        try:
            member = by_value[value]
        except (KeyError, TypeError):
            member = None
        # type() as well as ==: true and 1.0 must not pass for an IntEnum's 1.
        if member is None or type(value) is not type(member.value):
            raise _Bad(f"expected one of {allowed}")
        return member

    return decode_enum


def _literal(options: tuple[Any, ...]) -> Decoder:
    allowed = ", ".join(repr(v) for v in options)

    def decode_literal(value: Any) -> Any:
        # type() as well as ==: True == 1 must not pass for Literal[1].
        for option in options:
            if value == option and type(value) is type(option):
                return value
        raise _Bad(f"expected one of {allowed}")

    return decode_literal


def _union(options: tuple[Decoder, ...], tp: Any) -> Decoder:
    if len(options) == 2 and _none in options:
        inner = options[0] if options[1] is _none else options[1]

        def decode_optional(value: Any) -> Any:
            return None if value is None else inner(value)

        return decode_optional

    def decode_union(value: Any) -> Any:
        first: _Bad | None = None
        for option in options:
            try:
                return option(value)
            except _Bad as exc:
                first = first or exc
        assert first is not None
        raise first

    return decode_union


def _var_tuple(item: Decoder) -> Decoder:
    def decode_tuple(value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _Bad(f"expected a list, got {_type_name(value)}")
        out: list[Any] = []
        append = out.append
        try:
            for v in value:
                append(item(v))
        except _Bad as bad:
            bad.steps.append(len(out))
            raise
        return tuple(out)

    return decode_tuple


def _fixed_tuple(items: tuple[Decoder, ...]) -> Decoder:
    def decode_tuple(value: Any) -> tuple[Any, ...]:
        if type(value) is not list or len(value) != len(items):
            raise _Bad(f"expected a list of {len(items)} items")
        out: list[Any] = []
        try:
            for item, v in zip(items, value):
                out.append(item(v))
        except _Bad as bad:
            bad.steps.append(len(out))
            raise
        return tuple(out)

    return decode_tuple


def _dict(item: Decoder) -> Decoder:
    def decode_dict(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise _Bad(f"expected an object, got {_type_name(value)}")
        out = {}
        for k, v in value.items():
            if "\x00" in k:
                raise _Bad("NUL characters are not allowed in keys")
            try:
                out[k] = item(v)
            except _Bad as bad:
                bad.steps.append(k)
                raise
        return out

    return decode_dict


def _constrained(inner: Decoder, constraints: list[Any]) -> Decoder:
    checks: list[Callable[[Any], None]] = []
    for c in constraints:
        if isinstance(c, MaxLen):
            checks.append(_check_max_len(c.n))
        elif isinstance(c, MinLen):
            checks.append(_check_min_len(c.n))
        elif isinstance(c, Range):
            checks.append(_check_range(c.lo, c.hi))
        elif isinstance(c, Pattern):
            checks.append(_check_pattern(re.compile(c.regex)))

    def decode_constrained(value: Any) -> Any:
        out = inner(value)
        if out is not None:
            for check in checks:
                check(out)
        return out

    return decode_constrained


def _check_max_len(n: int) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if len(value) > n:
            raise _Bad(f"longer than {n}")

    return check


def _check_min_len(n: int) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if len(value) < n:
            raise _Bad("must not be empty" if n == 1 else f"shorter than {n}")

    return check


def _check_range(lo: float, hi: float) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not lo <= value <= hi:
            raise _Bad(f"must be between {lo} and {hi}")

    return check


def _check_pattern(regex: re.Pattern[str]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not regex.fullmatch(value):
            raise _Bad(f"must match {regex.pattern}")

    return check


def _dataclass(cls: type, allow_extra: bool) -> Decoder:
    hints = get_type_hints(cls, include_extras=True)
    fields = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.append((f.name, _decoder(hints[f.name], allow_extra), required))
    known = {name for name, _, _ in fields}

    def decode_dataclass(value: Any) -> Any:
        if type(value) is not dict:
            raise _Bad(f"expected an object, got {_type_name(value)}", unnamed=cls.__name__)
        kwargs = {}
        for key, decoder, required in fields:
            if key in value:
                try:
                    kwargs[key] = decoder(value[key])
                except _Bad as bad:
                    bad.steps.append(key)
                    raise
            elif required:
                raise _Bad("this field is required", key)
        if not allow_extra and len(value) > len(kwargs):
            for key in value:
                if key not in known:
                    raise _Bad("unknown field", str(key))
        return cls(**kwargs)

    return decode_dataclass
