"""The asyncio API: the same names as :mod:`mq`, each call that talks to the broker a
coroutine. The work runs on the SDK's own threads, so the event loop never blocks.

.. code-block:: python

    import asyncio, mq.aio

    async def main():
        async with await mq.aio.Client.connect("127.0.0.1:9800") as client:
            producer = client.producer("orders")
            await producer.send(b"hello")
            async with await client.consumer("orders", "billing") as consumer:
                async for delivery in consumer:
                    print(delivery.payload)
                    await delivery.ack()
                    break

    asyncio.run(main())
"""

import inspect
import logging
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Union

from mq import _mq
from mq._mq import Message

Payload = Union[bytes, bytearray, str]

__all__ = ["Client", "Producer", "Consumer", "Delivery", "Message"]

_log = logging.getLogger("mq")


class Client:
    """A handle on a broker; made by :meth:`connect` or :meth:`embedded`."""

    __slots__ = ("_sync",)

    def __init__(self, sync: "_mq.Client") -> None:
        self._sync = sync

    @classmethod
    async def connect(
        cls,
        addr: str,
        token: Optional[str] = None,
        tls_ca: Optional[str] = None,
        **options: Any,
    ) -> "Client":
        """Connects to the ``mq-server`` at ``addr``; options as :meth:`mq.Client.connect`."""
        return cls(await _mq.Client.connect(addr, token, tls_ca, _aio=True, **options))

    @classmethod
    def embedded(cls, data_dir: Optional[str] = None, **options: Any) -> "Client":
        """A broker inside this process (memory, or files in ``data_dir``)."""
        return cls(_mq.Client.embedded(data_dir, **options))

    def producer(self, topic: str, **options: Any) -> "Producer":
        """A producer for ``topic``; options as :meth:`mq.Client.producer`."""
        return Producer(self._sync.producer(topic, **options))

    async def consumer(self, topic: str, group: Optional[str] = None, **options: Any) -> "Consumer":
        """A consumer of ``topic`` in ``group``; options as :meth:`mq.Client.consumer`."""
        return Consumer(await self._sync.consumer(topic, group, _aio=True, **options))

    async def create_topic(self, topic: str, **config: Any) -> None:
        """Creates ``topic``; settings as :meth:`mq.Client.create_topic`."""
        await self._sync.create_topic(topic, _aio=True, **config)

    async def topics(self) -> List[str]:
        """The names of the topics."""
        return await self._sync.topics(_aio=True)

    async def describe_topic(self, topic: str) -> Dict[str, Any]:
        """A topic's configuration and stats, with its groups."""
        return await self._sync.describe_topic(topic, _aio=True)

    async def delete_topic(self, topic: str) -> None:
        """Deletes a topic, its messages and its groups."""
        await self._sync.delete_topic(topic, _aio=True)

    async def purge_topic(self, topic: str) -> None:
        """Deletes every message of a topic."""
        await self._sync.purge_topic(topic, _aio=True)

    async def groups(self, topic: str) -> List[Dict[str, Any]]:
        """The stats of a topic's groups."""
        return await self._sync.groups(topic, _aio=True)

    async def describe_group(self, topic: str, group: str) -> Dict[str, Any]:
        """A group in detail, with a diagnosis."""
        return await self._sync.describe_group(topic, group, _aio=True)

    async def create_group(
        self, topic: str, group: str, *, start: Union[str, int] = "earliest"
    ) -> None:
        """Creates a durable group reading from ``start``, without a consumer."""
        await self._sync.create_group(topic, group, start=start, _aio=True)

    async def seek_group(self, topic: str, group: str, to: Union[str, int]) -> None:
        """Moves a group to ``to`` (``"earliest"``, ``"latest"`` or an offset)."""
        await self._sync.seek_group(topic, group, to, _aio=True)

    async def delete_group(self, topic: str, group: str) -> None:
        """Deletes a group that has no consumer."""
        await self._sync.delete_group(topic, group, _aio=True)

    async def stats(self, topic: Optional[str] = None) -> Dict[str, Any]:
        """The broker's stats, or one topic's."""
        return await self._sync.stats(topic, _aio=True)

    async def close(self) -> None:
        """Closes the connection (an embedded broker writes what it holds to disk)."""
        await self._sync.close(_aio=True)

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self._sync.closed

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return repr(self._sync).replace("<mq.", "<mq.aio.")


