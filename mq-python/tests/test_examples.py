"""Each example runs as written and does what its docstring says."""

import asyncio
import importlib


def run_example(name):
    return importlib.import_module(name).main()


def test_asyncio_every_consumer_sees_every_message_in_order_then_retention_deletes_them():
    import asyncio_pubsub as ex

    report = asyncio.run(ex.main())
    assert len(report["seen"]) == ex.CONSUMERS
    for by_producer in report["seen"]:
        assert sorted(by_producer) == [f"p{p}" for p in range(ex.PRODUCERS)]
        for numbers in by_producer.values():
            assert numbers == list(range(ex.PER_PRODUCER))
    assert report["kept_after_consuming"] == ex.PRODUCERS * ex.PER_PRODUCER
    assert report["kept_later"] == 0


def test_topic_broker_rejects_drops_oldest_retries_and_dead_letters():
    import topic_broker as ex

    report = run_example("topic_broker")
    assert "is full" in report["rejected"]
    poison = [i for i in range(ex.ORDERS) if i % ex.POISON_EVERY == 0]
    assert sorted(report["done"], key=lambda s: int(s.split()[1])) == [
        f"order {i}" for i in range(ex.ORDERS) if i not in poison
    ]
    assert sorted(report["dead_lettered"]) == sorted(f"order {i}" for i in poison)
    assert all(report["attempts"][i] == 3 for i in poison)
    assert report["metrics"]["retained"] == 50
    assert report["metrics"]["first_offset"] == ex.METRICS - 50
    group = report["orders"]["groups"][0]
    assert group["dead_lettered"] == len(poison)
    assert group["acked"] == ex.ORDERS - len(poison)


def test_networked_exclusive_group_empty_poll_and_no_server(monkeypatch):
    monkeypatch.delenv("MQ_ADDR", raising=False)
    report = run_example("networked")
    assert report["received"] == [f"job {i}" for i in range(5)]
    assert "exclusive" in report["second_consumer"]
    assert report["poll_when_empty"] is None
    assert "is mq-server running there?" in report["no_server"]


def test_priority_work_queue_across_processes():
    import priority_workers as ex

    report = run_example("priority_workers")
    assert report["exit_codes"] == [0] * ex.WORKERS
    assert report["processed"] == ex.JOBS
    assert report["distinct"] == ex.JOBS
    for jobs in report["by_worker"].values():
        priorities = [p for p, _ in jobs]
        assert priorities == sorted(priorities, reverse=True), "highest priority first"
        for priority in set(priorities):
            offsets = [o for p, o in jobs if p == priority]
            assert offsets == sorted(offsets), "FIFO within a priority"
