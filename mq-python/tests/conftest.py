"""Fixtures: a real mq-server per test that needs one, and the examples importable."""

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

from mq_server import mq_server  # noqa: E402


@pytest.fixture
def server_addr():
    """The address of a fresh mq-server (memory storage) on a free loopback port."""
    with mq_server() as addr:
        yield addr
