"""`python -m bench rpc|tokens|boot|place|ports|volumes|dns|dashboard|webpage ...`: run one benchmark,
print a table or one JSON object.

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

    volumes = commands.add_parser(
        "volumes", help="volume creates, and attach+detach pairs, per second (fake volume backend)"
    )
    volumes.add_argument(
        "--count", type=_positive(int), default=2000, help="volumes to create (default 2000)"
    )
    volumes.add_argument(
        "--concurrency", type=_positive(int), default=64, help="creates in flight (default 64)"
    )
    volumes.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    volumes.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    dns = commands.add_parser(
        "dns", help="recordset creates per second, and each one's time until PowerDNS answers it"
    )
    dns.add_argument("--zones", type=_positive(int), default=10, help="zones to spread over (default 10)")
    dns.add_argument("--records", type=_positive(int), default=5000, help="recordsets (default 5000)")
    dns.add_argument("--concurrency", type=_positive(int), default=64, help="creates in flight (default 64)")
    dns.add_argument(
        "--query-records",
        type=int,
        default=0,
        help="then dnsperf against a zone of this many (default 0: no)",
    )
    dns.add_argument("--query-seconds", type=_positive(int), default=10, help="dnsperf's run (default 10)")
    dns.add_argument(
        "--layout", choices=("up", "split"), default="up",
        help="one `fabric up`, or PowerDNS, the DNS service and the gateway in processes of their own",
    )  # fmt: skip
    dns.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    dns.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    dashboard = commands.add_parser(
        "dashboard", help="servers and fleet pages under concurrent sessions; ACTIVE to the live stream"
    )
    dashboard.add_argument("--servers", type=_positive(int), default=1000, help="servers (default 1000)")
    dashboard.add_argument(
        "--hosts", type=_positive(int), default=1000, help="simulated hosts (default 1000)"
    )
    dashboard.add_argument(
        "--users", type=_positive(int), default=16, help="signed-in sessions in a closed loop (default 16)"
    )
    dashboard.add_argument(
        "--seconds", type=_positive(float), default=10.0, help="measured window (default 10)"
    )
    dashboard.add_argument(
        "--warmup", type=float, default=2.0, help="seconds run before measuring (default 2)"
    )
    dashboard.add_argument(
        "--think-ms", type=float, default=0.0, help="each user's mean pause after a page (default 0)"
    )
    dashboard.add_argument(
        "--events",
        type=_positive(int),
        default=20,
        help="servers booted with a live stream open (default 20)",
    )
    dashboard.add_argument(
        "--layout", choices=("up", "split"), default="up",
        help="one `fabric up`, or the gateway, each service and the fleet in processes of their own",
    )  # fmt: skip
    dashboard.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    dashboard.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    webpage = commands.add_parser(
        "webpage", help="server create to its page through a floating IP, beside the guest's own boot"
    )
    webpage.add_argument("--iterations", type=_positive(int), default=3, help="runs of each (default 3)")
    webpage.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    webpage.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    run = commands.add_parser(
        "run", help="a scenario (bench/scenarios/*.toml) against a cloud, with a report"
    )
    run.add_argument("scenario", help="a scenario's name (bench/scenarios) or a path to a .toml file")
    run.add_argument("--concurrency", type=_positive(int), help="closed loop: iterations in flight")
    run.add_argument("--rate", type=_positive(float), help="open loop: iterations started per second")
    run.add_argument("--iterations", type=_positive(int), help="stop after this many iterations")
    run.add_argument("--duration", type=_positive(float), help="or: start iterations for this many seconds")
    run.add_argument("--max-seconds", type=_positive(float), help="hard bound on the run (default: generous)")
    run.add_argument(
        "--max-in-flight", type=_positive(int), default=1000, help="open loop's cap (default 1000)"
    )
    run.add_argument(
        "--target", default="own", help="own (default: start a fabric), env (OS_*), or a clouds.yaml cloud"
    )
    run.add_argument("--hosts", type=int, help="own target: simulated hosts (fake driver) for boots")
    run.add_argument("--host-shapes", default="", help="own target: VCPUS:RAM_MB:DISK_GB[,...] in turn")
    run.add_argument("--spawn-latency", type=float, default=0.0, help="own target: seconds per fake spawn")
    run.add_argument(
        "--failure-rate", type=float, default=0.0, help="own target: fraction of spawns that fail"
    )
    run.add_argument("--seed", type=int, default=1, help="replays injected failures and the mix (default 1)")
    run.add_argument(
        "--layout",
        choices=("one", "split"),
        default="one",
        help="own target: `fabric up` (one process, default) or each actor in its own process",
    )
    run.add_argument("--hash-cost", choices=("production", "minimal"), default="production",
                     help="own target: password hashing (default production)")  # fmt: skip
    run.add_argument("--image", help="boot this image (default: a 4 KiB one made for the run)")
    run.add_argument("--flavor", help="boot this flavor (default: the smallest)")
    run.add_argument("--network", help="boot on this network (default: none given)")
    run.add_argument("--image-kib", type=_positive(int), default=1024, help="image-upload-download size")
    run.add_argument("--save", help="also write the JSON result to this file")
    run.add_argument("--report", help="also write an HTML report (plots inline) to this file")
    run.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    run.add_argument("-v", "--verbose", action="store_true", help="log on stderr")

    compare = commands.add_parser("compare", help="a ratio table of two saved results (B/A)")
    compare.add_argument("results", nargs=2, metavar="RESULT.json")
    compare.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    compare.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
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
    if args.command == "compare":
        from bench import compare

        return compare.main(args.results, as_json=args.json)
    if args.command == "run":
        from bench import run
        from bench.scenarios import BadScenario
        from bench.target import BadTarget

        try:
            result = uvloop.run(run.run(args, settings))
        except (BadScenario, BadTarget) as exc:
            print(f"bench run: {exc}", file=sys.stderr)
            return 2
        report.emit(result, as_json=args.json)
        return 1 if result["errors"] or result["invariant_violations"] else 0
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
    elif args.command == "volumes":
        from bench import volumes

        result = uvloop.run(volumes.run(args, settings))
    elif args.command == "dns":
        from bench import dns

        result = uvloop.run(dns.run(args, settings))
    elif args.command == "dashboard":
        from bench import dashboard

        result = uvloop.run(dashboard.run(args, settings))
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
