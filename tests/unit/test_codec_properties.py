"""Properties of the codec and the wire format, for every registered message type.

Values are built from the dataclasses' own type hints (constraints included), so a message type
added to `protocol.registry` is covered without touching this file; a type hint the builders
here cannot handle fails loudly instead of being skipped. The malformed-input half changes one
place of a valid document at a time and checks that the decoder names exactly that place, and
that input of any shape only ever raises `Invalid`.
"""

import copy
import dataclasses
import enum
import json
import re
import types
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints
from uuid import UUID

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import INT_MAX, INT_MIN, MaxLen, MinLen, Pattern, Range, decode, decode_json, encode
from protocol.envelope import Context, Envelope, WireEnvelope
from protocol.errors import ERRORS, FabricError, Invalid
from protocol.registry import TYPES, schema_of
from protocol.wire import (
    decode_envelope,
    decode_reply,
    encode_envelope,
    encode_error,
    encode_reply,
    join_frame,
    split_frame,
)

PER_TYPE = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESSAGE_TYPES = sorted(TYPES)
SMALL = 6  # generated lengths stay this close to a minimum; maxima get boundary tests instead

# --- a type using what the codec supports beyond today's messages --------------------------


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Inner:
    name: Annotated[str, MinLen(1), MaxLen(8)]
    weight_kg: Annotated[float, Range(0, 100)] = 1.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    count: Annotated[int, Range(-5, 5)]
    big: int
    code: Annotated[str, Pattern(r"[a-z]{2,4}-[0-9]{1,3}"), MaxLen(7)]
    colour: Colour
    level: Level
    uid: UUID
    at: datetime
    pair: tuple[int, str]
    flag: Literal[1, "one", True]
    inner: Inner | None
    many: Annotated[tuple[Inner, ...], MinLen(1), MaxLen(4)]
    labels: dict[str, bool]


ALL_TYPES = [*MESSAGE_TYPES, "test.Probe"]
#: A string matching each Pattern in use; a new pattern needs its example here.
PATTERN_EXAMPLES = {
    r"[a-z]{2,4}-[0-9]{1,3}": "ab-12",
    r"[A-Za-z0-9_.\- ]+": "m1.tiny",
    r"[A-Za-z0-9_. @-]+": "my key",
}


def type_named(name: str) -> type:
    return Probe if name == "test.Probe" else TYPES[name]


# --- valid values from type hints ----------------------------------------------------------

TEXT_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # JSON-able, no NUL


