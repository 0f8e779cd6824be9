"""A priority work queue shared by worker processes through a real ``mq-server``.

The main process queues jobs of three priorities, then starts four worker processes
(``multiprocessing`` with the ``spawn`` start method: each process makes its own client and
the SDK's runtime with it). The workers share one group, so each job goes to one worker;
the broker hands out the highest priority first, and jobs of one priority in the order they
were queued. A job is acked when done; none is processed twice.

The server is ``MQ_ADDR`` if set, else one started from this repository's build (or
``MQ_SERVER``) for the run; see ``mq_server.py``.

Run it: ``python examples/priority_workers.py``
"""

import multiprocessing
import queue
from typing import Dict, List, Tuple

import mq
from mq_server import mq_server

WORKERS = 4
JOBS = 300
PRIORITIES = {"low": 0, "normal": 5, "urgent": 9}


def work(addr: str, done: "multiprocessing.Queue[Tuple[int, int, int, int]]") -> None:
    """A worker: takes jobs one at a time until the queue stays empty for a second."""
    import os

    with mq.Client.connect(addr) as client, client.consumer(
        "work", "workers", prefetch=1
    ) as jobs:
        while (job := jobs.poll(timeout=1.0)) is not None:
            done.put((os.getpid(), job.offset, job.priority, int(job.payload.decode())))
            job.ack_confirmed()


def main() -> dict:
    with mq_server() as addr:
        with mq.Client.connect(addr) as client:
            client.create_topic("work")
            producer = client.producer("work")
            names = list(PRIORITIES)
            producer.send_batch(
                [
                    mq.Message(str(i), priority=PRIORITIES[names[i % len(names)]])
                    for i in range(JOBS)
                ]
            )
        spawn = multiprocessing.get_context("spawn")
        done = spawn.Queue()
        workers = [spawn.Process(target=work, args=(addr, done)) for _ in range(WORKERS)]
        for worker in workers:
            worker.start()
        results: List[Tuple[int, int, int, int]] = []
        while len(results) < JOBS:
            try:
                results.append(done.get(timeout=60))
            except queue.Empty:
                break
        for worker in workers:
            worker.join(timeout=60)

    by_worker: Dict[int, List[Tuple[int, int]]] = {}
    for pid, offset, priority, _job in results:
        by_worker.setdefault(pid, []).append((priority, offset))
    report = {
        "processed": len(results),
        "distinct": len({offset for _, offset, _, _ in results}),
        "by_worker": by_worker,
        "exit_codes": [w.exitcode for w in workers],
    }
    for pid, jobs in sorted(by_worker.items()):
        print(f"worker {pid}: {len(jobs)} jobs, priorities in the order taken: "
              f"{[p for p, _ in jobs][:12]}...")
    print(f"{report['processed']} jobs processed, {report['distinct']} distinct")
    return report


if __name__ == "__main__":
    main()
