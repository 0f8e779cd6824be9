"""The asyncio API: the same broker from coroutines, never blocking the event loop."""

import asyncio

import pytest

import mq
import mq.aio


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


@pytest.fixture(params=["embedded", "tcp"])
def connect(request):
    """A coroutine function making a client of each kind."""
    if request.param == "embedded":
        return lambda: _ready(mq.aio.Client.embedded())
    addr = request.getfixturevalue("server_addr")
    return lambda: mq.aio.Client.connect(addr)


async def _ready(client):
    return client


def test_send_and_consume_with_async_for(connect):
    async def scenario():
        async with await connect() as client:
            async with client.producer("aio") as producer:
                assert await producer.send(b"a", headers={"h": "1"}) == 0
                assert await producer.send_batch([b"b", mq.Message(b"c", priority=2)]) == [1, 2]
                await producer.send_async(b"d")
            got = []
            async with await client.consumer("aio", "g") as consumer:
                async for d in consumer:
                    got.append((d.payload, d.priority))
                    await d.ack()
                    if len(got) == 4:
                        break
                assert await consumer.poll() is None
            return got

    assert run(scenario()) == [(b"c", 2), (b"a", 0), (b"b", 0), (b"d", 0)]


def test_the_event_loop_keeps_running_while_a_poll_waits(connect):
    async def scenario():
        async with await connect() as client:
            async with await client.consumer("quiet", "g") as consumer:
                ticks = 0

                async def tick():
                    nonlocal ticks
                    while True:
                        ticks += 1
                        await asyncio.sleep(0.01)

                ticker = asyncio.create_task(tick())
                assert await consumer.poll(timeout=0.3) is None
                ticker.cancel()
                return ticks

    assert run(scenario()) >= 5


def test_a_cancelled_poll_loses_nothing(connect):
    async def scenario():
        async with await connect() as client:
            async with await client.consumer("cancel", "g") as consumer:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(consumer.poll(None), 0.1)
                await client.producer("cancel").send(b"after")
                d = await consumer.poll(timeout=5)
                return d.payload

    assert run(scenario()) == b"after"


def test_run_with_a_coroutine_handler_acks_and_nacks(connect):
    async def scenario():
        async with await connect() as client:
            await client.create_topic("work", max_deliveries=1)
            await client.producer("work").send_batch([b"ok", b"bad"])
            seen = []

            async def handler(d):
                seen.append(d.payload)
                if d.payload == b"bad":
                    raise ValueError("no")

            async with await client.consumer("work", "g") as consumer:
                assert await consumer.run(handler, idle_timeout=1.0) == 2
            groups = await client.groups("work")
            return seen, groups[0]

    seen, group = run(scenario())
    assert seen == [b"ok", b"bad"]
    assert (group["acked"], group["dead_lettered"]) == (1, 1)


def test_errors_are_raised_from_coroutines(connect):
    async def scenario():
        async with await connect() as client:
            await client.create_topic("tiny", max_messages=1)
            await client.producer("tiny").send(b"1")
            with pytest.raises(mq.TopicFull):
                await client.producer("tiny").send(b"2")
            with pytest.raises(mq.NotFound):
                await client.describe_topic("missing")
            async with await client.consumer("x", "solo", exclusive=True):
                with pytest.raises(mq.GroupBusy):
                    await client.consumer("x", "solo", exclusive=True)
            assert "tiny" in await client.topics()
            assert (await client.stats())["topics"] >= 2

    run(scenario())


def test_no_server_is_a_clear_error_in_asyncio_too():
    async def scenario():
        with pytest.raises(mq.ConnectionRefused, match="is mq-server running there"):
            await mq.aio.Client.connect("127.0.0.1:1", reconnect=False)

    run(scenario())


def test_a_coroutine_outside_an_event_loop_is_refused():
    client = mq.Client.embedded()
    with pytest.raises(RuntimeError):
        client.topics(_aio=True)
    client.close()


def test_many_coroutines_share_one_producer(connect):
    async def scenario():
        async with await connect() as client:
            producer = client.producer("many")
            return await asyncio.gather(*(producer.send(f"{i}") for i in range(500)))

    assert sorted(run(scenario())) == list(range(500))