class Producer:
    """Sends messages to one topic; ``async with`` flushes on the way out."""

    __slots__ = ("_sync",)

    def __init__(self, sync: "_mq.Producer") -> None:
        self._sync = sync

    @property
    def topic(self) -> str:
        """The topic."""
        return self._sync.topic

    async def send(
        self,
        payload: Payload,
        *,
        priority: int = 0,
        key: Optional[Payload] = None,
        headers: Optional[Dict[str, Payload]] = None,
    ) -> int:
        """Sends one message and returns its offset once the broker has it."""
        return await self._sync.send(payload, priority=priority, key=key, headers=headers, _aio=True)

    async def send_batch(self, messages: Iterable[Union[Message, Payload]]) -> List[int]:
        """Sends a batch all or nothing; returns the offsets."""
        return await self._sync.send_batch(messages, _aio=True)

    async def send_async(
        self,
        payload: Union[Payload, List[Union[Message, Payload]]],
        *,
        priority: int = 0,
        key: Optional[Payload] = None,
        headers: Optional[Dict[str, Payload]] = None,
    ) -> None:
        """Queues a message (or a list of them) without waiting for the broker."""
        await self._sync.send_async(payload, priority=priority, key=key, headers=headers, _aio=True)

    async def flush(self) -> None:
        """Waits until everything queued is stored; raises the first failure."""
        await self._sync.flush(_aio=True)

    async def __aenter__(self) -> "Producer":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.flush()

    def __repr__(self) -> str:
        return repr(self._sync).replace("<mq.", "<mq.aio.")


class Delivery:
    """One delivered message; ``await delivery.ack()`` or ``await delivery.nack()``."""

    __slots__ = ("_sync",)

    def __init__(self, sync: "_mq.Delivery") -> None:
        self._sync = sync

    @property
    def payload(self) -> bytes:
        """The payload."""
        return self._sync.payload

    @property
    def key(self) -> Optional[bytes]:
        """The key, or ``None``."""
        return self._sync.key

    @property
    def headers(self) -> Dict[str, bytes]:
        """The headers."""
        return self._sync.headers

    @property
    def priority(self) -> int:
        """The priority (0-255)."""
        return self._sync.priority

    @property
    def offset(self) -> int:
        """The offset in its topic."""
        return self._sync.offset

    @property
    def topic(self) -> str:
        """The topic."""
        return self._sync.topic

    @property
    def timestamp(self) -> float:
        """When the broker stored it, in seconds since the epoch."""
        return self._sync.timestamp

    @property
    def deliveries(self) -> int:
        """How many times it has been delivered to this group."""
        return self._sync.deliveries

    async def ack(self) -> None:
        """Acks it (queued: the SDK sends acks in batches)."""
        self._sync.ack()

    async def ack_confirmed(self) -> None:
        """Acks it and waits until the broker confirms."""
        await self._sync.ack_confirmed(_aio=True)

    async def nack(self, delay: Optional[float] = None) -> None:
        """Gives it back: delivered again at once, or after ``delay`` seconds."""
        await self._sync.nack(delay, _aio=True)

    def __repr__(self) -> str:
        return repr(self._sync).replace("<mq.", "<mq.aio.")


Handler = Callable[[Delivery], Union[None, Awaitable[None]]]


class Consumer:
    """A consumer attached to a group: ``async for delivery in consumer``."""

    __slots__ = ("_sync",)

    def __init__(self, sync: "_mq.Consumer") -> None:
        self._sync = sync

    @property
    def topic(self) -> str:
        """The topic."""
        return self._sync.topic

    @property
    def group(self) -> str:
        """The group."""
        return self._sync.group

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._sync.closed

    async def poll(self, timeout: Optional[float] = 0.0) -> Optional[Delivery]:
        """The next delivery, or ``None`` when none arrives within ``timeout`` seconds."""
        ready = self._sync.poll(0.0)
        if ready is None and timeout != 0.0:
            ready = await self._sync.poll(timeout, _aio=True)
        return None if ready is None else Delivery(ready)

    def __aiter__(self) -> "Consumer":
        return self

    async def __anext__(self) -> Delivery:
        delivery = await self.poll(None)
        if delivery is None:
            raise StopAsyncIteration
        return delivery

    async def run(
        self,
        handler: Handler,
        *,
        max_messages: Optional[int] = None,
        idle_timeout: Optional[float] = None,
    ) -> int:
        """Calls ``handler`` (a function or a coroutine function) on each delivery: acks
        when it returns, nacks when it raises. Stops after ``max_messages``, after
        ``idle_timeout`` seconds without a delivery, or when the consumer is closed;
        returns how many deliveries it handled."""
        handled = 0
        while (max_messages is None or handled < max_messages) and not self.closed:
            delivery = await self.poll(idle_timeout)
            if delivery is None:
                break
            try:
                outcome = handler(delivery)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as error:  # noqa: BLE001 - a failed handler means redelivery
                _log.info(
                    "handler raised %r on offset %d of %s: nacked",
                    error,
                    delivery.offset,
                    delivery.topic,
                )
                await delivery.nack()
            else:
                await delivery.ack()
            handled += 1
        if not self.closed:
            await self.flush_acks()
        return handled

    async def flush_acks(self) -> None:
        """Waits until every queued ack is answered."""
        await self._sync.flush_acks(_aio=True)

    async def close(self) -> None:
        """Detaches from the group; deliveries not acked go back to it."""
        await self._sync.close(_aio=True)

    async def __aenter__(self) -> "Consumer":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return repr(self._sync).replace("<mq.", "<mq.aio.")