def text(min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    top = min_size + SMALL if max_size is None else min(max_size, min_size + SMALL)
    return st.text(TEXT_CHARS, min_size=min_size, max_size=top)


def constraints(marks: list[Any]) -> tuple[int, int | None, Any, Any, list[str]]:
    """(min length, max length, low, high, patterns) of an Annotated type's marks."""
    min_len = max((m.n for m in marks if isinstance(m, MinLen)), default=0)
    max_len = min((m.n for m in marks if isinstance(m, MaxLen)), default=None)
    lo = max((m.lo for m in marks if isinstance(m, Range)), default=None)
    hi = min((m.hi for m in marks if isinstance(m, Range)), default=None)
    return min_len, max_len, lo, hi, [m.regex for m in marks if isinstance(m, Pattern)]


def values(tp: Any) -> st.SearchStrategy[Any]:
    """Every valid value of `tp`, as hypothesis draws them."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *marks = get_args(tp)
        return constrained(base, marks)
    if tp is type(None):
        return st.none()
    if tp is str:
        return text()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(INT_MIN, INT_MAX)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is UUID:
        return st.uuids()
    if tp is datetime:
        # orjson writes offsets to the minute, so that is all a sender can mean.
        offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
        return st.datetimes(timezones=offsets)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = get_type_hints(tp, include_extras=True)
        return st.builds(tp, **{f.name: values(hints[f.name]) for f in dataclasses.fields(tp)})
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin is Union or origin is types.UnionType:
        return st.one_of(*(values(a) for a in get_args(tp)))
    if origin is tuple:
        args = get_args(tp)
        if args[1:] == (Ellipsis,):
            return st.lists(values(args[0]), max_size=3).map(tuple)
        return st.tuples(*(values(a) for a in args))
    if origin is dict:
        return st.dictionaries(text(), values(get_args(tp)[1]), max_size=3)
    raise TypeError(f"no strategy for {tp!r}: teach values() about it")


def constrained(base: Any, marks: list[Any]) -> st.SearchStrategy[Any]:
    min_len, max_len, lo, hi, patterns = constraints(marks)
    if base is str and patterns:
        return st.from_regex(patterns[0], fullmatch=True).filter(
            lambda s: (
                "\x00" not in s
                and min_len <= len(s) <= (len(s) if max_len is None else max_len)
                and all(re.fullmatch(p, s) for p in patterns)
            )
        )
    if base is str:
        return text(min_len, max_len)
    if base is int:
        return st.integers(INT_MIN if lo is None else int(lo), INT_MAX if hi is None else int(hi))
    if base is float:
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if get_origin(base) is tuple and get_args(base)[1:] == (Ellipsis,):
        top = min(3 if max_len is None else max_len, min_len + 3)
        return st.lists(values(get_args(base)[0]), min_size=min_len, max_size=top).map(tuple)
    if get_origin(base) is dict:
        top = min(3 if max_len is None else max_len, min_len + 3)
        key, value = get_args(base)
        return st.dictionaries(values(key), values(value), min_size=min_len, max_size=top)
    raise TypeError(f"no strategy for Annotated[{base!r}, ...]: teach constrained() about it")


def full(tp: Any) -> Any:
    """One valid value of `tp` with every optional part present (no None, no empty
    collections), so that every nested field of a message has a place in its JSON."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *marks = get_args(tp)
        min_len, max_len, lo, hi, patterns = constraints(marks)
        if base is str and patterns:
            return PATTERN_EXAMPLES[patterns[0]]
        if base is str:
            return "s" * min(max(min_len, 1), max_len if max_len is not None else 1)
        if base in (int, float):
            return base(lo if lo is not None else hi if hi is not None else 1)
        if get_origin(base) is tuple and get_args(base)[1:] == (Ellipsis,):
            n = min(max(min_len, 1), max_len if max_len is not None else 1)
            return (full(get_args(base)[0]),) * n
        if get_origin(base) is dict:
            return {"key": full(get_args(base)[1])}
        raise TypeError(f"no full value for Annotated[{base!r}, ...]: teach full() about it")
    simple = {str: "s", bool: True, int: 1, float: 1.5, UUID: UUID(int=1)}
    if tp in simple:
        return simple[tp]
    if tp is datetime:
        return datetime(2024, 2, 3, 4, 5, 6, 789, tzinfo=timezone(timedelta(hours=-3, minutes=-30)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return next(iter(tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = get_type_hints(tp, include_extras=True)
        return tp(**{f.name: full(hints[f.name]) for f in dataclasses.fields(tp)})
    if origin is Literal:
        return get_args(tp)[0]
    if origin is Union or origin is types.UnionType:
        return full(next(a for a in get_args(tp) if a is not type(None)))
    if origin is tuple:
        args = get_args(tp)
        return (full(args[0]),) if args[1:] == (Ellipsis,) else tuple(full(a) for a in args)
    if origin is dict:
        return {"key": full(get_args(tp)[1])}
    raise TypeError(f"no full value for {tp!r}: teach full() about it")


# --- where each type sits in a JSON document -----------------------------------------------

JsonPath = tuple[str | int, ...]
KINDS = ("null", "bool", "int", "float", "str", "list", "object")
#: One value of each JSON kind, to put where that kind is not allowed.
SAMPLE = {"null": None, "bool": True, "int": 7, "float": 0.5, "str": "x", "list": [], "object": {}}
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT_MIN, 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KIND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(INT_MIN, INT_MAX),
    "float": st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    "str": text(),
    "list": st.lists(json_scalars, max_size=2),
    "object": st.dictionaries(st.text(max_size=4), json_scalars, max_size=2),
}


def strip(tp: Any) -> tuple[Any, list[Any]]:
    if get_origin(tp) is Annotated:
        base, *marks = get_args(tp)
        return base, marks
    return tp, []


def present(tp: Any) -> Any:
    """`X | None` -> X; anything else as it is."""
    base, _ = strip(tp)
    if get_origin(base) in (Union, types.UnionType):
        args = [a for a in get_args(base) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def kinds(tp: Any) -> set[str]:
    """The JSON kinds a place of type `tp` accepts."""
    tp, _ = strip(tp)
    origin = get_origin(tp)
    if tp is Any or tp is object:
        return set(KINDS)
    if tp is type(None):
        return {"null"}
    if tp in (str, UUID, datetime):
        return {"str"}
    if tp is bool:
        return {"bool"}
    if tp is int:
        return {"int"}
    if tp is float:
        return {"int", "float"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return set().union(*(kind_of(m.value) for m in tp))
    if origin is Literal:
        return set().union(*(kind_of(v) for v in get_args(tp)))
    if origin is Union or origin is types.UnionType:
        return set().union(*(kinds(a) for a in get_args(tp)))
    if origin is tuple:
        return {"list"}
    if origin is dict or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return {"object"}
    raise TypeError(f"no JSON kind for {tp!r}")


def kind_of(value: Any) -> set[str]:
    for kind, cls in (("null", type(None)), ("bool", bool), ("int", int), ("float", float), ("str", str)):
        if type(value) is cls:
            return {kind}
    raise TypeError(f"no JSON kind for {value!r}")


def positions(tp: Any, value: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """Every place in the valid document `value` of type `tp`, with the type declared there."""
    yield path, tp
    if value is None:
        return
    base, _ = strip(present(tp))
    origin = get_origin(base)
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        hints = get_type_hints(base, include_extras=True)
        for f in dataclasses.fields(base):
            key = json_key(f)
            if key in value:
                yield from positions(hints[f.name], value[key], (*path, key))
    elif origin is tuple:
        args = get_args(base)
        items = [args[0]] * len(value) if args[1:] == (Ellipsis,) else list(args)
        for i, (item_tp, item) in enumerate(zip(items, value)):
            yield from positions(item_tp, item, (*path, i))
    elif origin is dict:
        for k, v in value.items():
            yield from positions(get_args(base)[1], v, (*path, k))


def json_key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("json", f.name))


def is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def field_name(path: JsonPath, *, root: str = "") -> str:
    """The codec's name for a place, `a.b[2].c`, under `root` (the codec's own top path)."""
    out = root
    for part in path:
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else part)
    return out


def at(doc: Any, path: JsonPath) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def replaced(doc: Any, path: JsonPath, new: Any) -> Any:
    if not path:
        return new
    doc = copy.deepcopy(doc)
    at(doc, path[:-1])[path[-1]] = new
    return doc


def removed(doc: Any, path: JsonPath) -> Any:
    doc = copy.deepcopy(doc)
    del at(doc, path[:-1])[path[-1]]
    return doc


def as_json(message: object) -> Any:
    return orjson.loads(encode(message))


def expect_invalid(cls: type, doc: Any, field: str, *, allow_extra: bool = False) -> Invalid:
    """`doc` is refused naming `field`, both as a value and as JSON text."""
    with pytest.raises(Invalid) as caught:
        decode(cls, doc, allow_extra=allow_extra)
    assert caught.value.field == field, (caught.value.field, field, caught.value.reason)
    with pytest.raises(Invalid) as again:
        # The standard library writes what orjson refuses to (integers beyond 64 bits).
        decode_json(cls, json.dumps(doc), allow_extra=allow_extra)
    assert again.value.field == field
    return caught.value


def decodes_or_invalid(fn: Any, *args: Any) -> Any:
    """Call a decoder on hostile input: any answer will do, any exception but Invalid will not."""
    try:
        return fn(*args)
    except Invalid as exc:
        assert isinstance(exc.field, str)  # "" only when the unknown key itself is ""
        return exc
    except Exception as exc:  # the property under test: nothing else ever escapes
        pytest.fail(f"{fn.__name__} raised {type(exc).__name__}: {exc!r} instead of Invalid")


# --- round trips ---------------------------------------------------------------------------


def test_the_registry_holds_frozen_dataclasses_once_each() -> None:
    assert len(TYPES) == len(set(TYPES.values())) > 0
    for name, cls in TYPES.items():
        assert dataclasses.is_dataclass(cls), name
        assert cls.__dataclass_params__.frozen, f"{name} must be frozen"  # type: ignore[attr-defined]


contexts = st.builds(
    Context,
    request_id=text(),
    user_id=st.none() | text(),
    project_id=st.none() | text(),
    domain_id=st.none() | text(),
    roles=st.lists(text(), max_size=3).map(tuple),
    deadline=st.floats(allow_nan=False, allow_infinity=False),
)


@pytest.mark.parametrize("name", ALL_TYPES)
@PER_TYPE
@given(data=st.data())
def test_encode_then_decode_gives_the_same_value(name: str, data: st.DataObject) -> None:
    """Through the codec; for registered types also as an envelope, in a frame, as a reply."""
    cls = type_named(name)
    message = data.draw(values(cls), label="message")
    raw = encode(message)
    assert decode_json(cls, raw) == message
    assert decode(cls, orjson.loads(raw)) == message
    assert encode(decode_json(cls, raw)) == raw  # re-encoding is stable
    if cls is Probe:
        return

    ctx = data.draw(contexts, label="ctx")
    envelope_id = data.draw(text(), label="envelope id")
    attempt = data.draw(st.integers(0, INT_MAX), label="attempt")
    raw = encode_envelope(envelope_id, message, ctx, attempt=attempt)
    expected = Envelope(
        id=envelope_id, type=name, schema=schema_of(cls), attempt=attempt, context=ctx, message=message
    )
    assert decode_envelope(orjson.loads(raw)) == expected
    # Coalesced into one frame with another, each keeps its own id and attempt count.
    other = encode_envelope("other", message, ctx)
    first, second = (decode_envelope(item) for item in split_frame(join_frame([raw, other])))
    assert first == expected
    assert (second.id, second.attempt, second.message) == ("other", 0, message)

    assert decode_reply(orjson.loads(encode_reply(envelope_id, message))) == (envelope_id, message, None)


@given(
    error=st.sampled_from(sorted(ERRORS)).flatmap(
        lambda n: st.fixed_dictionaries({f: text() for f in ERRORS[n].fields}).map(lambda a: ERRORS[n](**a))
    ),
    envelope_id=text(),
)
@settings(max_examples=50, deadline=None)
def test_an_error_reply_comes_back_as_the_same_error(error: FabricError, envelope_id: str) -> None:
    got_id, result, got = decode_reply(orjson.loads(encode_error(envelope_id, error)))
    assert (got_id, result) == (envelope_id, None)
    assert type(got) is type(error) and got is not None
    assert got.to_wire() == error.to_wire()
    assert decode_reply(orjson.loads(encode_reply(envelope_id, None))) == (envelope_id, None, None)


@pytest.mark.parametrize("name", ALL_TYPES)
def test_fields_with_defaults_may_be_left_out(name: str) -> None:
    cls = type_named(name)
    message = full(cls)
    doc = as_json(message)
    decoded = decode(cls, {json_key(f): doc[json_key(f)] for f in dataclasses.fields(cls) if is_required(f)})
    for f in dataclasses.fields(cls):
        if is_required(f):
            assert getattr(decoded, f.name) == getattr(message, f.name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            assert getattr(decoded, f.name) == default


# --- one place wrong at a time --------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_TYPES)
def test_every_place_of_every_message_is_checked(name: str) -> None:
    """For each place of a full message: each wrong JSON kind, a NUL in a string, a missing
    required field, an unknown extra field; each refused with that place's name."""
    cls = type_named(name)
    doc = as_json(full(cls))
    places = list(positions(cls, doc))
    assert {p[0] for p, _ in places if p} == {json_key(f) for f in dataclasses.fields(cls)}
    for path, tp in places:
        field = field_name(path) or cls.__name__
        for kind in sorted(set(KINDS) - kinds(tp)):
            expect_invalid(cls, replaced(doc, path, SAMPLE[kind]), field)
        if "str" in kinds(tp):
            error = expect_invalid(cls, replaced(doc, path, "a\x00b"), field)
            assert strip(present(tp))[0] is not str or "NUL" in error.reason
        node = at(doc, path)
        inner = strip(present(tp))[0]
        if isinstance(inner, type) and dataclasses.is_dataclass(inner) and isinstance(node, dict):
            for f in dataclasses.fields(inner):
                if is_required(f):
                    key = (*path, json_key(f))
                    error = expect_invalid(cls, removed(doc, key), field_name(key))
                    assert error.reason == "this field is required"
            extra = replaced(doc, path, {**node, "surplus": 1})
            assert expect_invalid(cls, extra, field_name((*path, "surplus"))).reason == "unknown field"
            # allow_extra (the gateway's choice for HTTP bodies) ignores it, at any depth.
            assert decode(cls, extra, allow_extra=True) == decode(cls, doc)


@given(name=st.sampled_from(ALL_TYPES), data=st.data())
@settings(max_examples=200, deadline=None)
def test_a_random_wrong_value_anywhere_is_refused_by_name(name: str, data: st.DataObject) -> None:
    cls = type_named(name)
    doc = as_json(data.draw(values(cls), label="message"))
    path, tp = data.draw(st.sampled_from(list(positions(cls, doc))), label="place")
    wrong_kinds = sorted(set(KINDS) - kinds(tp))
    if wrong_kinds:
        bad = data.draw(st.sampled_from(wrong_kinds).flatmap(KIND_VALUES.__getitem__), label="bad")
        expect_invalid(cls, replaced(doc, path, bad), field_name(path) or cls.__name__)


@pytest.mark.parametrize("name", ALL_TYPES)
def test_lengths_and_ranges_are_checked_at_their_bounds(name: str) -> None:
    """At every constrained place the bound itself passes, and one past it is refused by name."""
    cls = type_named(name)
    doc = as_json(full(cls))
    for path, tp in positions(cls, doc):
        base, marks = strip(present(tp))
        min_len, max_len, lo, hi, patterns = constraints(marks)
        field = field_name(path)
        if max_len is not None and not patterns:
            assert decode(cls, replaced(doc, path, sized(base, at(doc, path), max_len)))
            too_long = replaced(doc, path, sized(base, at(doc, path), max_len + 1))
            assert expect_invalid(cls, too_long, field).reason == f"longer than {max_len}"
        if min_len > 0 and not patterns:
            expect_invalid(cls, replaced(doc, path, sized(base, at(doc, path), min_len - 1)), field)
        if lo is not None and hi is not None:
            step = 1 if base is int else 0.5
            for ok in (base(lo), base(hi)):
                assert decode(cls, replaced(doc, path, ok))
            for out in (base(lo) - step, base(hi) + step):
                assert "between" in expect_invalid(cls, replaced(doc, path, out), field).reason
        if patterns:
            expect_invalid(cls, replaced(doc, path, "NO-match!"), field)


def sized(base: Any, current: Any, n: int) -> Any:
    """A value like `current` (a string, a list or an object of valid items) of length `n`."""
    if base is str:
        return "a" * n
    if isinstance(current, dict):
        item = next(iter(current.values()))
        return {f"k{i}": item for i in range(n)}
    return [current[0]] * n


def test_the_codec_checks_what_todays_messages_do_not_use() -> None:
    good = as_json(full(Probe))
    assert decode(Probe, {**good, "big": INT_MAX}).big == INT_MAX
    assert decode(Probe, {**good, "big": INT_MIN}).big == INT_MIN
    expect_invalid(Probe, {**good, "big": INT_MAX + 1}, "big")
    expect_invalid(Probe, {**good, "big": INT_MIN - 1}, "big")
    expect_invalid(Probe, {**good, "count": True}, "count")  # a bool is not an int
    assert decode(Probe, {**good, "flag": True}).flag is True
    assert decode(Probe, {**good, "flag": 1}).flag == 1
    assert decode(Probe, {**good, "flag": "one"}).flag == "one"
    expect_invalid(Probe, {**good, "flag": 1.0}, "flag")
    expect_invalid(Probe, {**good, "flag": 2}, "flag")
    assert decode(Probe, {**good, "colour": "blue"}).colour is Colour.BLUE
    expect_invalid(Probe, {**good, "colour": "green"}, "colour")
    assert decode(Probe, {**good, "level": 2}).level is Level.HIGH
    expect_invalid(Probe, {**good, "level": 3}, "level")
    expect_invalid(Probe, {**good, "level": "1"}, "level")
    expect_invalid(Probe, {**good, "level": True}, "level")  # true == 1, but is not Level.LOW
    expect_invalid(Probe, {**good, "level": 1.0}, "level")
    expect_invalid(Probe, {**good, "uid": "not-a-uuid"}, "uid")
    expect_invalid(Probe, {**good, "at": "2024-01-01T00:00:00"}, "at")  # no time zone
    expect_invalid(Probe, {**good, "at": "yesterday"}, "at")
    expect_invalid(Probe, {**good, "pair": [1]}, "pair")
    expect_invalid(Probe, {**good, "pair": [1, "a", 2]}, "pair")
    expect_invalid(Probe, {**good, "pair": ["a", "b"]}, "pair[0]")
    expect_invalid(Probe, {**good, "labels": {"a\x00": True}}, "labels")
    expect_invalid(Probe, {**good, "labels": {"k": 1}}, "labels.k")
    expect_invalid(Probe, {**good, "many": []}, "many")
    expect_invalid(Probe, {**good, "many": [{"name": ""}]}, "many[0].name")
    expect_invalid(Probe, {**good, "inner": {"name": "n", "weight_kg": 101}}, "inner.weight_kg")
    for huge in (float("nan"), 10**400):  # no JSON, but decode takes Python values too
        with pytest.raises(Invalid) as caught:
            decode(Probe, {**good, "inner": {"name": "n", "weight_kg": huge}})
        assert caught.value.field == "inner.weight_kg"
    assert decode(Probe, {**good, "inner": None}).inner is None


# --- hostile input -------------------------------------------------------------------------


@given(value=json_values | st.dictionaries(st.text(max_size=12), json_values, max_size=6))
@settings(max_examples=100, deadline=None)
def test_random_json_only_ever_raises_invalid(value: Any) -> None:
    text_form = orjson.dumps(value)
    for name in ALL_TYPES:
        cls = type_named(name)
        assert isinstance(decodes_or_invalid(decode, cls, value), Invalid | cls)
        assert isinstance(decodes_or_invalid(decode_json, cls, text_form), Invalid | cls)


@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.sampled_from([10**400, -(10**400), float("nan"), float("inf")])
        | st.floats()
        | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    ),
    name=st.sampled_from(ALL_TYPES),
    place=st.integers(0, 1000),
)
@settings(max_examples=200, deadline=None)
def test_any_python_value_anywhere_only_ever_raises_invalid(value: Any, name: str, place: int) -> None:
    """`decode` takes Python values, not only what orjson makes (huge ints, NaN: TOML, tests)."""
    cls = type_named(name)
    doc = as_json(full(cls))
    spots = list(positions(cls, doc))
    path, _ = spots[place % len(spots)]
    assert isinstance(decodes_or_invalid(decode, cls, replaced(doc, path, value)), Invalid | cls)


@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
@settings(max_examples=100, deadline=None)
def test_garbage_bytes_are_an_invalid_body(raw: bytes) -> None:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        is_json = False
    else:
        is_json = True
    for name in ALL_TYPES:
        cls = type_named(name)
        if is_json:
            assert isinstance(decodes_or_invalid(decode_json, cls, raw), Invalid | cls)
        else:
            with pytest.raises(Invalid) as caught:
                decode_json(cls, raw)
            assert caught.value.field == "body"


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"a":1,}', b"NaN", b"[1e400]", b'"\\ud800"', b"\xff\xfe", b'{"a":1}{"b":2}']
)
def test_bytes_that_are_not_json_are_an_invalid_body_or_frame(raw: bytes) -> None:
    with pytest.raises(Invalid) as caught:
        decode_json(TYPES["system.Echo"], raw)
    assert caught.value.field == "body"
    with pytest.raises(Invalid) as frame:
        split_frame(raw)
    assert frame.value.field == "frame"


# --- hostile envelopes, replies and frames -------------------------------------------------


def envelope_doc(message: object) -> Any:
    ctx = Context(request_id="req-1", user_id="u", roles=("member",), deadline=1.5)
    return orjson.loads(encode_envelope("env-1", message, ctx, attempt=2))


@pytest.mark.parametrize("name", MESSAGE_TYPES)
def test_every_place_of_an_envelope_is_checked(name: str) -> None:
    cls = TYPES[name]
    doc = envelope_doc(full(cls))
    header = [(p, tp) for p, tp in positions(WireEnvelope, doc) if p[:1] != ("body",)]
    body = [(("body", *p), tp) for p, tp in positions(cls, doc["body"])]
    for path, tp in header + body:
        for kind in sorted(set(KINDS) - kinds(tp)):
            with pytest.raises(Invalid) as caught:
                decode_envelope(replaced(doc, path, SAMPLE[kind]))
            assert caught.value.field == (field_name(path) or "WireEnvelope"), (path, kind, caught.value)
    for key in ("id", "type", "schema", "deadline", "attempt", "ctx", "body"):
        with pytest.raises(Invalid) as caught:
            decode_envelope(removed(doc, (key,)))
        assert caught.value.field == key
    # Unknown fields are refused in the header and in the body alike.
    with pytest.raises(Invalid) as caught:
        decode_envelope({**doc, "surplus": 1})
    assert caught.value.field == "surplus"
    with pytest.raises(Invalid) as caught:
        decode_envelope(replaced(doc, ("body", "surplus"), 1))
    assert caught.value.field == "body.surplus"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("type", "system.Nope", "unknown message type"),
        ("type", "__class__", "unknown message type"),
        ("schema", schema_of(TYPES["system.Echo"]) + 1, "newer"),
        ("schema", INT_MAX + 1, "out of range"),
        ("attempt", -(2**70), "out of range"),
        ("deadline", float("nan"), "finite"),
    ],
)
def test_an_envelope_of_an_unknown_type_or_newer_schema_is_refused(
    field: str, value: Any, reason: str
) -> None:
    doc = envelope_doc(TYPES["system.Echo"](payload="p"))
    with pytest.raises(Invalid) as caught:
        decode_envelope({**doc, field: value})
    assert caught.value.field == field and reason in caught.value.reason


