"""Scenarios: what one iteration of a run does, declared in small TOML files.

A scenario file (`bench/scenarios/<name>.toml`, or any path) names its steps in order (each a
function of `bench.steps`, timed as an operation of its own) or a weighted mix of other
scenarios, and the defaults a run takes when the command line does not say: concurrency,
iterations or a duration, and how many simulated hosts a fabric the harness starts should have.
Declaring them as data keeps them reviewable at a glance and lets an operator add one without
touching the harness; the steps they may use are the closed set in `bench.steps`.
"""

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.steps import STEPS, needs_compute

HERE = Path(__file__).parent / "scenarios"


class BadScenario(ValueError):
    """An unknown or malformed scenario: the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    #: Steps of one iteration, in order (empty for a mix).
    steps: tuple[str, ...] = ()
    #: For a mix: (scenario, weight) pairs.
    mix: tuple[tuple["Scenario", int], ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def boots(self) -> bool:
        """Whether an iteration may boot servers (so the run needs compute hosts)."""
        if self.mix:
            return any(part.boots for part, _ in self.mix)
        return any(needs_compute(step) for step in self.steps)

    def all_steps(self) -> set[str]:
        if self.mix:
            return set().union(*(part.all_steps() for part, _ in self.mix))
        return set(self.steps)


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def load(name_or_path: str, _seen: tuple[str, ...] = ()) -> Scenario:
    """The scenario by name (a file in bench/scenarios) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = HERE / f"{name_or_path}.toml"
    if not path.is_file():
        raise BadScenario(f"no scenario {name_or_path!r}; known: {', '.join(names())}")
    name = path.stem
    if name in _seen:
        raise BadScenario(f"scenario {name!r} includes itself through its mix")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BadScenario(f"{path}: {exc}") from None
    unknown = set(data) - {"description", "steps", "mix", "defaults"}
    if unknown:
        raise BadScenario(f"{path}: unknown keys {sorted(unknown)}")
    steps = data.get("steps", [])
    mix = data.get("mix", {})
    if bool(steps) == bool(mix):
        raise BadScenario(f"{path}: give either `steps` or `mix`")
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise BadScenario(f"{path}: unknown steps {bad}; known: {', '.join(sorted(STEPS))}")
    parts: list[tuple[Scenario, int]] = []
    for part, weight in mix.items():
        if not isinstance(weight, int) or weight <= 0:
            raise BadScenario(f"{path}: the weight of {part!r} must be a positive integer")
        beside = path.parent / f"{part}.toml"  # a mix names scenarios next to it first
        parts.append((load(str(beside) if beside.is_file() else part, (*_seen, name)), weight))
    defaults = data.get("defaults", {})
    allowed = {"concurrency", "rate", "iterations", "duration_s", "hosts"}
    if not isinstance(defaults, dict) or set(defaults) - allowed:
        raise BadScenario(f"{path}: [defaults] takes only {sorted(allowed)}")
    return Scenario(
        name=name,
        description=str(data.get("description", "")),
        steps=tuple(steps),
        mix=tuple(parts),
        defaults=defaults,
    )
