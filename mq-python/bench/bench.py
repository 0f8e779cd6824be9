"""Publish and consume rates from Python, 100-byte payloads, memory storage.

Each figure is measured ``--runs`` times, each run on a fresh broker (a fresh ``mq-server``
for TCP, started as the examples start one; a fresh embedded broker otherwise); the median
and the range are printed, with a JSON line per figure for tools.

- batched publish: ``send_batch`` of 1,000 messages at a time;
- queued publish: ``send_async`` per message, then ``flush()`` (the plain way);
- consume: ``for delivery in consumer: delivery.ack()`` per message, manual acks, and the
  same with ``async for`` and ``await delivery.ack()``.

Run it through ``cargo xtask python bench`` (release build), or by hand with ``MQ_SERVER``.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import mq  # noqa: E402
import mq.aio  # noqa: E402
from mq_server import mq_server  # noqa: E402

PAYLOAD = b"x" * 100
BATCH = 1000


def fill(client: mq.Client, n: int) -> None:
    """Publishes `n` messages in batches of `BATCH`."""
    producer = client.producer("bench")
    batch = [PAYLOAD] * BATCH
    for _ in range(n // BATCH):
        producer.send_batch(batch)


def publish_batched(client: mq.Client, n: int) -> float:
    started = time.perf_counter()
    fill(client, n)
    return n / (time.perf_counter() - started)


def publish_queued(client: mq.Client, n: int) -> float:
    producer = client.producer("bench")
    send = producer.send_async
    started = time.perf_counter()
    for _ in range(n):
        send(PAYLOAD)
    producer.flush()
    return n / (time.perf_counter() - started)


def consume_acked(client: mq.Client, n: int) -> float:
    fill(client, n)
    with client.consumer("bench", "readers", prefetch=10_000) as consumer:
        started = time.perf_counter()
        seen = 0
        for delivery in consumer:
            delivery.ack()
            seen += 1
            if seen == n:
                break
        consumer.flush_acks()
        return n / (time.perf_counter() - started)


def consume_acked_asyncio(client: mq.Client, n: int) -> float:
    fill(client, n)

    async def consume() -> float:
        consumer = mq.aio.Consumer(client.consumer("bench", "readers", prefetch=10_000))
        async with consumer:
            started = time.perf_counter()
            seen = 0
            async for delivery in consumer:
                await delivery.ack()
                seen += 1
                if seen == n:
                    break
            await consumer.flush_acks()
            return n / (time.perf_counter() - started)

    return asyncio.run(consume())


def measure(where: str, work: Callable[[mq.Client, int], float], n: int) -> float:
    if where == "embedded":
        with mq.Client.embedded() as client:
            return work(client, n)
    with mq_server() as addr, mq.Client.connect(addr) as client:
        return work(client, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n = args.messages - args.messages % BATCH
    cases = [
        ("batched publish", publish_batched),
        ("queued publish (send_async + flush)", publish_queued),
        ("consume, ack() per message", consume_acked),
        ("asyncio consume, await ack() per message", consume_acked_asyncio),
    ]
    print(f"Python {sys.version.split()[0]}, mq {mq.__version__}, {n} messages of 100 B, "
          f"{args.runs} runs each")
    for where in ("tcp", "embedded"):
        for name, work in cases:
            rates: List[float] = []
            for _ in range(args.runs):
                rates.append(measure(where, work, n))
            median = statistics.median(rates)
            print(f"{where:9} {name:42} median {median / 1e3:8.0f} k msgs/s "
                  f"(range {min(rates) / 1e3:.0f}-{max(rates) / 1e3:.0f} k)")
            print(json.dumps({"where": where, "case": name, "median": round(median),
                              "min": round(min(rates)), "max": round(max(rates))}),
                  file=sys.stderr)


if __name__ == "__main__":
    main()
