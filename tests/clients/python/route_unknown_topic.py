"""A real C++ RocketMQ producer (PyPI `rocketmq==0.4.4`, which bundles `librocketmq.so`)
sends to a topic nobody registered, against the name server at argv[1].

What the client does (observed against ferrocket's mqnamesrv): it asks GET_ROUTEINFO_BY_TOPIC
(105) for the topic, gets TOPIC_NOT_EXIST (17), asks for the template topic TBW102, gets 17
again, repeats that pair five times, then `send_sync` raises `ProducerSendSyncFailed` with
"No route info of this topic: <topic>,error:-1,in file .../DefaultMQProducer.cpp line:379".

Usage: route_unknown_topic.py NAMESRV_ADDR [BOUND_SECONDS]

Prints one line of JSON and exits 0 when the send failed cleanly with that route error
within BOUND_SECONDS (default 20); exits 1 on any other outcome (the send succeeded, another
error) and 2 when the client hung past the bound. The C++ client logs to $HOME/logs; run it
with HOME pointing somewhere disposable.
"""

import json
import os
import sys
import threading
import time

from rocketmq.client import Message, Producer

def attempt(namesrv_addr, topic):
    """Runs the producer and returns what happened, as JSON-ready fields."""
    outcome = {}
    try:
        producer = Producer("ferrocket-route-unknown-topic")
        producer.set_namesrv_addr(namesrv_addr)
        producer.set_timeout(3000)
        producer.start()
    except Exception as error:
        outcome["stage_error"] = "start: %s: %s" % (type(error).__name__, error)
        return outcome
    try:
        message = Message(topic)
        message.set_body("hello from the C++ client")
        result = producer.send_sync(message)
        outcome["sent"] = {"status": int(result.status), "msg_id": result.msg_id}
    except Exception as error:  # which exception this is, is the point of the test
        outcome["exception"] = type(error).__name__
        outcome["exception_module"] = type(error).__module__
        outcome["message"] = str(error)
    try:
        producer.shutdown()
    except Exception as error:
        outcome["stage_error"] = "shutdown: %s: %s" % (type(error).__name__, error)
    return outcome


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(1)
    namesrv_addr = sys.argv[1]
    bound = float(sys.argv[2]) if len(sys.argv) == 3 else 20.0
    topic = "FerrocketNoSuchTopic%d" % os.getpid()

    outcome = {}
    started = time.monotonic()
    # The client's calls block in C; a daemon thread lets the main thread enforce the bound.
    worker = threading.Thread(
        target=lambda: outcome.update(attempt(namesrv_addr, topic)), daemon=True
    )
    worker.start()
    worker.join(bound)
    elapsed_ms = int((time.monotonic() - started) * 1000)

    result = {"topic": topic, "elapsed_ms": elapsed_ms, "bound_ms": int(bound * 1000)}
    if worker.is_alive():
        result.update(ok=False, reason="the client did not finish within the bound")
        code = 2
    else:
        result.update(outcome)
        expected = "No route info of this topic: %s" % topic
        ok = (
            outcome.get("exception") == "ProducerSendSyncFailed"
            and outcome.get("message", "").startswith(expected)
            and "stage_error" not in outcome
        )
        result["ok"] = ok
        if not ok:
            result["reason"] = (
                "expected a clean ProducerSendSyncFailed starting with %r" % expected
            )
        code = 0 if ok else 1
    print(json.dumps(result, sort_keys=True), flush=True)
    # Skip interpreter teardown: a hung client thread must not keep the process alive.
    os._exit(code)


if __name__ == "__main__":
    main()
