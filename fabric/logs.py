"""Structured logs: one JSON line per event, carrying the request id and the actor.

The request id and actor live in context variables that the gateway (per HTTP request) and the
bus (per handled message) set, so every line logged while serving a request names it without
threading it through every call.
"""

import logging
import sys
import time
from contextvars import ContextVar

import orjson

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
actor_var: ContextVar[str | None] = ContextVar("actor", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            line["request_id"] = request_id
        actor = actor_var.get()
        if actor:
            line["actor"] = actor
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


#: Libraries held at WARNING whatever the level: aio-pika and aiormq narrate every reconnect at
#: INFO and dump whole AMQP frames at DEBUG, and frames carry message bodies (passwords too).
QUIET_LIBRARIES = ("aio_pika", "aiormq", "aiohttp.access")


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.Formatter.converter = time.gmtime
