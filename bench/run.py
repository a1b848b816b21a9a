"""`python -m bench run SCENARIO`: a scenario against a cloud, Rally-style, with a report.

The run, in order: the target (a fabric the harness starts, with a simulated fleet of
`--hosts` fake hosts in a process of its own, or any OpenStack cloud, `bench.target`); the
fleet's registration, timed, and what each simulated host costs in memory; the set-up a
scenario needs (an image and a flavor to boot, a token to validate); the iterations
(`bench.runner`), with the processes' CPU and memory sampled throughout (`bench.procstat`);
clean-up of whatever the iterations left; the invariant checks (`bench.invariants`); the
report: one JSON object (`--json` on stdout, `--save` to a file) and an HTML page (`--report`).
"""

import asyncio
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import html_report, invariants, procstat, runner, target
from bench.boot import wait_for_fleet
from bench.cloud import Service, own_fabric
from bench.report import load_average
from bench.scenarios import Scenario, load
from bench.stats import Record
from bench.steps import Context, Watcher, needs_image_data
from fabric.client import Client, password_auth
from fabric.config import Settings

log = logging.getLogger("bench")

FLEET = "bench-fleet"
#: `--layout split`: each actor in a process of its own, beside one gateway process.
SPLIT = ("identity", "image", "compute", "scheduler", "network")


def plan_of(args: Any, scenario: Scenario) -> runner.Plan:
    """The command line over the scenario's defaults; a rate makes an open loop."""
    d = scenario.defaults
    rate = float(args.rate or d.get("rate") or 0.0)
    concurrency = int(args.concurrency or d.get("concurrency") or 8)
    iterations = int(args.iterations or 0)
    duration = float(args.duration or 0.0)
    if not iterations and not duration:
        iterations, duration = int(d.get("iterations") or 0), float(d.get("duration_s") or 0.0)
    if not iterations and not duration:
        duration = 10.0
    bound = args.max_seconds or (duration * 3 + 120 if duration else 600.0)
    return runner.Plan(
        concurrency=0 if rate else concurrency,
        rate=rate,
        iterations=iterations,
        duration_s=duration,
        max_seconds=bound,
        max_in_flight=args.max_in_flight,
    )


def picker(scenario: Scenario, ctx: Context) -> Any:
    """What each iteration runs: the scenario's steps, or one of its mix drawn by weight from the
    run's seeded generator."""

    def steps_of(s: Scenario) -> Sequence[str]:
        if not s.mix:
            return s.steps
        parts, weights = zip(*s.mix, strict=True)
        return steps_of(ctx.rng.choices(parts, weights=weights)[0])

    return lambda: steps_of(scenario)


async def run(args: Any, settings: Settings) -> dict[str, Any]:
    scenario = load(args.scenario)
    plan = plan_of(args, scenario)
    cloud = target.resolve(args.target)
    hosts = int(args.hosts or scenario.defaults.get("hosts") or 0) if scenario.boots else 0
    if cloud is not None:
        return await measure(args, scenario, plan, cloud, pids={}, database_url="", fleet=None)
    env = {
        "FABRIC_CAPACITY_REPORT_INTERVAL_S": "30",
        "FABRIC_HOST_TTL_S": "120",
        "FABRIC_FAKE_SPAWN_LATENCY_S": str(args.spawn_latency),
        "FABRIC_FAKE_FAILURE_RATE": str(args.failure_rate),
        "FABRIC_FAKE_SEED": str(args.seed),
        "FABRIC_FAKE_HOST_SHAPES": args.host_shapes,
        "FABRIC_IMAGE_QUOTA_BYTES": str(2**40),
    }
    fleet = [
        Service(
            "fleet",
            ["service", "compute-agent", "--host", FLEET, "--fake-hosts", str(hosts)],
            ready=f"compute-agent serving {FLEET}",
        )
    ]
    split = SPLIT if args.layout == "split" else ()
    async with own_fabric(
        settings, hash_cost=args.hash_cost, extra_env=env, services=fleet if hosts else (), split=split
    ) as creds:
        own = target.Target(
            name="own",
            auth_url=f"{creds.url}/identity/v3",
            username=creds.username,
            password=creds.password,
            project_name=creds.project,
        )
        fleet_started = creds.started.get("fleet")
        return await measure(
            args,
            scenario,
            plan,
            own,
            pids=creds.pids,
            database_url=creds.database_url,
            fleet=(hosts, fleet_started) if hosts and fleet_started else None,
        )


