"""The far side of `bench rpc`: an echo service on a real bus, in a process of its own.

    python -m bench.rpc_server --amqp-url URL --queue NAME [--prefetch 64]

It serves `Echo` -> `Echoed` through `Bus.serve`, the path every actor's queue takes (decode,
deadline check, handler, reply coalescing), prints `ready` once it consumes, and runs until
SIGTERM or SIGINT, then drains and disconnects.
"""

import argparse
import asyncio
import logging
import signal
import sys

import uvloop

from fabric.bus import Bus
from fabric.bus.amqp import AmqpTransport
from protocol.envelope import Context
from protocol.system import Echo, Echoed

READY = "ready"


async def echo(msg: Echo, _: Context) -> Echoed:
    return Echoed(payload=msg.payload)


async def serve(amqp_url: str, queue: str, prefetch: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bus = Bus(AmqpTransport(amqp_url, name="bench-rpc-server"))
    await bus.start()
    try:
        await bus.serve(queue, echo, prefetch=prefetch)
        print(READY, flush=True)
        await stop.wait()
    finally:
        await bus.close(drain_s=2.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.rpc_server", description=__doc__.split("\n")[0])
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--prefetch", type=int, default=64, help="envelopes handled at once (default 64)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    uvloop.run(serve(args.amqp_url, args.queue, args.prefetch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
