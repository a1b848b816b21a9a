"""Fixtures the system tests share."""

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fabric.compose import Cloud
from fabric.config import Settings


@pytest.fixture
def compute_dir() -> Iterator[Path]:
    """A compute agent's directory that qemu's own user can reach (pytest's tmp dirs are private
    to root), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="fabric-system-test-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def web_cloud(settings: Settings, compute_dir: Path, tmp_path: Path) -> AsyncIterator[Cloud]:
    """A cloud with this machine's libvirt host and network agent (`guest_network.py`)."""
    from tests.system.guest_network import networked_cloud

    async with networked_cloud(settings, compute_dir, tmp_path) as running:
        yield running
