"""The import layers, read from the source with `ast`, so that nothing is imported to check them.

    protocol/   imports nothing of the project but itself
    actors/X/   imports protocol, fabric and actors.X, never another actor package
    fabric/     imports no actor, except fabric/compose.py, the composition root
                (fabric/cli.py reaches the actors only through compose)
    nothing     of the product imports the tests

Every import counts: at module level, inside a function, under `TYPE_CHECKING`, relative or
absolute, and `importlib.import_module("...")` / `__import__("...")` with a literal name.
"""

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("protocol", "fabric", "actors", "bench", "tests")
PRODUCT = ("protocol", "fabric", "actors", "bench")
COMPOSITION_ROOT = "fabric.compose"


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name of the importing file
    path: str  # the file, relative to the repository
    line: int
    module: str  # dotted name imported

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.module}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(source: str, importer: str, path: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every module `source` imports, resolved to absolute dotted names."""
    package = importer if is_package else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join([*base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            # `from actors import identity` imports the package actors.identity.
            for alias in node.names:
                yield Import(
                    importer, path, node.lineno, f"{stem}.{alias.name}" if alias.name != "*" else stem
                )
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                yield Import(importer, path, node.lineno, node.args[0].value)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def all_imports() -> list[Import]:
    found = []
    for top in PROJECT:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            found += imports_in(
                path.read_text(), module_name(path), rel, is_package=path.name == "__init__.py"
            )
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def actor_package(module: str) -> str | None:
    """`actors.identity.sql` -> `identity`; `actors` itself -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "actors" and len(parts) > 1 else None


def violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        src, dst = top(imp.importer), top(imp.module)
        if dst not in PROJECT:
            continue  # the standard library and third parties are not layers
        if src == "protocol" and dst != "protocol":
            bad.append(f"{imp}: protocol imports nothing of the project")
        elif src == "actors" and dst not in ("protocol", "fabric", "actors"):
            bad.append(f"{imp}: an actor imports only protocol, fabric and its own package")
        elif src == "actors" and dst == "actors":
            own, other = actor_package(imp.importer), actor_package(imp.module)
            if own is None or other != own:
                bad.append(f"{imp}: an actor never imports another actor package")
        elif src == "fabric" and dst == "actors" and imp.importer != COMPOSITION_ROOT:
            bad.append(f"{imp}: only {COMPOSITION_ROOT} knows the actors")
        if src in PRODUCT and dst == "tests":
            bad.append(f"{imp}: the product never imports the tests")
    return bad


# --- the rule, on this repository ----------------------------------------------------------


IMPORTS = all_imports()


def test_the_scan_sees_the_imports_the_rule_is_about() -> None:
    """Guards against a scan that finds nothing and so passes vacuously."""
    seen = {(imp.importer, imp.module) for imp in IMPORTS}
    assert ("fabric.compose", "actors.identity.actor.Identity") in seen
    assert ("protocol.wire", "protocol.codec.decode") in seen
    assert any(imp.importer.startswith("actors.identity") and top(imp.module) == "fabric" for imp in IMPORTS)
    assert len({imp.path for imp in IMPORTS}) > 20


@pytest.mark.parametrize("layer", PRODUCT)
def test_each_layer_keeps_to_its_imports(layer: str) -> None:
    found = violations([imp for imp in IMPORTS if top(imp.importer) == layer])
    assert not found, "layer violations:\n" + "\n".join(found)


def test_the_cli_reaches_the_actors_only_through_compose() -> None:
    cli = [imp for imp in IMPORTS if imp.importer == "fabric.cli"]
    assert cli, "fabric/cli.py is gone: drop or update this test"
    assert not [imp for imp in cli if top(imp.module) == "actors"]
    assert any(imp.module.startswith(COMPOSITION_ROOT) for imp in cli)


# --- the checker itself --------------------------------------------------------------------


def check(source: str, importer: str, *, is_package: bool = False) -> list[str]:
    path = importer.replace(".", "/") + ("/__init__.py" if is_package else ".py")
    return violations(list(imports_in(source, importer, path, is_package=is_package)))


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("protocol.identity", "from fabric.store import Store"),
        ("protocol.identity", "def f():\n    import actors.identity"),
        ("protocol.identity", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import bench.rpc"),
        ("actors.identity.actor", "from actors.compute import sql"),
        ("actors.identity.actor", "from actors import compute"),
        ("actors.identity.actor", "from ..compute.sql import X"),
        ("actors.identity.actor", "import bench.rpc"),
        ("actors.identity.actor", "import importlib\nimportlib.import_module('actors.compute.actor')"),
        ("fabric.gateway.app", "from actors.identity.actor import Identity"),
        ("fabric.cli", "def main():\n    from actors.identity import actor"),
        ("fabric.bus.core", "__import__('actors.identity')"),
        ("fabric.store", "from tests.support import free_port"),
    ],
)
def test_the_checker_flags(importer: str, source: str) -> None:
    assert check(source, importer)


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("protocol.wire", "from protocol.codec import decode\nimport orjson"),
        ("protocol.wire", "from .codec import decode\nfrom . import errors"),
        ("actors.identity.actor", "from actors.identity import sql\nfrom fabric.store import Store"),
        ("actors.identity.actor", "from . import sql\nfrom .auth import authenticate"),
        ("actors.identity.actor", "from protocol.identity import Grant\nimport asyncpg"),
        ("fabric.compose", "from actors.identity.actor import Identity"),
        ("fabric.cli", "def main():\n    from fabric import compose"),
    ],
)
def test_the_checker_allows(importer: str, source: str) -> None:
    assert check(source, importer) == []


def test_relative_imports_resolve_from_the_package() -> None:
    mods = [
        i.module for i in imports_in("from . import sql\nfrom ..x import y", "actors.identity.actor", "a.py")
    ]
    assert mods == ["actors.identity.sql", "actors.x.y"]
    mods = [i.module for i in imports_in("from . import sql", "actors.identity", "a.py", is_package=True)]
    assert mods == ["actors.identity.sql"]
