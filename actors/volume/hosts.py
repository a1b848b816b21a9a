"""Where a new volume goes: the storage hosts heard from, and Cinder's choice among them.

Every replica of the volume service hears every `VolumeHostReport` and keeps this view in
memory, so that placing a volume reads no database. A host is a candidate while its reports
keep coming (`ttl_s`); it must run the backend the volume type names (`volume_backend_name`;
no such spec: any backend), be in the zone asked for (none asked: the default zone) and have room; the
one with the most room wins (Cinder's CapacityFilter and CapacityWeigher). Files are thin
(qcow2), so room is the free space times `over_subscription_ratio` (Cinder's
`max_over_subscription_ratio`), less what this replica placed there since the host's last
report, which keeps a burst of creates from all landing on one host.
"""

from dataclasses import dataclass

from protocol.volume_agent import VolumeHostReport

#: Cinder's words when no host can take a volume; the volume goes to `error` with them.
NO_VALID_BACKEND = "No valid backend was found."


@dataclass(slots=True)
class StorageHost:
    name: str
    backend: str
    queue: str
    availability_zone: str
    total_gb: int
    free_gb: int
    #: When its last report was heard (time.monotonic()).
    seen_at: float
    #: Gigabytes placed here by this replica since that report.
    placed_gb: int = 0


class HostView:
    def __init__(self, *, ttl_s: float, over_subscription_ratio: float) -> None:
        self.ttl_s = ttl_s
        self.ratio = over_subscription_ratio
        self.hosts: dict[str, StorageHost] = {}

    def heard(self, report: VolumeHostReport, now: float) -> None:
        """A report replaces what we knew of its host (and what we placed there since)."""
        self.hosts[report.host] = StorageHost(
            name=report.host,
            backend=report.backend,
            queue=report.queue,
            availability_zone=report.availability_zone,
            total_gb=report.total_gb,
            free_gb=report.free_gb,
            seen_at=now,
        )

    def learn(self, host: StorageHost) -> None:
        """A host read from the database: kept unless a fresher report was heard."""
        known = self.hosts.get(host.name)
        if known is None or known.seen_at < host.seen_at:
            self.hosts[host.name] = host

    def room_gb(self, host: StorageHost) -> float:
        return host.free_gb * self.ratio - host.placed_gb

    def zones(self) -> set[str]:
        """Every zone a host was heard in, live or not: what a requested zone is checked against."""
        return {h.availability_zone for h in self.hosts.values()}

    def pick(self, size_gb: int, *, backend: str | None, zone: str | None, now: float) -> StorageHost | None:
        """The live host with the most room that fits; None when there is none."""
        best: StorageHost | None = None
        for host in self.hosts.values():
            if now - host.seen_at > self.ttl_s:
                continue
            if backend is not None and host.backend != backend:
                continue
            if zone is not None and host.availability_zone != zone:
                continue
            room = self.room_gb(host)
            if size_gb > room:
                continue
            if best is None or (room, best.name) > (self.room_gb(best), host.name):
                best = host
        return best

    def place(self, host: StorageHost, size_gb: int) -> None:
        host.placed_gb += size_gb

    def unplace(self, name: str, size_gb: int) -> None:
        """A placement that did not happen after all (its create failed)."""
        host = self.hosts.get(name)
        if host is not None:
            host.placed_gb = max(0, host.placed_gb - size_gb)
