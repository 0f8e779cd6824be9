"""The blocking API, embedded and against a real mq-server."""

import multiprocessing
import os
import signal
import threading
import time

import pytest

import mq


@pytest.fixture(params=["embedded", "tcp"])
def client(request):
    """A client of each kind: every test below runs against both."""
    if request.param == "embedded":
        with mq.Client.embedded() as c:
            yield c
    else:
        addr = request.getfixturevalue("server_addr")
        with mq.Client.connect(addr) as c:
            yield c


def test_a_message_goes_round_with_everything_it_carries(client):
    producer = client.producer("round")
    before = time.time()
    assert producer.send(b"hello", priority=7, key="k1", headers={"h": "v", "b": b"\x00"}) == 0
    with client.consumer("round", "g") as consumer:
        d = consumer.poll(timeout=5)
        assert (d.payload, d.key, d.headers, d.priority, d.offset, d.topic, d.deliveries) == (
            b"hello", b"k1", {"h": b"v", "b": b"\x00"}, 7, 0, "round", 1
        )
        assert before - 1 <= d.timestamp <= time.time() + 1
        d.ack_confirmed()
        assert consumer.poll() is None


def test_batches_queued_sends_and_flush(client):
    producer = client.producer("batches")
    assert producer.send_batch([b"a", "b", bytearray(b"c"), mq.Message("d", priority=1)]) == [0, 1, 2, 3]
    for i in range(100):
        producer.send_async(f"q{i}")
    producer.send_async(["x", "y"])
    producer.flush()
    assert client.stats("batches")["published"] == 106


def test_poll_returns_none_at_once_then_waits_up_to_its_timeout(client):
    with client.consumer("empty", "g") as consumer:
        started = time.monotonic()
        assert consumer.poll() is None
        assert consumer.poll(timeout=0.3) is None
        assert time.monotonic() - started >= 0.25


def test_nack_with_a_delay_redelivers(client):
    client.producer("retry").send(b"job")
    with client.consumer("retry", "g") as consumer:
        first = consumer.poll(timeout=5)
        first.nack(delay=0.2)
        again = consumer.poll(timeout=10)
        assert (again.offset, again.deliveries) == (0, 2)
        again.ack()


def test_an_unacked_delivery_comes_back_after_the_ack_timeout(client):
    client.create_topic("slow", ack_timeout=0.3)
    client.producer("slow").send(b"job")
    with client.consumer("slow", "g") as consumer:
        assert consumer.poll(timeout=5).deliveries == 1
        assert consumer.poll(timeout=10).deliveries == 2


def test_run_acks_what_the_handler_accepts_and_nacks_what_it_raises_on(client):
    client.create_topic("handled", max_deliveries=2)
    client.producer("handled").send_batch([b"ok", b"bad", b"ok"])
    seen = []

    def handler(d):
        seen.append(d.payload)
        if d.payload == b"bad":
            raise RuntimeError("no")

    with client.consumer("handled", "g") as consumer:
        assert consumer.run(handler, idle_timeout=1.0) == 4
    assert sorted(seen) == [b"bad", b"bad", b"ok", b"ok"]
    group = client.groups("handled")[0]
    assert (group["acked"], group["dead_lettered"]) == (2, 1)


def test_admin_answers_as_dicts(client):
    client.create_topic("admin", max_messages=10, overflow="drop-oldest", max_age=60)
    with pytest.raises(mq.AlreadyExists) as exists:
        client.create_topic("admin")
    assert exists.value.code == "topic_exists"
    assert "admin" in client.topics()
    info = client.describe_topic("admin")
    assert info["config"]["retention"]["max_messages"] == 10
    assert info["config"]["retention"]["overflow"] == "drop-oldest"
    assert info["config"]["retention"]["max_age"] == 60.0
    client.producer("admin").send_batch([b"x"] * 3)
    with client.consumer("admin", "readers"):
        report = client.describe_group("admin", "readers")
        assert report["group"]["stats"]["name"] == "readers"
        assert "diagnosis" in report
    assert [g["name"] for g in client.groups("admin")] == ["readers"]
    client.create_group("admin", "later", start="latest")
    with pytest.raises(mq.AlreadyExists):
        client.create_group("admin", "later")
    client.seek_group("admin", "later", "earliest")
    assert {g["name"]: g["lag"] for g in client.groups("admin")}["later"] == 3
    client.delete_group("admin", "later")
    client.delete_group("admin", "readers")
    client.purge_topic("admin")
    assert client.stats("admin")["retained"] == 0
    assert client.stats()["topics"] >= 1
    client.delete_topic("admin")
    with pytest.raises(mq.NotFound):
        client.describe_topic("admin")


def test_errors_are_typed_and_carry_the_message(client):
    with pytest.raises(mq.InvalidName, match="invalid") as bad:
        client.producer("no spaces")
    assert isinstance(bad.value, mq.Error) and isinstance(bad.value, ValueError)
    client.create_topic("full", max_messages=1)
    client.producer("full").send(b"1")
    with pytest.raises(mq.TopicFull, match="full") as full:
        client.producer("full").send(b"2")
    assert full.value.code == "topic_full"
    with client.consumer("excl", "one", exclusive=True):
        with pytest.raises(mq.GroupBusy):
            client.consumer("excl", "one", exclusive=True)
    with pytest.raises(mq.InvalidConfig, match="no setting"):
        client.create_topic("cfg", max_mesages=1)
    with pytest.raises(TypeError, match="payload must be bytes"):
        client.producer("t").send(42)
    with pytest.raises(ValueError, match="ack must be"):
        client.consumer("t", ack="sometimes")


