"""Type stubs of the native part of the ``mq`` package (re-exported by ``mq``)."""

from os import PathLike
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

Payload = Union[bytes, bytearray, str]
Headers = Dict[str, Payload]
StrPath = Union[str, PathLike]

__version__: str

class Message:
    """One message of a batch: payload, priority (0-255), key and headers."""

    def __init__(
        self,
        payload: Payload,
        *,
        priority: int = 0,
        key: Optional[Payload] = None,
        headers: Optional[Headers] = None,
    ) -> None: ...
    @property
    def payload(self) -> bytes:
        """The payload."""
    @property
    def priority(self) -> int:
        """The priority (0-255, higher first)."""

class Client:
    """A handle on a broker: over TCP (:meth:`connect`) or in this process
    (:meth:`embedded`), with the same methods either way. Safe to share between threads."""

    @staticmethod
    def connect(
        addr: str,
        token: Optional[str] = None,
        tls_ca: Optional[StrPath] = None,
        *,
        tls_cert: Optional[StrPath] = None,
        tls_key: Optional[StrPath] = None,
        tls_server_name: Optional[str] = None,
        name: Optional[str] = None,
        reconnect: bool = True,
        request_timeout: float = 30.0,
    ) -> "Client":
        """Connects to the ``mq-server`` at ``addr`` (like ``"127.0.0.1:9800"``). ``token``
        for a server that requires one; ``tls_ca`` (a PEM file) to speak TLS and trust that
        CA, ``tls_cert`` and ``tls_key`` for mutual TLS, ``tls_server_name`` to check
        another name than the address's host; ``reconnect`` keeps producers and consumers
        going across a server restart."""
    @staticmethod
    def embedded(data_dir: Optional[StrPath] = None, *, fsync: str = "interval") -> "Client":
        """A broker inside this process: memory storage, or file storage in ``data_dir``
        with ``fsync`` ``"interval"``, ``"always"`` or ``"never"``. It runs retention, ack
        timeouts and redelivery, and the fsync interval itself."""
    def producer(
        self,
        topic: str,
        *,
        batch_size: Optional[int] = None,
        linger: Optional[float] = None,
        max_in_flight: Optional[int] = None,
        idempotent: Optional[bool] = None,
    ) -> "Producer":
        """A producer for ``topic``."""
    def consumer(
        self,
        topic: str,
        group: Optional[str] = None,
        *,
        ack: str = "manual",
        prefetch: int = 1000,
        start: Union[str, int] = "earliest",
        exclusive: bool = False,
        create_topic: bool = True,
    ) -> "Consumer":
        """A consumer of ``topic`` in ``group`` (``None``: a group of its own). ``ack`` is
        ``"manual"`` or ``"auto"``; ``start`` (``"earliest"``, ``"latest"`` or an offset)
        says where a new group begins; ``exclusive`` refuses a second consumer
        (:class:`mq.GroupBusy`)."""
    def create_topic(self, topic: str, **config: Any) -> None:
        """Creates ``topic``. Settings: ``max_messages``, ``max_bytes``, ``overflow``
        (``"reject"`` or ``"drop-oldest"``), ``max_age`` and ``retain_consumed`` (seconds),
        ``ack``, ``ack_timeout`` (seconds), ``max_deliveries``, ``prefetch``."""
    def topics(self) -> List[str]:
        """The names of the topics."""
    def describe_topic(self, topic: str) -> Dict[str, Any]:
        """A topic's configuration and stats."""
    def delete_topic(self, topic: str) -> None:
        """Deletes a topic, its messages and its groups."""
    def purge_topic(self, topic: str) -> None:
        """Deletes every message of a topic."""
    def groups(self, topic: str) -> List[Dict[str, Any]]:
        """The stats of a topic's groups."""
    def describe_group(self, topic: str, group: str) -> Dict[str, Any]:
        """A group in detail, its consumers' connections and a diagnosis."""
    def create_group(
        self, topic: str, group: str, *, start: Union[str, int] = "earliest"
    ) -> None:
        """Creates a durable group reading from ``start``, without a consumer."""
    def seek_group(self, topic: str, group: str, to: Union[str, int]) -> None:
        """Moves a group to ``to`` (``"earliest"``, ``"latest"`` or an offset): deliveries in
        flight go back, its consumers go on from there."""
    def delete_group(self, topic: str, group: str) -> None:
        """Deletes a group that has no consumer."""
    def stats(self, topic: Optional[str] = None) -> Dict[str, Any]:
        """The broker's stats, or one topic's."""
    def close(self) -> None:
        """Closes the connection; an embedded broker writes what it holds to disk."""
    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
    def __enter__(self) -> "Client": ...
    def __exit__(self, *exc: Any) -> bool: ...

