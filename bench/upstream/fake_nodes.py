"""nova-compute with nova's own fake driver, reporting many nodes (hypervisors) from one service.

Run it where nova-compute would be run, in the upstream venv, with the same arguments:

    UPSTREAM_NODES=100 python fake_nodes.py --config-file nova.conf

with `[DEFAULT] compute_driver = fake_nodes.ManyNodesDriver` in nova.conf. Nova loads its driver
as `nova.virt.<compute_driver>` and nowhere else, so this module registers itself under that name
before it hands over to nova-compute's own `main`; nova itself is not modified.

The driver is `nova.virt.fake.FakeDriver` (spawn and destroy are bookkeeping, each node reports
1000 VCPU, 800 GB of RAM and 600 TB of disk) with two changes:
- `init_host` reports `UPSTREAM_NODES` nodes, named `upstream-node-0000`...: the fake driver's
  `_set_nodes` hook, which nova's functional tests use for the same purpose;
- each node's uuid is derived from its name. The fake driver draws them from a uuid sentinel,
  new in each process, so a restarted nova-compute would see its nodes as new ones;
- `init_host` makes sure the host has its local node identity (`compute_id` in state_path), as
  the libvirt driver does at its first start: without it nova-compute refuses to start again
  ("No local node identity found, but this is not our first startup on this host").
"""

# nova-compute's first line, kept first: it settles the concurrency mode (native threads) before
# anything else of nova's is imported.
from nova import monkey_patch  # type: ignore[import-not-found]  # isort: skip

monkey_patch.patch(backend="threading")

import os  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

import nova.virt.node  # type: ignore[import-not-found]  # noqa: E402
from nova.virt import fake  # type: ignore[import-not-found]  # noqa: E402

NAMESPACE = uuid.UUID("6f1c9b8e-2d3a-4c5b-9e7f-0a1b2c3d4e5f")


def node_uuid(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


class ManyNodesDriver(fake.FakeDriver):  # type: ignore[misc]
    def init_host(self, host: str) -> None:
        super().init_host(host)
        nova.virt.node.get_local_node_uuid()  # reads compute_id, or writes a new one
        count = int(os.environ.get("UPSTREAM_NODES", "100"))
        self._set_nodes([f"upstream-node-{i:04d}" for i in range(count)])

    def get_available_resource(self, nodename: str) -> dict[str, Any]:
        status: dict[str, Any] = super().get_available_resource(nodename)
        if status:
            status["uuid"] = node_uuid(nodename)
        return status

    def get_nodenames_by_uuid(self, refresh: bool = False) -> dict[str, str]:
        return {node_uuid(n): n for n in self.get_available_nodes()}


if __name__ == "__main__":
    sys.modules["nova.virt.fake_nodes"] = sys.modules[__name__]
    from nova.cmd.compute import main  # type: ignore[import-not-found]

    sys.exit(main())
