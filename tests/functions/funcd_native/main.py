"""funcd's own signature, ``handler(context, event)``."""


def handler(context, event):
    return {"kind": event.trigger.kind, "path": event.path}
