"""`bench rpc`: bus `call` round trips per second over the real RabbitMQ.

The caller (this process) and the echo service (`bench.rpc_server`, a child process) each have
their own interpreter and their own AMQP connection, as an actor and its callers do in a
deployment. N workers each `await bus.call(queue, Echo(...))` in a closed loop; each call is a
full round trip: envelope encoded, published, routed by the broker, decoded and handled by the
service, its reply sent through direct reply-to, decoded and matched to the waiting future.

The run gets a private vhost when the broker is local and we may manage it (and always a
queue name of its own), and leaves nothing behind.
"""

import logging
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from bench import cpu, report
from bench.child import ChildFailed, child, tail
from bench.loop import Operation, closed_loop
from bench.rabbit import private_vhost, why_no_vhost
from bench.rpc_server import READY
from fabric.bus import Bus
from fabric.bus.amqp import AmqpTransport
from protocol.envelope import Context
from protocol.system import Echo, Echoed

log = logging.getLogger("bench")

CALL_TIMEOUT_S = 10.0


class WrongReply(Exception):
    kind = "wrong_reply"


async def run(
    *, amqp_url: str, concurrency: int, seconds: float, warmup_s: float, payload_bytes: int, prefetch: int
) -> dict[str, Any]:
    load_before = report.load_average()
    with ExitStack() as stack:
        why = why_no_vhost(amqp_url)
        if why is None:
            amqp_url = stack.enter_context(private_vhost(amqp_url))
        else:
            log.warning("no private vhost (%s); using a queue of our own on the given vhost", why)
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rpc-")))
        queue = f"bench-echo-{uuid.uuid4().hex[:8]}"
        server_args = [sys.executable, "-m", "bench.rpc_server", "--amqp-url", amqp_url]
        server_args += ["--queue", queue, "--prefetch", str(prefetch)]
        bus = Bus(AmqpTransport(amqp_url, name="bench-rpc-client"))
        await bus.start()
        try:
            async with child("rpc_server", server_args, ready=READY, log_path=logs / "server.log") as server:
                measured = await closed_loop(
                    lambda i: _caller(bus, queue, i, payload_bytes),
                    concurrency=concurrency,
                    seconds=seconds,
                    warmup_s=warmup_s,
                    probe=lambda: {**_frames_sent(), **cpu.sample({"server": server.pid})},
                )
        except ChildFailed:
            log.error("the echo server failed; its log:\n%s", tail(logs / "server.log"))
            raise
        finally:
            if why is not None:
                await bus.transport.delete_queue(queue)
            await bus.close(drain_s=1.0)
    frames = measured.counted.get("request_frames", 0.0)
    return report.build(
        "rpc",
        measured,
        load_before,
        calls_per_frame=round(measured.counted.get("request_envelopes", 0.0) / frames, 1) if frames else None,
        payload_bytes=payload_bytes,
        server_prefetch=prefetch,
        transport="amqp",
    )


def _frames_sent() -> dict[str, float]:
    """The bus's own counters: how many calls travelled per AMQP message (coalescing)."""
    get = REGISTRY.get_sample_value
    return {
        "request_frames": get("fabric_frames_sent_total", {"kind": "request"}) or 0.0,
        "request_envelopes": get("fabric_envelopes_sent_total", {"kind": "request"}) or 0.0,
    }


def _caller(bus: Bus, queue: str, worker: int, payload_bytes: int) -> Operation:
    message = Echo(payload="x" * payload_bytes)
    # One request id per worker (a failed call's log lines name its worker), but a context per
    # call with its own deadline, as the gateway makes one per HTTP request.
    request_id = f"bench-rpc-{worker}"

    async def call() -> None:
        ctx = Context(request_id=request_id, deadline=time.time() + CALL_TIMEOUT_S)
        reply = await bus.call(queue, message, ctx, timeout_s=CALL_TIMEOUT_S)
        if not isinstance(reply, Echoed) or reply.payload != message.payload:
            raise WrongReply(repr(reply)[:200])

    return call
