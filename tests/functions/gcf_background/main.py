"""A legacy background function ``(data, context)``, served with ``--signature-type event``.

It records what it was given in the file named by SEEN_FILE, one JSON line per call.
"""

import json
import os


def on_event(data, context):
    if isinstance(data, bytes):
        seen = {"data_type": "bytes", "data": data.decode()}
    else:
        seen = {"data_type": type(data).__name__, "data": data}
    seen["context"] = {
        "event_id": context.event_id,
        "timestamp": context.timestamp,
        "event_type": context.event_type,
        "resource": context.resource,
    }
    with open(os.environ["SEEN_FILE"], "a") as f:
        f.write(json.dumps(seen) + "\n")
    return "ignored"