async def measure(
    args: Any,
    scenario: Scenario,
    plan: runner.Plan,
    cloud: target.Target,
    *,
    pids: dict[str, int],
    database_url: str,
    fleet: tuple[int, float] | None,
) -> dict[str, Any]:
    connections = (plan.concurrency or plan.max_in_flight) + 8
    async with cloud.client(connections=min(connections, 1024)) as client:
        fleet_report = await register(client, pids.get("fleet"), *fleet) if fleet else None
        ctx = await set_up(client, scenario, args, cloud, own=bool(database_url))
        shared = await asyncio.to_thread(procstat.shared_services, database_url) if database_url else {}
        sampler = procstat.Sampler({**pids, **shared})
        watching = asyncio.create_task(ctx.watcher.run())
        sampling = asyncio.create_task(sampler.run())
        load_before = load_average()
        started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            outcome = await runner.run(
                plan, picker(scenario, ctx), ctx, name=scenario.name, progress=not args.quiet
            )
        finally:
            sampling.cancel()
            await asyncio.to_thread(sampler.sample)
        load_after = load_average()
        try:
            await clean_up(ctx)
        finally:
            watching.cancel()
        if database_url:
            found = await invariants.check(database_url)
        else:
            found = await invariants.check_api(client, ctx.deleted_servers)
    return result(
        args, scenario, plan, cloud.name, outcome, sampler, found, fleet_report,
        started_at=started_at, load_before=load_before, load_after=load_after,
    )  # fmt: skip


async def register(client: Client, fleet_pid: int | None, hosts: int, started: float) -> dict[str, float]:
    """Until the fleet's `hosts` hosts are up in os-hypervisors: how long that took from the
    fleet's start, and what the fleet process holds in memory per host."""
    await wait_for_fleet(client, hosts, prefix=FLEET, timeout_s=600)
    register_s = time.perf_counter() - started
    log.info("%d simulated hosts registered %.1f s after the fleet started", hosts, register_s)
    rss = procstat.rss_mib(fleet_pid) if fleet_pid else None
    base = await asyncio.to_thread(baseline_rss_mib)
    out = {"hosts": hosts, "register_s": round(register_s, 2)}
    if rss is not None:
        out["rss_mib"] = round(rss, 1)
        out["baseline_rss_mib"] = round(base, 1)
        out["kib_per_host"] = round(max(0.0, rss - base) * 1024 / hosts, 2)
    return out


