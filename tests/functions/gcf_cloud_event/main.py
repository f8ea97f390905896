"""A CloudEvent function, written with Google's decorator through the usual alias.

It records each event in the file named by SEEN_FILE, one JSON line per call.
"""

import json
import os

import functions_framework as ff


@ff.cloud_event
def on_order(cloud_event):
    seen = {
        "id": cloud_event["id"],
        "type": cloud_event["type"],
        "source": cloud_event["source"],
        "data": cloud_event.data,
    }
    with open(os.environ["SEEN_FILE"], "a") as f:
        f.write(json.dumps(seen) + "\n")
