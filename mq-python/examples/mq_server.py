"""Starts a real ``mq-server`` for the networked examples, or uses a running one.

``MQ_ADDR`` names a running server to use. Otherwise the server binary is ``MQ_SERVER``, or
the one this repository's ``cargo build`` made (``target/release`` or ``target/debug``), or
``mq-server`` on the ``PATH``; it listens on a free port of 127.0.0.1, keeps messages in
memory, and is stopped when the ``with`` block ends.
"""

import contextlib
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port of 127.0.0.1 where nothing listens (taken, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary() -> str:
    """The mq-server to start."""
    if os.environ.get("MQ_SERVER"):
        return os.environ["MQ_SERVER"]
    for profile in ("release", "debug"):
        built = REPO / "target" / profile / "mq-server"
        if built.exists():
            return str(built)
    found = shutil.which("mq-server")
    if found is None:
        raise SystemExit(
            "no mq-server found: build it (cargo build -p mq-server), set MQ_SERVER to its "
            "path, or set MQ_ADDR to a running server"
        )
    return found


@contextlib.contextmanager
def mq_server(*flags: str, listen: str = "127.0.0.1:0") -> Iterator[str]:
    """The address of a server: ``MQ_ADDR``, or one started for the ``with`` block on
    ``listen`` (memory storage unless ``flags`` say otherwise)."""
    if os.environ.get("MQ_ADDR") and not flags:
        yield os.environ["MQ_ADDR"]
        return
    storage = [] if "--storage" in flags else ["--storage", "memory"]
    process = subprocess.Popen(
        [server_binary(), "--listen", listen, "--http", "off", *storage, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"mq-server did not start (it said {line!r})")
        yield line.removeprefix("listening on ").strip()
    finally:
        process.terminate()
        process.wait(timeout=30)
