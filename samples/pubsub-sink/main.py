"""pubsub-sink: the end of a chain; logs every processed order it receives."""


def handler(context, event):
    order = event.data
    context.logger.info("processed order %s: %s", event.id, order)
