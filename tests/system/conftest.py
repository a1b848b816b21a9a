"""Fixtures the system tests share."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def compute_dir() -> Iterator[Path]:
    """A compute agent's directory that qemu's own user can reach (pytest's tmp dirs are private
    to root), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="fabric-system-test-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)
