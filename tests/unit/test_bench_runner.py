"""The harness's runner, scenarios and targets without a cloud: steps here are local functions."""

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from bench import runner, scenarios, target
from bench.run import picker
from bench.steps import Context, StepFailed

Steps = dict[str, Any]


def context() -> Context:
    return Context(client=None, watcher=None, rng=random.Random(7))  # type: ignore[arg-type]


async def test_a_closed_loop_runs_exactly_the_iterations_asked_and_times_each_step() -> None:
    calls: list[str] = []

    async def first(ctx: Context, it: dict[str, Any]) -> None:
        it["n"] = len(calls)
        calls.append("first")
        await asyncio.sleep(0.001)

    async def second(ctx: Context, it: dict[str, Any]) -> None:
        assert "n" in it  # what the first step handed on
        calls.append("second")

    steps: Steps = {"first": first, "second": second}
    plan = runner.Plan(concurrency=4, iterations=50)
    out = await runner.run(
        plan, lambda: ("first", "second"), context(), name="t", progress=False, steps=steps
    )
    assert out.iterations.ops == 50 and out.finished == 50 and out.started == 50
    assert calls.count("first") == calls.count("second") == 50
    assert out.steps["first"].ops == out.steps["second"].ops == 50
    assert sum(t["done"] for t in out.timeline()) == 50
    assert not out.cut_off


async def test_a_failing_step_ends_its_iteration_and_is_counted_by_kind() -> None:
    seen = 0

    async def flaky(ctx: Context, it: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen % 2:
            raise StepFailed("HTTP 409")

    async def after(ctx: Context, it: dict[str, Any]) -> None:
        pass

    async def broken(ctx: Context, it: dict[str, Any]) -> None:
        raise KeyError("x")

    steps: Steps = {"flaky": flaky, "after": after, "broken": broken}
    plan = runner.Plan(concurrency=1, iterations=10)
    out = await runner.run(plan, lambda: ("flaky", "after"), context(), name="t", progress=False, steps=steps)
    assert out.iterations.ops == 5 and out.iterations.errors == {"HTTP 409": 5}
    assert out.steps["after"].ops == 5, "a failed iteration must not run its later steps"
    assert sum(t["errors"] for t in out.timeline()) == 5
    out = await runner.run(plan, lambda: ("broken",), context(), name="t", progress=False, steps=steps)
    assert out.iterations.errors == {"KeyError": 10}


async def test_the_open_loop_counts_a_stall_from_when_iterations_were_meant_to_start() -> None:
    """Coordinated omission: the first iteration freezes the process for 0.3 s. Iterations due
    during the freeze start late; their latency must include the wait, not hide it."""
    first = True

    async def stall_once(ctx: Context, it: dict[str, Any]) -> None:
        nonlocal first
        if first:
            first = False
            time.sleep(0.3)  # noqa: ASYNC251 -- blocks the loop, as a stalled process would

    plan = runner.Plan(rate=200.0, duration_s=0.5)
    out = await runner.run(plan, lambda: ("s",), context(), name="t", progress=False, steps={"s": stall_once})
    summary = out.iterations.summary()
    assert out.iterations.ops >= 95, out.iterations.ops  # ~100 due in 0.5 s
    # ~60 of them were due inside the freeze: each waited between 0 and 300 ms.
    assert summary["p50_ms"] >= 20, summary
    assert summary["p90_ms"] >= 150, summary


async def test_the_time_bound_cuts_off_a_hung_run_and_says_so() -> None:
    async def hang(ctx: Context, it: dict[str, Any]) -> None:
        await asyncio.sleep(60)

    plan = runner.Plan(concurrency=3, iterations=10, max_seconds=0.3)
    began = time.perf_counter()
    out = await runner.run(plan, lambda: ("hang",), context(), name="t", progress=False, steps={"hang": hang})
    assert time.perf_counter() - began < 5
    assert out.cut_off
    assert out.iterations.errors == {runner.CUT_OFF: 3}


def test_progress_line_has_rate_errors_elapsed_and_eta() -> None:
    out = runner.Outcome()
    for _ in range(40):
        out.iterations.add(0.01)
    out.iterations.fail("HTTP 500")
    line = runner.Progress("boot", runner.Plan(concurrency=1, iterations=100), out).line(elapsed=4.1)
    assert line == "boot: 41/100 done, 10.0/s, 1 errors, 4 s elapsed, ETA 6 s"


def test_every_shipped_scenario_loads_and_the_mix_replays_with_its_seed() -> None:
    for name in scenarios.names():
        scenario = scenarios.load(name)
        assert scenario.steps or scenario.mix, name
    assert set(scenarios.names()) >= {
        "boot-and-delete", "boot-and-list", "create-and-delete-network", "token-issue",
        "token-validate", "image-upload-download", "mixed", "boot-server",
    }  # fmt: skip
    mixed = scenarios.load("mixed")
    assert mixed.boots and not scenarios.load("token-validate").boots
    pickers = [picker(mixed, context()) for _ in range(2)]  # two runs with the same seed
    draws = [[tuple(pick()) for _ in range(200)] for pick in pickers]
    assert draws[0] == draws[1], "the same seed must give the same sequence"
    validate = scenarios.load("token-validate").steps
    share = draws[0].count(validate) / 200
    assert 0.6 < share < 0.9, share  # weight 20 of 27


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('steps = ["boot_server", "fly"]', "unknown steps ['fly']"),
        ('steps = ["boot_server"]\n[mix]\ntoken-validate = 1', "either `steps` or `mix`"),
        ("[mix]\ntoken-validate = 0", "must be a positive integer"),
        ("[mix]\nself = 1", "includes itself"),
        ('steps = ["issue_token"]\nspeed = 3', "unknown keys ['speed']"),
        ('steps = ["issue_token"]\n[defaults]\nwarp = 9', "[defaults] takes only"),
        ("steps = [", "self.toml"),
    ],
)
def test_a_bad_scenario_file_is_refused_with_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "self.toml"
    path.write_text(text)
    with pytest.raises(scenarios.BadScenario, match=None) as caught:
        scenarios.load(str(path))
    assert message in str(caught.value)


