"""Consumes a topic with the real C++ RocketMQ push consumer (PyPI `rocketmq==0.4.4`) and
prints one JSON line per message received: {"body", "keys", "tags", "queue_id", "offset"}.

Usage: consume.py NAMESRV_ADDR TOPIC GROUP EXPECTED SECONDS

Stops after EXPECTED messages or SECONDS seconds, whichever comes first, then waits a little
for stragglers (so redeliveries are seen), shuts the consumer down (committing its offsets)
and exits 0. The client logs to $HOME/logs; run it with HOME pointing somewhere disposable.
"""

import json
import sys
import threading
import time

from rocketmq.client import PushConsumer

QUIET_AFTER_EXPECTED = 3.0


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    namesrv, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    expected, seconds = int(sys.argv[4]), float(sys.argv[5])
    lock = threading.Lock()
    received = []

    def on_message(message):
        line = {
            "body": message.body.decode("utf-8", "replace"),
            "keys": message.keys.decode("utf-8", "replace") if isinstance(message.keys, bytes) else message.keys,
            "tags": message.tags.decode("utf-8", "replace") if isinstance(message.tags, bytes) else message.tags,
            "queue_id": message.queue_id,
            "offset": message.queue_offset,
        }
        with lock:
            received.append(line)
            print(json.dumps(line), flush=True)

    consumer = PushConsumer(group)
    consumer.set_namesrv_addr(namesrv)
    consumer.subscribe(topic, on_message, "*")
    consumer.start()
    deadline = time.time() + seconds
    while time.time() < deadline:
        with lock:
            if len(received) >= expected:
                break
        time.sleep(0.1)
    time.sleep(QUIET_AFTER_EXPECTED)
    consumer.shutdown()
    print(json.dumps({"done": True, "count": len(received)}), flush=True)


if __name__ == "__main__":
    main()
