"""The exceptions mq raises: every one is a subclass of :class:`Error`.

Each carries the message (``str(e)``, also ``e.message``) and, when the broker sent one,
its error code (``e.code``, like ``"topic_full"``; the codes are listed in PROTOCOL.md).
"""

from typing import Optional


class Error(Exception):
    """Base of every error mq raises."""

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ConnectionRefused(Error, ConnectionRefusedError):
    """Nothing accepted the connection: is mq-server running at that address?"""


class ConnectionClosed(Error, ConnectionError):
    """The connection to the server is gone (closed, or lost and not yet back)."""


class ReconnectFailed(ConnectionClosed):
    """The client tried to reconnect for as long as it may, and gave up."""


class TlsError(Error):
    """TLS with the server failed: an untrusted certificate, or TLS on one side only."""


class Timeout(Error, TimeoutError):
    """No reply from the server in time."""


class Unauthorized(Error):
    """The server refused the token."""


class PermissionDenied(Error):
    """The user may not do this on this topic or group."""


class InvalidName(Error, ValueError):
    """A topic or group name the broker refuses."""


class InvalidConfig(Error, ValueError):
    """A setting the broker refuses, or a start position an existing group conflicts with."""


class NotFound(Error, LookupError):
    """No such topic or group."""


class AlreadyExists(Error):
    """The topic or group exists already."""


class TopicFull(Error):
    """The topic is at its limit and refuses more (overflow ``"reject"``): back off."""


class GroupBusy(Error):
    """The group is exclusive and has a consumer already (or it is in use)."""


class NotInFlight(Error):
    """The delivery was settled already or timed out (it is delivered again)."""


class Redelivered(Error):
    """The delivery came over a connection lost since: the broker delivers it again."""


class TooLarge(Error, ValueError):
    """A message or batch larger than the server accepts; nothing was sent."""


class ResourceExhausted(Error):
    """The broker is out of room (memory, disk, topics, groups, subscriptions) or busy."""


class StorageError(Error, OSError):
    """The broker's storage failed: a data dir in use or unreadable, a failed write."""


class ProtocolError(Error):
    """The broker answered something unexpected."""


class ServerError(Error):
    """Any other refusal by the broker; ``code`` says which."""


__all__ = [
    "Error",
    "ConnectionRefused",
    "ConnectionClosed",
    "ReconnectFailed",
    "TlsError",
    "Timeout",
    "Unauthorized",
    "PermissionDenied",
    "InvalidName",
    "InvalidConfig",
    "NotFound",
    "AlreadyExists",
    "TopicFull",
    "GroupBusy",
    "NotInFlight",
    "Redelivered",
    "TooLarge",
    "ResourceExhausted",
    "StorageError",
    "ProtocolError",
    "ServerError",
]
