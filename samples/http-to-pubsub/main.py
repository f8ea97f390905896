"""http-to-pubsub: an HTTP function that publishes what it receives."""

import functions_framework as ff


def handler(context, event):
    if not isinstance(event.data, dict):
        raise ff.HTTPError(400, "expected a JSON object")
    context.send(event.data, output="events")
    return {"published": True}, 202
