"""A topic broker for threads: bounded topics, headers, retries and a dead-letter topic.

Two topics in an embedded broker:

- ``orders`` holds at most 100 messages and *rejects* more (``mq.TopicFull``: the producer
  learns it must slow down); a message whose handler raises is retried, and after three
  deliveries it moves to the dead-letter topic ``orders.dlq``;
- ``metrics`` holds at most 50 and *drops the oldest* to make room.

Producers and the consumer run in threads of their own; the consumer's handler looks at a
header to decide what to do. Stats are printed at the end.

Run it: ``python examples/topic_broker.py``
"""

import threading
from collections import Counter
from typing import Dict, List

import mq

ORDERS = 100
POISON_EVERY = 10
METRICS = 80


def produce_orders(client: mq.Client, report: Dict[str, object]) -> None:
    with client.producer("orders") as producer:
        for i in range(ORDERS):
            poison = "yes" if i % POISON_EVERY == 0 else "no"
            producer.send(f"order {i}", key=f"customer-{i % 7}", headers={"poison": poison})
        try:
            producer.send("one order too many")
        except mq.TopicFull as full:
            report["rejected"] = str(full)


def produce_metrics(client: mq.Client) -> None:
    with client.producer("metrics") as producer:
        producer.send_batch([f"cpu={i}" for i in range(METRICS)])


def consume_orders(client: mq.Client, report: Dict[str, object]) -> None:
    attempts: Counter = Counter()
    done: List[str] = []

    def handle(delivery: mq.Delivery) -> None:
        attempts[delivery.offset] += 1
        if delivery.headers["poison"] == b"yes":
            raise ValueError(f"cannot process {delivery.payload!r}")
        done.append(delivery.payload.decode())

    with client.consumer("orders", "shipping", prefetch=10) as consumer:
        consumer.run(handle, idle_timeout=1.0)
    report["done"] = done
    report["attempts"] = attempts


def main() -> dict:
    report: Dict[str, object] = {}
    with mq.Client.embedded() as client:
        client.create_topic("orders", max_messages=ORDERS, overflow="reject", max_deliveries=3)
        client.create_topic("metrics", max_messages=50, overflow="drop-oldest")
        producers = [
            threading.Thread(target=produce_orders, args=(client, report)),
            threading.Thread(target=produce_metrics, args=(client,)),
        ]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        consumer = threading.Thread(target=consume_orders, args=(client, report))
        consumer.start()
        consumer.join()

        dead = []
        with client.consumer("orders.dlq", "inspector") as dlq:
            while (delivery := dlq.poll(timeout=1.0)) is not None:
                dead.append(delivery.payload.decode())
                delivery.ack()
        report["dead_lettered"] = dead
        report["metrics"] = client.stats("metrics")
        report["orders"] = client.stats("orders")

    print(f"rejected: {report.get('rejected')}")
    print(f"processed {len(report['done'])} orders")
    print(f"dead-lettered after 3 attempts each: {report['dead_lettered']}")
    metrics = report["metrics"]
    print(
        f"metrics keeps {metrics['retained']} of {metrics['published']} "
        f"(offsets {metrics['first_offset']}..{metrics['next_offset'] - 1})"
    )
    print(f"orders stats: {report['orders']}")
    return report


if __name__ == "__main__":
    main()
