"""The scheduler's view of the fleet, and how it picks hosts: pure, no I/O.

Filters say no to a host, in order; weighers rank the hosts left. A placement looks for
`sample` hosts that pass, walking the fleet from a random place, and stops there, so picking
costs the same with 10 hosts or 10,000. Only when no host passes does it scan everything, and
then it knows how many hosts each filter turned away: that count is the NoValidHost message.

What this view believes about usage is a hint. The truth is the claim in PostgreSQL; a claim
that fails tells the scheduler its view was stale, and it refreshes that host.
"""

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from protocol.scheduler import Resources


@dataclass(slots=True, kw_only=True)
class Host:
    name: str
    queue: str
    hypervisor_type: str
    availability_zone: str
    enabled: bool = True
    #: Capacity times the over-commit ratios: what claims may fill.
    vcpus_limit: int
    ram_mb_limit: int
    disk_gb_limit: int
    used_vcpus: int = 0
    used_ram_mb: int = 0
    used_disk_gb: int = 0
    #: time.monotonic() of the last capacity report (or of loading it from the database).
    seen_at: float = 0.0
    #: time.monotonic() of the host's network agent's last report; 0: never heard.
    network_seen_at: float = 0.0

    def free(self) -> tuple[int, int, int]:
        return (
            self.vcpus_limit - self.used_vcpus,
            self.ram_mb_limit - self.used_ram_mb,
            self.disk_gb_limit - self.used_disk_gb,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    resources: Resources
    availability_zone: str | None = None
    exclude_hosts: frozenset[str] = frozenset()
    group_policy: Literal["affinity", "anti-affinity"] | None = None
    group_hosts: frozenset[str] = frozenset()
    force_host: str | None = None
    needs_network: bool = False


Filter = Callable[[Host, Request, float], bool]


def _up(host: Host, req: Request, deadline: float) -> bool:
    return host.enabled and host.seen_at >= deadline


def _zone(host: Host, req: Request, deadline: float) -> bool:
    return req.availability_zone is None or host.availability_zone == req.availability_zone


def _forced(host: Host, req: Request, deadline: float) -> bool:
    return req.force_host is None or host.name == req.force_host


def _network(host: Host, req: Request, deadline: float) -> bool:
    return not req.needs_network or host.network_seen_at >= deadline


def _retry(host: Host, req: Request, deadline: float) -> bool:
    return host.name not in req.exclude_hosts


def _affinity(host: Host, req: Request, deadline: float) -> bool:
    return req.group_policy != "affinity" or not req.group_hosts or host.name in req.group_hosts


def _anti_affinity(host: Host, req: Request, deadline: float) -> bool:
    return req.group_policy != "anti-affinity" or host.name not in req.group_hosts


def _vcpus(host: Host, req: Request, deadline: float) -> bool:
    return host.used_vcpus + req.resources.vcpus <= host.vcpus_limit


def _ram(host: Host, req: Request, deadline: float) -> bool:
    return host.used_ram_mb + req.resources.ram_mb <= host.ram_mb_limit


def _disk(host: Host, req: Request, deadline: float) -> bool:
    return host.used_disk_gb + req.resources.disk_gb <= host.disk_gb_limit


#: Nova's names, so that operators recognise them; cheap and decisive ones first.
FILTERS: tuple[tuple[str, Filter], ...] = (
    ("ComputeFilter", _up),
    ("AvailabilityZoneFilter", _zone),
    ("ForcedHostFilter", _forced),
    ("NetworkAgentFilter", _network),
    ("RetryFilter", _retry),
    ("ServerGroupAffinityFilter", _affinity),
    ("ServerGroupAntiAffinityFilter", _anti_affinity),
    ("VCPUFilter", _vcpus),
    ("RAMFilter", _ram),
    ("DiskFilter", _disk),
)

WHY = {
    "ComputeFilter": "disabled or not reporting",
    "AvailabilityZoneFilter": "in another availability zone",
    "ForcedHostFilter": "not the host asked for",
    "NetworkAgentFilter": "without a live network agent",
    "RetryFilter": "already tried for this server",
    "ServerGroupAffinityFilter": "not the host of the server group",
    "ServerGroupAntiAffinityFilter": "holding a member of the server group",
    "VCPUFilter": "not enough vCPUs",
    "RAMFilter": "not enough RAM",
    "DiskFilter": "not enough disk",
}


def first_rejection(host: Host, req: Request, deadline: float) -> str | None:
    for name, passes in FILTERS:
        if not passes(host, req, deadline):
            return name
    return None


def weigh(host: Host, weigher: Literal["spread", "pack"]) -> float:
    """Higher is better. Spread: the most free RAM (then vCPUs) as a share of the host; pack:
    the least."""
    ram = (host.ram_mb_limit - host.used_ram_mb) / max(host.ram_mb_limit, 1)
    cpu = (host.vcpus_limit - host.used_vcpus) / max(host.vcpus_limit, 1)
    score = ram + cpu / 8
    return score if weigher == "spread" else -score


def explain(hosts: int, rejected: dict[str, int]) -> str:
    parts = [f"{n} {WHY[name]} ({name})" for name, n in rejected.items() if n]
    if hosts == 0:
        return "There are no compute hosts reporting."
    if not parts:
        return f"{hosts} host(s) known, none rejected by the filters."
    return f"{hosts} host(s) known; rejected: " + "; ".join(parts) + "."


class Fleet:
    """Hosts by name, plus a list to sample from."""

    def __init__(self, *, sample: int, weigher: Literal["spread", "pack"], ttl_s: float) -> None:
        self.sample, self.weigher, self.ttl_s = sample, weigher, ttl_s
        self.hosts: dict[str, Host] = {}
        self._order: list[Host] = []
        self._rng = random.Random()

    def __len__(self) -> int:
        return len(self.hosts)

    def upsert(self, host: Host) -> Host:
        """Add a host or update its static facts, keeping the usage this view has learned."""
        known = self.hosts.get(host.name)
        if known is None:
            self.hosts[host.name] = host
            self._order.append(host)
            return host
        known.queue, known.hypervisor_type = host.queue, host.hypervisor_type
        known.availability_zone, known.enabled = host.availability_zone, host.enabled
        known.vcpus_limit, known.ram_mb_limit, known.disk_gb_limit = (
            host.vcpus_limit,
            host.ram_mb_limit,
            host.disk_gb_limit,
        )
        known.seen_at = max(known.seen_at, host.seen_at)
        return known

    def _walk(self) -> Iterator[Host]:
        n = len(self._order)
        if n == 0:
            return
        start = self._rng.randrange(n)
        for i in range(n):
            yield self._order[(start + i) % n]

    def candidates(self, req: Request, now: float) -> list[Host]:
        """Up to `sample` hosts that pass every filter, best first; [] when none does."""
        deadline = now - self.ttl_s
        if req.force_host is not None:
            pool: Iterator[Host] = iter([h] if (h := self.hosts.get(req.force_host)) else [])
        elif req.group_policy == "affinity" and req.group_hosts:
            pool = iter([h for n in req.group_hosts if (h := self.hosts.get(n))])
        else:
            pool = self._walk()
        found: list[Host] = []
        for host in pool:
            if first_rejection(host, req, deadline) is None:
                found.append(host)
                if len(found) >= self.sample:
                    break
        found.sort(key=lambda h: weigh(h, self.weigher), reverse=True)
        return found

    def rejections(self, req: Request, now: float) -> tuple[dict[str, int], list[Host]]:
        """Every host through the filters: how many each filter rejected, and those that pass."""
        deadline = now - self.ttl_s
        rejected = {name: 0 for name, _ in FILTERS}
        passing: list[Host] = []
        for host in self._order:
            name = first_rejection(host, req, deadline)
            if name is None:
                passing.append(host)
            else:
                rejected[name] += 1
        passing.sort(key=lambda h: weigh(h, self.weigher), reverse=True)
        return rejected, passing
