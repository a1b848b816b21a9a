"""A private RabbitMQ vhost for one benchmark run, made and removed with rabbitmqctl.

A run on its own vhost cannot disturb (or be disturbed by) a cloud or a test suite using the
same broker, and deleting the vhost afterwards removes every queue the run left behind.
rabbitmqctl manages the local node only, so this is for a broker on this machine.
"""

import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("bench")

RABBITMQCTL = Path("/usr/sbin/rabbitmqctl")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def rabbitmqctl_path() -> str | None:
    return shutil.which("rabbitmqctl") or (str(RABBITMQCTL) if RABBITMQCTL.exists() else None)


def why_no_vhost(amqp_url: str) -> str | None:
    """None when a private vhost can be made for a broker at `amqp_url`; otherwise why not."""
    if urlsplit(amqp_url).hostname not in LOCAL_HOSTS:
        return "the broker is not on this machine (rabbitmqctl manages the local node only)"
    if rabbitmqctl_path() is None:
        return "rabbitmqctl is not installed"
    if os.geteuid() != 0:
        return "rabbitmqctl needs root"
    return None


def rabbitmqctl(*args: str) -> None:
    exe = rabbitmqctl_path()
    if exe is None:
        raise RuntimeError("rabbitmqctl is not installed")
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=60)


def with_vhost(amqp_url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(amqp_url)._replace(path=f"/{vhost}"))


@contextmanager
def private_vhost(amqp_url: str, prefix: str = "fabric-bench") -> Iterator[str]:
    """The URL of a new vhost on the broker of `amqp_url`, deleted on the way out."""
    user = urlsplit(amqp_url).username or "guest"
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        log.info("made RabbitMQ vhost %s", vhost)
        yield with_vhost(amqp_url, vhost)
    finally:
        rabbitmqctl("delete_vhost", vhost)
        log.info("deleted RabbitMQ vhost %s", vhost)