def test_a_later_start_applies_to_a_new_group_and_an_existing_one_carries_on(client):
    client.create_topic("starts", retain_consumed=60)
    producer = client.producer("starts")
    producer.send_batch([b"old"] * 3)
    with client.consumer("starts", "late", start="latest") as late:
        assert late.poll() is None
    producer.send(b"new")
    with client.consumer("starts", "late", start="latest") as late:
        assert late.poll(timeout=5).payload == b"new"
    with client.consumer("starts", "from2", start=2) as from2:
        assert from2.poll(timeout=5).offset == 2


def test_threads_share_a_producer_and_a_consumer(client):
    producer = client.producer("shared")
    senders = [
        threading.Thread(target=lambda t=t: [producer.send_async(f"{t}:{i}") for i in range(500)])
        for t in range(8)
    ]
    for s in senders:
        s.start()
    for s in senders:
        s.join()
    producer.flush()
    received = []
    lock = threading.Lock()
    with client.consumer("shared", "g", ack="auto") as consumer:

        def take():
            while (d := consumer.poll(timeout=1.0)) is not None:
                with lock:
                    received.append(d.payload)

        takers = [threading.Thread(target=take) for _ in range(4)]
        for t in takers:
            t.start()
        for t in takers:
            t.join()
    assert sorted(received) == sorted(f"{t}:{i}".encode() for t in range(8) for i in range(500))


def test_closing_a_consumer_ends_an_iteration_in_another_thread(client):
    consumer = client.consumer("closing", "g")
    ended = threading.Event()

    def iterate():
        for _ in consumer:
            pass
        ended.set()

    thread = threading.Thread(target=iterate)
    thread.start()
    consumer.close()
    assert ended.wait(10)
    thread.join()
    assert consumer.closed
    consumer.close()


def test_ctrl_c_interrupts_a_blocking_wait(client):
    # A process started in the background may inherit SIGINT ignored: use Python's own handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with client.consumer("interrupt", "g") as consumer:
            timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                consumer.poll(timeout=30)
            assert time.monotonic() - started < 5
            timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_closed_client_says_so(server_addr):
    client = mq.Client.connect(server_addr)
    producer = client.producer("after")
    client.close()
    assert client.closed
    with pytest.raises(mq.ConnectionClosed):
        producer.send(b"x")


def test_no_server_is_a_clear_error():
    with pytest.raises(mq.ConnectionRefused, match="is mq-server running there") as refused:
        mq.Client.connect("127.0.0.1:1", reconnect=False)
    assert isinstance(refused.value, ConnectionRefusedError)


def test_an_embedded_broker_with_files_keeps_messages_across_restarts(tmp_path):
    with mq.Client.embedded(str(tmp_path / "data")) as client:
        client.producer("kept").send_batch([b"1", b"2"])
    with mq.Client.embedded(str(tmp_path / "data"), fsync="always") as client:
        assert client.stats("kept")["retained"] == 2
        with client.consumer("kept", "g") as consumer:
            assert consumer.poll(timeout=5).payload == b"1"


def _child_publishes(queue):
    with mq.Client.embedded() as client:
        queue.put(client.producer("child").send(b"from the child"))


def test_a_forked_child_gets_a_runtime_of_its_own():
    with mq.Client.embedded() as parent:
        parent.producer("parent").send(b"the parent's runtime is running")
        fork = multiprocessing.get_context("fork")
        queue = fork.Queue()
        child = fork.Process(target=_child_publishes, args=(queue,))
        child.start()
        assert queue.get(timeout=30) == 0
        child.join(30)
        assert child.exitcode == 0


def test_a_data_dir_in_use_is_a_storage_error(tmp_path):
    with mq.Client.embedded(str(tmp_path)):
        with pytest.raises(mq.StorageError, match="in use"):
            mq.Client.embedded(str(tmp_path))


def test_a_closed_embedded_client_refuses_further_calls():
    client = mq.Client.embedded()
    client.close()
    assert client.closed and "closed" in repr(client)
    with pytest.raises(mq.ConnectionClosed, match="closed"):
        client.topics()
    client.close()


def test_closing_a_consumer_gives_back_what_it_held_even_while_deliveries_live(client):
    client.producer("held").send(b"job")
    with client.consumer("held", "g", exclusive=True) as consumer:
        held = consumer.poll(timeout=5)
    assert client.groups("held")[0]["consumers"] == 0
    with client.consumer("held", "g", exclusive=True) as again:
        d = again.poll(timeout=5)
        assert (d.offset, d.deliveries) == (held.offset, 2)


def test_a_blocking_wait_lets_other_python_threads_run(client):
    counted = 0
    stop = threading.Event()

    def count():
        nonlocal counted
        while not stop.is_set():
            counted += 1

    with client.consumer("gil", "g") as consumer:
        counter = threading.Thread(target=count)
        counter.start()
        try:
            before = counted
            time.sleep(0.1)  # releases the GIL: the yardstick
            in_sleep = counted - before
            before = counted
            assert consumer.poll(timeout=0.5) is None
            in_poll = counted - before
        finally:
            stop.set()
            counter.join()
    # A wait that held the GIL would leave the counter a switch interval (5 ms) of the
    # half second, far less than a tenth of a second of sleep gives it.
    assert in_poll > in_sleep
