"""The scheduler's picking, without a database: filters, weighers, sampling, explanations."""

import time

from actors.scheduler.fleet import Fleet, Host, Request, explain
from protocol.scheduler import Resources

SMALL = Resources(vcpus=1, ram_mb=512, disk_gb=1)


def host(
    name: str, *, vcpus: int = 8, ram: int = 8192, disk: int = 100, zone: str = "nova", **kw: object
) -> Host:
    now = time.monotonic()
    fields: dict[str, object] = {"seen_at": now, "network_seen_at": now} | kw
    return Host(
        name=name, queue="q", hypervisor_type="fake", availability_zone=zone, vcpus_limit=vcpus,
        ram_mb_limit=ram, disk_gb_limit=disk, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def fleet(*hosts: Host, sample: int = 16, weigher: str = "spread") -> Fleet:
    f = Fleet(sample=sample, weigher=weigher, ttl_s=30)  # type: ignore[arg-type]
    for h in hosts:
        f.upsert(h)
    return f


def test_spread_prefers_the_emptiest_and_pack_the_fullest() -> None:
    full, empty = host("full", used_ram_mb=6000), host("empty")
    assert [h.name for h in fleet(full, empty).candidates(Request(resources=SMALL), time.monotonic())] == [
        "empty",
        "full",
    ]
    packed = fleet(full, empty, weigher="pack").candidates(Request(resources=SMALL), time.monotonic())
    assert packed[0].name == "full"


def test_each_filter_turns_hosts_away_and_says_so() -> None:
    f = fleet(
        host("tiny", vcpus=0),
        host("elsewhere", zone="other"),
        host("stale", seen_at=time.monotonic() - 100),
        host("tried"),
        host("ok"),
    )
    req = Request(resources=SMALL, availability_zone="nova", exclude_hosts=frozenset({"tried"}))
    rejected, passing = f.rejections(req, time.monotonic())
    assert [h.name for h in passing] == ["ok"]
    assert rejected["VCPUFilter"] == 1 and rejected["AvailabilityZoneFilter"] == 1
    assert rejected["ComputeFilter"] == 1 and rejected["RetryFilter"] == 1
    text = explain(len(f), rejected)
    assert text.startswith("5 host(s) known") and "not enough vCPUs (VCPUFilter)" in text


def test_servers_with_nics_need_a_live_network_agent() -> None:
    f = fleet(host("wired"), host("bare", network_seen_at=0.0))
    req = Request(resources=SMALL, needs_network=True)
    assert [h.name for h in f.candidates(req, time.monotonic())] == ["wired"]
    assert f.rejections(req, time.monotonic())[0]["NetworkAgentFilter"] == 1
    assert len(f.candidates(Request(resources=SMALL), time.monotonic())) == 2


def test_groups_and_forced_hosts() -> None:
    f = fleet(host("a"), host("b"), host("c"))
    anti = Request(resources=SMALL, group_policy="anti-affinity", group_hosts=frozenset({"a", "b"}))
    assert [h.name for h in f.candidates(anti, time.monotonic())] == ["c"]
    affinity = Request(resources=SMALL, group_policy="affinity", group_hosts=frozenset({"b"}))
    assert [h.name for h in f.candidates(affinity, time.monotonic())] == ["b"]
    forced = Request(resources=SMALL, force_host="c")
    assert [h.name for h in f.candidates(forced, time.monotonic())] == ["c"]


def test_picking_looks_at_a_sample_not_the_whole_fleet() -> None:
    f = fleet(*(host(f"h{i}") for i in range(10000)), sample=8)
    assert len(f.candidates(Request(resources=SMALL), time.monotonic())) == 8
    assert explain(0, {}) == "There are no compute hosts reporting."