def test_an_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(scenarios.BadScenario, match="known: boot-and-delete"):
        scenarios.load("boot-and-fly")


def test_a_target_from_clouds_yaml_merges_secure_yaml_and_finds_v3(tmp_path: Path) -> None:
    (tmp_path / "clouds.yaml").write_text(
        "clouds:\n  lab:\n    auth:\n      auth_url: http://10.9.8.7:5000\n      username: u\n"
        "      project_name: p\n      user_domain_name: D\n    interface: internal\n"
    )
    (tmp_path / "secure.yaml").write_text("clouds:\n  lab:\n    auth:\n      password: s3cret\n")
    found = target.from_clouds_yaml("lab", [tmp_path / "missing.yaml", tmp_path / "clouds.yaml"])
    assert found == target.Target(
        name="lab", auth_url="http://10.9.8.7:5000/v3", username="u", password="s3cret",
        project_name="p", user_domain_name="D", project_domain_name="Default", interface="internal",
    )  # fmt: skip
    with pytest.raises(target.BadTarget, match="no cloud 'other'"):
        target.from_clouds_yaml("other", [tmp_path / "clouds.yaml"])
    (tmp_path / "secure.yaml").unlink()
    with pytest.raises(target.BadTarget, match=r"auth\.password"):
        target.from_clouds_yaml("lab", [tmp_path / "clouds.yaml"])


def test_a_target_from_the_environment_says_what_is_missing() -> None:
    env = {"OS_AUTH_URL": "http://127.0.0.1:8080/identity/v3", "OS_USERNAME": "admin"}
    with pytest.raises(target.BadTarget, match="OS_PASSWORD, OS_PROJECT_NAME"):
        target.from_env(env)
    found = target.from_env({**env, "OS_PASSWORD": "pw", "OS_PROJECT_NAME": "admin"})
    assert found.auth_url == "http://127.0.0.1:8080/identity/v3" and found.project_name == "admin"
    assert target.resolve("own") is None