@given(
    raw=json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "type": st.sampled_from(MESSAGE_TYPES) | json_values,
            "schema": json_values,
            "deadline": json_values,
            "attempt": json_values,
            "ctx": json_values | st.fixed_dictionaries({"request_id": json_values}),
            "body": json_values,
        },
    )
)
@settings(max_examples=150, deadline=None)
def test_random_envelopes_only_ever_raise_invalid(raw: Any) -> None:
    assert isinstance(decodes_or_invalid(decode_envelope, raw), Invalid | Envelope)


@given(
    raw=json_values
    | st.fixed_dictionaries(
        {"id": text()},
        optional={
            "type": st.sampled_from(MESSAGE_TYPES) | json_values,
            "body": json_values,
            "error": json_values
            | st.fixed_dictionaries(
                {}, optional={"type": st.sampled_from(sorted(ERRORS)) | json_values, "args": json_values}
            ),
        },
    )
)
@settings(max_examples=150, deadline=None)
def test_random_replies_only_ever_raise_invalid(raw: Any) -> None:
    got = decodes_or_invalid(decode_reply, raw)
    if not isinstance(got, Invalid):
        envelope_id, result, error = got
        assert isinstance(envelope_id, str)
        assert result is None or error is None
        assert error is None or isinstance(error, FabricError)


def test_a_reply_with_a_non_string_type_is_an_error_not_a_crash() -> None:
    for raw in [
        {"id": "e", "type": ["identity.Done"]},
        {"id": "e", "type": {"a": 1}},
        {"id": "e", "error": {"type": ["NotFound"], "args": {}}},
        {"id": "e", "error": {"type": {"x": 1}, "args": {}}},
    ]:
        envelope_id, result, error = decode_reply(raw)
        assert (envelope_id, result) == ("e", None)
        assert isinstance(error, Invalid) and error.field in ("reply.type", "error.type")


@given(raw=st.binary(max_size=64) | json_values.map(orjson.dumps))
@settings(max_examples=100, deadline=None)
def test_random_frames_split_into_a_list_or_are_invalid(raw: bytes) -> None:
    assert isinstance(decodes_or_invalid(split_frame, raw), Invalid | list)
