"""nftables tables the agent owns, replaced whole and only when they differ.

A table is rendered as nft text and loaded with `nft -f -` in one transaction (declare, delete,
define: the new rules replace the old atomically, with no moment without them). Its comment
carries a digest of what was rendered, so that a converge can tell an up-to-date table from
`nft -j list ruleset` and one text listing, without parsing rules back: the table is loaded again
when the digest differs, or when its count of chains or rules is not what was rendered (a rule
deleted or added by hand). A rule changed in place by hand keeps the digest and is not noticed.
"""

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from actors.network_agent.commands import run

COMMENT = re.compile(r'^\s*comment "fabric ([0-9a-f]+)"', re.M)


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    rules: tuple[str, ...]
    #: For a base chain: "type filter hook forward priority 10; policy accept;".
    hook: str | None = None


@dataclass(frozen=True, slots=True)
class Table:
    family: str
    name: str
    chains: tuple[Chain, ...]

    @property
    def key(self) -> tuple[str, str]:
        return self.family, self.name

    def body(self) -> str:
        lines = []
        for chain in self.chains:
            lines.append(f"\tchain {chain.name} {{")
            if chain.hook:
                lines.append(f"\t\t{chain.hook}")
            lines += [f"\t\t{rule}" for rule in chain.rules]
            lines.append("\t}")
        return "\n".join(lines)

    def digest(self) -> str:
        return hashlib.sha256(f"{self.family} {self.name}\n{self.body()}".encode()).hexdigest()[:16]

    def render(self) -> str:
        return f'table {self.family} {self.name} {{\n\tcomment "fabric {self.digest()}"\n{self.body()}\n}}\n'

    def counts(self) -> tuple[int, int]:
        return len(self.chains), sum(len(chain.rules) for chain in self.chains)


def _counts(ruleset: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(chains, rules) of each table in a `nft -j list ruleset`."""
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for item in ruleset:
        kind, body = next(iter(item.items()))
        if kind == "table":
            counts[(body["family"], body["name"])] = (0, 0)
        elif kind in ("chain", "rule"):
            key = (body["family"], body["table"])
            chains, rules = counts.get(key, (0, 0))
            counts[key] = (chains + 1, rules) if kind == "chain" else (chains, rules + 1)
    return counts


async def ensure_tables(namespace: str | None, wanted: dict[tuple[str, str], Table | None]) -> list[str]:
    """Make each (family, name) in `wanted` exactly its Table, or absent for None, in `namespace`
    (None: the root namespace). Returns what was changed."""
    listing = orjson.loads(await run("nft", "-j", "list", "ruleset", namespace=namespace))
    present = _counts(listing["nftables"])
    where = f" in {namespace}" if namespace else ""
    script: list[str] = []
    actions: list[str] = []
    for key, table in wanted.items():
        family, name = key
        if table is None:
            if key in present:
                script.append(f"delete table {family} {name}")
                actions.append(f"removed nft table {family} {name}{where}")
            continue
        if key in present:
            if present[key] == table.counts():
                text = await run("nft", "-t", "list", "table", family, name, namespace=namespace)
                found = COMMENT.search(text)
                if found and found.group(1) == table.digest():
                    continue
            script.append(f"delete table {family} {name}")
            actions.append(f"replaced nft table {family} {name}{where}")
        else:
            actions.append(f"created nft table {family} {name}{where}")
        script.append(table.render())
    if script:
        await run("nft", "-f", "-", stdin="\n".join(script), namespace=namespace)
    return actions