def baseline_rss_mib() -> float:
    """What a compute-agent process holds before it has any host: the interpreter with the same
    modules imported. The fleet's RSS above this is what its hosts cost."""
    code = (
        "import actors.compute_agent.agent, actors.compute_agent.fake_driver, fabric.compose, fabric.bus; "
        "from bench.procstat import rss_mib; import os; print(rss_mib(os.getpid()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return float(done.stdout.strip() or 0.0)


async def set_up(
    client: Client, scenario: Scenario, args: Any, cloud: target.Target, *, own: bool
) -> Context:
    """What the scenario's steps need, made or found once, outside the measurement."""
    ctx = Context(client=client, watcher=Watcher(client), rng=random.Random(args.seed))
    ctx.auth_body = password_auth(
        cloud.username,
        cloud.password,
        user_domain=cloud.user_domain_name,
        project=cloud.project_name,
        project_domain=cloud.project_domain_name,
    )
    assert client.token is not None
    ctx.token_to_validate = client.token.id
    steps = scenario.all_steps()
    if own:  # our own cloud: nothing the run does should meet a quota
        project = client.token.project_id
        assert project is not None
        await client.compute.set_quotas(project, instances=-1, cores=-1, ram=-1)
        quota = {"quota": {"network": -1, "subnet": -1, "port": -1}}
        await client.request("PUT", f"{client.endpoint('network')}/v2.0/quotas/{project}", quota)
    if any(needs_image_data(s) for s in steps):
        ctx.image_data = ctx.rng.randbytes(args.image_kib * 1024)
    if scenario.boots:
        ctx.flavor_id = await _flavor(client, args.flavor, own=own)
        ctx.image_id = await _image(client, args.image, ctx)
        if args.network:
            _, _, nets = await client.request(
                "GET", f"{client.endpoint('network')}/v2.0/networks?name={args.network}"
            )
            if not nets["networks"]:
                raise target.BadTarget(f"no network named {args.network!r}")
            ctx.boot_networks = [{"uuid": nets["networks"][0]["id"]}]
    return ctx


async def _flavor(client: Client, name: str | None, *, own: bool) -> str:
    flavors = await client.compute.list_flavors()
    if not flavors and own and not name:  # a split layout: no `fabric up` seeded the m1.* ones
        body = {"flavor": {"name": "bench.tiny", "ram": 512, "vcpus": 1, "disk": 1}}
        _, _, made = await client.request("POST", f"{client.compute.url}/flavors", body)
        return str(made["flavor"]["id"])
    if name:
        found = [f for f in flavors if name in (f["name"], f["id"])]
        if not found:
            raise target.BadTarget(f"no flavor {name!r}")
        return str(found[0]["id"])
    if not flavors:
        raise target.BadTarget("the cloud has no flavors; give --flavor")
    return str(min(flavors, key=lambda f: (f["ram"], f["vcpus"], f["disk"]))["id"])


async def _image(client: Client, name: str | None, ctx: Context) -> str:
    if name:
        found = await client.image.find(name)
        if not found:
            raise target.BadTarget(f"no image {name!r}")
        return str(found[0]["id"])
    image = await client.image.create(f"bench-boot-{os.getpid()}")
    await client.image.upload(image["id"], b"\0" * 4096)
    ctx.images.add(image["id"])
    return str(image["id"])


async def clean_up(ctx: Context, concurrency: int = 32) -> None:
    """Delete what the iterations left (boot-and-list keeps its servers; failed iterations leave
    theirs), then wait until every server the run deleted is gone, so that the invariant checks
    see the cloud at rest."""
    client = ctx.client
    gate = asyncio.Semaphore(concurrency)

    async def gone(server_id: str, delete: bool) -> None:
        async with gate:
            if delete:
                await client.compute.delete_server(server_id)
                ctx.deleted_servers.append(server_id)
            try:
                await client.compute.wait(server_id, "DELETED", timeout_s=120, max_pause_s=0.5)
            except TimeoutError:
                log.warning("server %s was not gone 120 s after its delete", server_id)

    await asyncio.gather(
        *(gone(s, True) for s in list(ctx.servers)), *(gone(s, False) for s in list(ctx.deleted_servers))
    )
    url = f"{client.endpoint('network')}/v2.0" if ctx.networks else ""
    for network in list(ctx.networks):
        await client.request("DELETE", f"{url}/networks/{network}", expect=(204, 404))
    for image in list(ctx.images):
        await client.image.delete(image)


def _summary(record: Record, seconds: float) -> dict[str, Any]:
    return {
        "count": record.ops,
        "errors": sum(record.errors.values()),
        "ops_per_s": round(record.ops / seconds, 2) if seconds > 0 else 0.0,
        **record.summary(),
    }


def result(
    args: Any,
    scenario: Scenario,
    plan: runner.Plan,
    target_name: str,
    outcome: runner.Outcome,
    sampler: procstat.Sampler,
    found: dict[str, int],
    fleet: dict[str, float] | None,
    *,
    started_at: str,
    load_before: list[float],
    load_after: list[float],
) -> dict[str, Any]:
    seconds = outcome.seconds
    processes = sampler.summary()
    # The control plane's peak: the most its processes (the fabric's, and PostgreSQL's and
    # RabbitMQ's when they are on this machine) held at one moment, not the sum of peaks
    # reached at different times. The simulated fleet stands for hosts, not for it.
    series = [rss for name, rss in sampler.rss.items() if name != "fleet"]
    control_plane = max((sum(at) for at in zip(*series, strict=True)), default=0.0)
    active = outcome.steps.get("wait_active", Record()).ops
    out: dict[str, Any] = {
        "bench": "run",
        "scenario": scenario.name,
        "target": target_name,
        "mode": plan.mode,
        "concurrency": plan.concurrency or None,
        "rate": plan.rate or None,
        "iterations": plan.iterations or None,
        "duration_s": plan.duration_s or None,
        "hosts": fleet["hosts"] if fleet else None,
        "seed": args.seed,
        "started_at": started_at,
        "seconds": round(seconds, 2),
        "iterations_done": outcome.iterations.ops,
        "iterations_per_s": round(outcome.iterations.ops / seconds, 2) if seconds > 0 else 0.0,
        "servers_per_s": round(active / seconds, 2) if seconds > 0 else 0.0,
        "errors": sum(outcome.iterations.errors.values()),
        "errors_by_kind": dict(outcome.iterations.errors),
        "cut_off": outcome.cut_off,
        **outcome.iterations.summary(),
        "operations": {step: _summary(rec, seconds) for step, rec in outcome.steps.items()},
        "timeline": outcome.timeline(),
        "samples": sampler.series(),
        "processes": processes,
        "peak_rss_mib": round(control_plane, 1),
        "invariant_violations": invariants.violations(found),
        "invariants": found,
        "load_before": load_before,
        "load_after": load_after,
        "cpus": os.cpu_count(),
    }
    if fleet:
        out["fleet"] = fleet
    if args.save:
        Path(args.save).write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    if args.report:
        html_report.write(out, Path(args.report))
    return out
