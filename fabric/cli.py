"""`fabric`: up, service NAME, bootstrap, db migrate."""

import argparse
import sys
from pathlib import Path

import uvloop

from fabric.config import load_settings
from fabric.logs import setup_logging
from protocol.errors import Invalid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fabric", description="A small, fast, real cloud fabric.")
    parser.add_argument(
        "--config", help="TOML settings file (default: $FABRIC_CONFIG or /etc/fabric/fabric.toml)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole cloud in this process, in the foreground")
    up.add_argument(
        "--openrc", default="./admin-openrc", help="where to write the admin openrc (default ./admin-openrc)"
    )
    up.add_argument("--port", type=int, help="gateway port (default from settings: 8080)")
    up.add_argument("--fake-hosts", type=int, help="also run N simulated compute hosts (fake driver)")
    up.add_argument("--driver", choices=("libvirt", "fake", "none"), help="this machine's compute driver")

    from fabric.compose import SERVICES

    service = commands.add_parser("service", help="run one service as its own process")
    service.add_argument("name", choices=SERVICES)
    service.add_argument("--port", type=int, help="gateway port, for `service gateway`")
    service.add_argument("--metrics-port", type=int, help="serve /metrics and /healthz on this port")
    service.add_argument(
        "--host", help="compute-agent, network-agent, volume-agent: the host's name (default: this machine's)"
    )
    service.add_argument("--driver", choices=("libvirt", "fake"), help="compute-agent: the virt driver")
    service.add_argument("--fake-hosts", type=int, help="compute-agent: run N simulated hosts instead")
    service.add_argument(
        "--backend", choices=("file", "fake"), help="volume-agent: qcow2 files (default) or in memory"
    )

    commands.add_parser("bootstrap", help="create the admin user, project, roles and catalog (idempotent)")
    db = commands.add_parser("db", help="database commands")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("migrate", help="create the database if needed and apply every migration")

    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            args.config,
            gateway_port=getattr(args, "port", None),
            metrics_port=getattr(args, "metrics_port", None),
            compute_host=getattr(args, "host", None),
            compute_driver=getattr(args, "driver", None),
            fake_hosts=getattr(args, "fake_hosts", None),
            volume_host=getattr(args, "host", None),
            volume_backend=getattr(args, "backend", None),
        )
    except Invalid as exc:
        print(f"fabric: bad setting: {exc.message}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    return uvloop.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings) -> int:  # type: ignore[no-untyped-def]
    from fabric import compose

    if args.command == "up":
        await compose.run_up(settings, Path(args.openrc))
    elif args.command == "service":
        await compose.run_service(args.name, settings)
    elif args.command == "bootstrap":
        settings = settings.with_admin_password()
        done = await compose.run_bootstrap(settings)
        print(
            f"admin user {settings.admin_user} ({done.user_id}), project {settings.admin_project} "
            f"({done.project_id}); password in {settings.state_path / 'admin-password'}"
            if not settings.admin_password
            else f"admin user {settings.admin_user} ready"
        )
    elif args.command == "db":
        applied = await compose.migrate_all(settings)
        print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
