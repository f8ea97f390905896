"""The bare Dapr Python SDK App (dapr.ext.grpc) subscriber of bench/async_bench.py.

    python bench/peers/dapr_async_app.py PORT

Subscribed to pubsub/bench, acking SUCCESS after the shared per-event work of peers/async_work.py.
"""

import sys

from async_work import handle
from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, SubscriptionMessage

app = App()


@app.subscribe(pubsub_name="pubsub", topic="bench")
def on_event(event: SubscriptionMessage) -> TopicEventResponse:
    handle(event.data())
    return TopicEventResponse("success")


if __name__ == "__main__":
    app.run(int(sys.argv[1]), "127.0.0.1")
