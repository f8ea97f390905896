"""The peer: a bare dapr.ext.grpc App subscribed to the bench topic, acking SUCCESS."""

import sys

from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, SubscriptionMessage

app = App()


@app.subscribe(pubsub_name="pubsub", topic="bench")
def on_event(event: SubscriptionMessage) -> TopicEventResponse:
    _ = event.data()
    return TopicEventResponse("success")


if __name__ == "__main__":
    app.run(int(sys.argv[1]), "127.0.0.1")
