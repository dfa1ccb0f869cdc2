"""Sends COUNT messages with keys and tags through the real C++ RocketMQ client (PyPI
`rocketmq==0.4.4`) and prints one JSON line per acknowledged message.

Usage: produce.py NAMESRV_ADDR TOPIC COUNT PREFIX [--stop-on-error]

Message i has body "PREFIX-i", keys "PREFIX-key-i" and tag "TagA" for even i, "TagB" for odd.
Each acknowledged send prints {"i": i, "msg_id": ..., "status": ...}; a failed send prints
{"i": i, "error": ...} and the script exits 1 after trying the rest (or at once with
--stop-on-error, for tests that kill the broker mid-stream). The client logs to
$HOME/logs; run it with HOME pointing somewhere disposable.
"""

import json
import sys

from rocketmq.client import Message, Producer


def main():
    if len(sys.argv) not in (5, 6):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    namesrv, topic, count, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    stop_on_error = len(sys.argv) == 6 and sys.argv[5] == "--stop-on-error"
    producer = Producer("ferrocket-e2e-producer")
    producer.set_namesrv_addr(namesrv)
    producer.set_timeout(5000)
    producer.start()
    failures = 0
    try:
        for i in range(count):
            message = Message(topic)
            message.set_keys("%s-key-%d" % (prefix, i))
            message.set_tags("TagA" if i % 2 == 0 else "TagB")
            message.set_body("%s-%d" % (prefix, i))
            try:
                result = producer.send_sync(message)
                print(json.dumps({"i": i, "msg_id": result.msg_id, "status": int(result.status)}),
                      flush=True)
            except Exception as error:  # reported, not hidden: the test reads these lines
                failures += 1
                print(json.dumps({"i": i, "error": "%s: %s" % (type(error).__name__, error)}),
                      flush=True)
                if stop_on_error:
                    break
    finally:
        producer.shutdown()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
