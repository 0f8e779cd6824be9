"""mq, the small message broker, from Python.

``mq.Client.connect("127.0.0.1:9800")`` talks to an ``mq-server``;
``mq.Client.embedded()`` runs the broker inside this process. Both have the same methods:
producers, consumers, and the admin calls. ``mq.aio`` is the same API for asyncio.
Every error is an :class:`mq.Error`.
"""

from mq._mq import Client, Consumer, Delivery, Message, Producer, __version__
from mq.errors import *  # noqa: F401,F403
from mq.errors import __all__ as _errors

__all__ = ["Client", "Producer", "Consumer", "Delivery", "Message", "__version__", *_errors]
