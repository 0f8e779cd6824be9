"""A producer and a consumer talking to a real ``mq-server`` over TCP.

- An *exclusive* consumer owns its group: a second consumer of the group is refused with
  ``mq.GroupBusy`` while the first is attached.
- ``poll()`` returns ``None`` at once when nothing is waiting.
- Connecting where no server runs raises ``mq.ConnectionRefused`` with a clear message.

The server is ``MQ_ADDR`` if set, else one started from this repository's build (or
``MQ_SERVER``) for the run; see ``mq_server.py``.

Run it: ``python examples/networked.py``
"""

import mq
from mq_server import free_port, mq_server


def main() -> dict:
    report: dict = {}
    with mq_server() as addr, mq.Client.connect(addr) as client:
        producer = client.producer("jobs")
        offsets = producer.send_batch([f"job {i}" for i in range(5)])
        report["offsets"] = offsets

        with client.consumer("jobs", "owners", exclusive=True) as owner:
            try:
                client.consumer("jobs", "owners", exclusive=True)
            except mq.GroupBusy as busy:
                report["second_consumer"] = f"refused: {busy}"
            received = []
            while (delivery := owner.poll(timeout=5.0)) is not None:
                received.append(delivery.payload.decode())
                delivery.ack()
                if len(received) == len(offsets):
                    break
            report["received"] = received
            report["poll_when_empty"] = owner.poll()

    try:
        mq.Client.connect(f"127.0.0.1:{free_port()}", reconnect=False)
    except mq.ConnectionRefused as refused:
        report["no_server"] = str(refused)

    print(f"sent {len(report['offsets'])} jobs at offsets {report['offsets']}")
    print(f"second exclusive consumer: {report['second_consumer']}")
    print(f"received {report['received']}")
    print(f"poll() with nothing waiting: {report['poll_when_empty']}")
    print(f"without a server: {report['no_server']}")
    return report


if __name__ == "__main__":
    main()
