"""funcd's side of the Dapr benchmark: the same tiny work as the bare App (bench/peers/dapr_app.py).

Decodes the JSON data and, when BENCH_COUNT_FILE is set, appends one byte to that file (the
end-to-end bench counts handled events by its size). Returning None acks SUCCESS.
"""

import os

_COUNT = os.environ.get("BENCH_COUNT_FILE")
_FD = os.open(_COUNT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _COUNT else -1


def handler(context, event):
    _ = event.data
    if _FD >= 0:
        os.write(_FD, b".")
