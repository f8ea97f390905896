"""The peer: a bare dapr.ext.grpc App (dapr[grpc]) subscribed to pubsub/bench, acking SUCCESS.

    python bench/peers/dapr_app.py PORT

Same tiny work as funcd's bench/peers/dapr_fn/main.py: decode the JSON data and, when
BENCH_COUNT_FILE is set, append one byte to that file (the end-to-end bench counts handled
events by its size).
"""

import os
import sys

from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, SubscriptionMessage

_COUNT = os.environ.get("BENCH_COUNT_FILE")
_FD = os.open(_COUNT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _COUNT else -1

app = App()


@app.subscribe(pubsub_name="pubsub", topic="bench")
def on_event(event: SubscriptionMessage) -> TopicEventResponse:
    _ = event.data()
    if _FD >= 0:
        os.write(_FD, b".")
    return TopicEventResponse("success")


if __name__ == "__main__":
    app.run(int(sys.argv[1]), "127.0.0.1")
