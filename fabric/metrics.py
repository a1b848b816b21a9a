"""Prometheus metrics of the runtime, one registry per process (prometheus-client's default)."""

from prometheus_client import Counter, Histogram

MESSAGES_HANDLED = Counter(
    "fabric_messages_handled_total",
    "Messages handled by actors, by queue, message type and outcome.",
    ["queue", "type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "fabric_handler_seconds",
    "Time spent in message handlers.",
    ["queue", "type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REDELIVERIES = Counter("fabric_redeliveries_total", "Envelopes delivered again after a failure.", ["queue"])
DEAD_LETTERED = Counter(
    "fabric_dead_lettered_total", "Envelopes sent to a dead-letter queue.", ["queue", "reason"]
)
LATE_REPLIES = Counter("fabric_late_replies_total", "Replies that arrived after their caller had given up.")
FRAMES_SENT = Counter(
    "fabric_frames_sent_total", "AMQP messages sent (each carries one or more envelopes).", ["kind"]
)
ENVELOPES_SENT = Counter("fabric_envelopes_sent_total", "Envelopes sent.", ["kind"])
HTTP_REQUESTS = Counter(
    "fabric_http_requests_total", "Gateway requests by route and status.", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "fabric_http_request_seconds",
    "Gateway request latency by route.",
    ["route", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
