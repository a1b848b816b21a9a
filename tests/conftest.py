"""Session-wide real infrastructure: a PostgreSQL database and a RabbitMQ vhost of our own,
so that the suite never touches a running cloud's state, and is gone when the suite ends."""

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvloop

from fabric.client import Client
from fabric.compose import Cloud
from fabric.config import Settings
from fabric.store import drop_database, ensure_database
from tests.support import (
    ADMIN_PASSWORD,
    IMAGE_QUOTA_BYTES,
    base_settings,
    can_manage_rabbitmq,
    free_port,
    rabbitmq_vhost,
    with_database,
    with_vhost,
)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(why)
    with rabbitmq_vhost() as vhost:
        yield with_vhost(base_settings().amqp_url, vhost)


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    dsn = with_database(base_settings().database_url, f"fabric_test_{__import__('os').getpid()}")
    await drop_database(dsn)
    await ensure_database(dsn)
    yield dsn
    await drop_database(dsn)


@pytest.fixture(scope="session")
def settings(amqp_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the test cloud: own database and vhost, cheap password hashes."""
    return dataclasses.replace(
        base_settings(),
        database_url=database_url,
        amqp_url=amqp_url,
        password_hash_cost="minimal",
        admin_password=ADMIN_PASSWORD,
        gateway_port=free_port(),
        public_url="",
        state_dir=str(tmp_path_factory.mktemp("state")),
        image_quota_bytes=IMAGE_QUOTA_BYTES,
        # Compute: this process's own host and three simulated ones, all on the fake driver
        # (the libvirt driver has its own tests), reporting often so tests need not wait.
        compute_driver="fake",
        compute_host="itest-host",
        fake_hosts=3,
        # Only the test that needs real plumbing runs a network agent: an agent owns every
        # bridge and namespace of the fabric's naming on the machine.
        network_agent=False,
        volume_backend="fake",
        capacity_report_interval_s=1.0,
        # The cloud's PowerDNS on a port of its own: suites and clouds run side by side.
        dns_port=free_port(),
    )


@pytest.fixture(scope="session")
async def cloud(settings: Settings) -> AsyncIterator[Cloud]:
    """Identity and the gateway, in this process, on the real RabbitMQ and PostgreSQL."""
    async with Cloud(settings) as running:
        yield running


@pytest.fixture
async def admin(cloud: Cloud) -> AsyncIterator[Client]:
    async with Client.for_admin(cloud.settings) as client:
        yield client


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    return tmp_path
