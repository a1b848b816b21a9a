"""`python -m bench rpc|tokens|boot|place|ports|webpage ...`: run one benchmark, print a table
or one JSON object.

With `--json`, stdout carries exactly one JSON object and everything else (progress, warnings,
a child's log tail) goes to stderr, so the output can be piped straight into a tool.
"""

import argparse
import logging
import sys
from typing import Any

import uvloop

from bench import report
from fabric.config import load_settings
from protocol.errors import Invalid


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench", description="Load benchmarks of the fabric.")
    commands = top.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, concurrency: int) -> None:
        p.add_argument(
            "--concurrency",
            type=_positive(int),
            default=concurrency,
            help=f"closed-loop workers (default {concurrency})",
        )
        p.add_argument("--seconds", type=_positive(float), default=10.0, help="measured window (default 10)")
        p.add_argument("--warmup", type=float, default=2.0, help="seconds run before measuring (default 2)")
        p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    rpc = commands.add_parser("rpc", help="bus call round trips per second over RabbitMQ")
    common(rpc, 64)
    rpc.add_argument("--amqp-url", help="broker (default: the fabric settings' amqp_url)")
    rpc.add_argument("--payload-bytes", type=int, default=32, help="Echo payload size (default 32)")
    rpc.add_argument("--prefetch", type=_positive(int), default=64, help="server prefetch (default 64)")

    tokens = commands.add_parser("tokens", help="token validations or issues per second via the gateway")
    common(tokens, 32)
    tokens.add_argument(
        "--op", choices=("validate", "issue"), default="validate", help="what to measure (default validate)"
    )
    tokens.add_argument("--url", help="an existing gateway (default: start a fabric of our own)")
    tokens.add_argument("--username", help="with --url (default $OS_USERNAME)")
    tokens.add_argument("--password", help="with --url (default $OS_PASSWORD)")
    tokens.add_argument("--project", help="with --url (default $OS_PROJECT_NAME)")
    tokens.add_argument(
        "--hash-cost",
        choices=("production", "minimal"),
        default="production",
        help="password hashing of the fabric we start (default production)",
    )
    tokens.add_argument(
        "--gateways",
        type=_positive(int),
        default=1,
        help="1: `fabric up` (default); N: identity and N gateway processes on one port",
    )
    tokens.add_argument("--nocatalog", action="store_true", help="ask for tokens without the catalog")
    tokens.add_argument(
        "--client",
        choices=("aiohttp", "raw"),
        default="aiohttp",
        help="load generator: aiohttp's client (default) or bench.http1's minimal one",
    )

    boot = commands.add_parser("boot", help="servers booted end to end through the gateway on fake hosts")
    boot.add_argument("--hosts", type=_positive(int), default=100, help="simulated hosts (default 100)")
    boot.add_argument("--servers", type=_positive(int), default=500, help="servers to boot (default 500)")
    boot.add_argument(
        "--concurrency", type=_positive(int), default=64, help="closed-loop workers (default 64)"
    )
    boot.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    boot.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    place = commands.add_parser("place", help="placements per second by the scheduler alone")
    place.add_argument("--hosts", type=_positive(int), default=1000, help="simulated hosts (default 1000)")
    place.add_argument("--schedulers", type=_positive(int), default=2, help="scheduler processes (default 2)")
    place.add_argument("--placements", type=_positive(int), default=10000, help="placements (default 10000)")
    place.add_argument(
        "--concurrency", type=_positive(int), default=256, help="calls in flight (default 256)"
    )
    place.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    place.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    ports = commands.add_parser("ports", help="ports created per second through the Network API")
    ports.add_argument("--ports", type=_positive(int), default=2000, help="ports to create (default 2000)")
    ports.add_argument(
        "--concurrency", type=_positive(int), default=32, help="requests in flight (default 32)"
    )
    ports.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ports.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    webpage = commands.add_parser(
        "webpage", help="server create to its page through a floating IP, beside the guest's own boot"
    )
    webpage.add_argument("--iterations", type=_positive(int), default=3, help="runs of each (default 3)")
    webpage.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    webpage.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or not args.json else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        settings = load_settings()
    except Invalid as exc:
        print(f"bench: bad fabric setting: {exc.message}", file=sys.stderr)
        return 2
    result: dict[str, Any]
    if args.command == "rpc":
        from bench import rpc

        result = uvloop.run(
            rpc.run(
                amqp_url=args.amqp_url or settings.amqp_url,
                concurrency=args.concurrency,
                seconds=args.seconds,
                warmup_s=args.warmup,
                payload_bytes=args.payload_bytes,
                prefetch=args.prefetch,
            )
        )
    elif args.command == "boot":
        from bench import boot

        result = uvloop.run(boot.run(args, settings))
    elif args.command == "ports":
        from bench import ports

        result = uvloop.run(ports.run(args, settings))
    elif args.command == "webpage":
        from bench import webpage

        result = uvloop.run(webpage.run(args, settings))
    elif args.command == "place":
        from bench import place

        result = uvloop.run(place.run(args, settings))
    else:
        from bench import tokens

        result = uvloop.run(tokens.run(args, settings))
    report.emit(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
