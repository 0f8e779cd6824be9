"""A client from Python rides out a server restart: the SDK reconnects on its own."""

import mq
from mq_server import free_port, mq_server


def test_producer_and_consumer_go_on_after_the_server_restarts(tmp_path):
    listen = f"127.0.0.1:{free_port()}"
    flags = ("--storage", "file", "--data-dir", str(tmp_path), "--fsync", "always")
    with mq_server(*flags, listen=listen) as addr:
        client = mq.Client.connect(addr)
        producer = client.producer("durable")
        consumer = client.consumer("durable", "g")
        assert producer.send(b"before") == 0
        first = consumer.poll(timeout=10)
        first.ack_confirmed()
    with mq_server(*flags, listen=listen):
        assert producer.send(b"after") == 1
        again = consumer.poll(timeout=30)
        assert (again.payload, again.offset) == (b"after", 1)
        again.ack_confirmed()
        client.close()