class Producer:
    """Sends messages to one topic; leaving a ``with`` block flushes."""

    @property
    def topic(self) -> str:
        """The topic."""
    def send(
        self,
        payload: Payload,
        *,
        priority: int = 0,
        key: Optional[Payload] = None,
        headers: Optional[Headers] = None,
    ) -> int:
        """Sends one message; returns its offset once the broker has it."""
    def send_batch(self, messages: Iterable[Union[Message, Payload]]) -> List[int]:
        """Sends a batch all or nothing; returns the offsets."""
    def send_async(
        self,
        payload: Union[Payload, List[Union[Message, Payload]]],
        *,
        priority: int = 0,
        key: Optional[Payload] = None,
        headers: Optional[Headers] = None,
    ) -> None:
        """Queues a message (or a list of them) without waiting; see :meth:`flush`."""
    def flush(self) -> None:
        """Waits until everything queued is stored; raises the first failure."""
    def __enter__(self) -> "Producer": ...
    def __exit__(self, *exc: Any) -> bool: ...

class Delivery:
    """One delivered message; settle it with :meth:`ack` or :meth:`nack`."""

    @property
    def payload(self) -> bytes:
        """The payload."""
    @property
    def key(self) -> Optional[bytes]:
        """The key, or ``None``."""
    @property
    def headers(self) -> Dict[str, bytes]:
        """The headers."""
    @property
    def priority(self) -> int:
        """The priority (0-255)."""
    @property
    def offset(self) -> int:
        """The offset in its topic."""
    @property
    def topic(self) -> str:
        """The topic."""
    @property
    def timestamp(self) -> float:
        """When the broker stored it, in seconds since the epoch."""
    @property
    def deliveries(self) -> int:
        """How many times it has been delivered to this group, this time included."""
    def ack(self) -> None:
        """Acks it; returns at once (acks are sent in batches)."""
    def ack_confirmed(self) -> None:
        """Acks it and waits until the broker confirms."""
    def nack(self, delay: Optional[float] = None) -> None:
        """Gives it back: delivered again at once, or after ``delay`` seconds."""

class Consumer:
    """A consumer attached to a group: :meth:`poll`, iteration, or :meth:`run`."""

    @property
    def topic(self) -> str:
        """The topic."""
    @property
    def group(self) -> str:
        """The group."""
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
    def poll(self, timeout: Optional[float] = 0.0) -> Optional[Delivery]:
        """The next delivery, or ``None`` when none arrives within ``timeout`` seconds
        (0: at once; ``None``: no limit)."""
    def __iter__(self) -> Iterator[Delivery]: ...
    def __next__(self) -> Delivery: ...
    def run(
        self,
        handler: Callable[[Delivery], Any],
        *,
        max_messages: Optional[int] = None,
        idle_timeout: Optional[float] = None,
    ) -> int:
        """Calls ``handler`` on each delivery, acking when it returns and nacking when it
        raises; returns how many deliveries it handled."""
    def flush_acks(self) -> None:
        """Waits until every queued ack is answered."""
    def close(self) -> None:
        """Detaches from the group; deliveries not acked go back to it."""
    def __enter__(self) -> "Consumer": ...
    def __exit__(self, *exc: Any) -> bool: ...
