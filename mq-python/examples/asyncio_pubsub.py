"""asyncio: three producers and three consumers on one topic, in an embedded broker.

Each consumer has a group of its own, so every consumer sees every message, and each
producer's messages arrive in the order it sent them. The topic keeps consumed messages
for ``RETAIN`` seconds: once every group has acked them, the broker's background work
deletes them, which the example waits to see.

Run it: ``python examples/asyncio_pubsub.py``
"""

import asyncio
import time
from typing import Dict, List

import mq.aio

PRODUCERS = 3
CONSUMERS = 3
PER_PRODUCER = 200
RETAIN = 2.0


async def produce(client: mq.aio.Client, name: str) -> None:
    async with client.producer("events") as producer:
        for i in range(PER_PRODUCER):
            await producer.send(f"{name}:{i}", headers={"producer": name})


async def consume(client: mq.aio.Client, group: str) -> Dict[str, List[int]]:
    seen: Dict[str, List[int]] = {}
    async with await client.consumer("events", group) as consumer:
        async for delivery in consumer:
            producer, number = delivery.payload.decode().split(":")
            seen.setdefault(producer, []).append(int(number))
            await delivery.ack()
            if sum(map(len, seen.values())) == PRODUCERS * PER_PRODUCER:
                break
    return seen


async def retained(client: mq.aio.Client) -> int:
    return (await client.stats("events"))["retained"]


async def main() -> dict:
    async with mq.aio.Client.embedded() as client:
        await client.create_topic("events", retain_consumed=RETAIN)
        consumers = [
            asyncio.create_task(consume(client, f"reader-{c}")) for c in range(CONSUMERS)
        ]
        await asyncio.gather(*(produce(client, f"p{p}") for p in range(PRODUCERS)))
        seen = await asyncio.gather(*consumers)
        kept_after_consuming = await retained(client)
        started = time.monotonic()
        while await retained(client) > 0 and time.monotonic() - started < 30:
            await asyncio.sleep(0.05)
        result = {
            "seen": seen,
            "kept_after_consuming": kept_after_consuming,
            "kept_later": await retained(client),
            "deleted_after": time.monotonic() - started,
        }
    for group, by_producer in enumerate(seen):
        counts = ", ".join(f"{p}: {len(n)}" for p, n in sorted(by_producer.items()))
        ordered = all(n == sorted(n) for n in by_producer.values())
        print(f"reader-{group} saw {counts}; in each producer's order: {ordered}")
    print(
        f"{result['kept_after_consuming']} messages kept after consuming, "
        f"{result['kept_later']} after {result['deleted_after']:.2f} s (retain {RETAIN} s)"
    )
    return result


if __name__ == "__main__":
    asyncio.run(main())
