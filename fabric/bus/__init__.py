"""One bus interface (`Bus`), over AMQP or in memory."""

from fabric.bus.core import Bus, Consumer, Handler

__all__ = ["Bus", "Consumer", "Handler"]
