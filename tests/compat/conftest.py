from collections.abc import AsyncIterator

import pytest

from tests.compat.cli_forks import Forks


@pytest.fixture(scope="session")
async def openstack_forks() -> AsyncIterator[Forks]:
    """One warm `openstack` CLI for every compatibility test (started at its first command)."""
    forks = Forks()
    yield forks
    await forks.close()
