"""The work every Python subscriber of bench/async_bench.py does per event, shared so that it is the same.

- ``BENCH_SPIN``: iterations of a busy loop (0: the tiny handler). The bench calibrates the count that
  takes about 1 ms on this machine and passes the same number to every Python peer.
- ``BENCH_COUNT_FILE``: one 16-byte record is appended per event, the delivery latency in microseconds
  (now minus the ``t`` nanoseconds the publisher stamped in the data), or -1 when there is no stamp.
  The bench counts events by the file's size and reads the latencies from it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

SPIN = int(os.environ.get("BENCH_SPIN", "0") or 0)
RECORD = 16
_COUNT = os.environ.get("BENCH_COUNT_FILE")
_FD = os.open(_COUNT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _COUNT else -1


def spin(n: int) -> int:
    """A busy loop of ``n`` iterations (pure CPU, holds the GIL)."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFF
    return x


def decode(data: Any) -> Any:
    """The event's data as a Python object (dict for the bench's JSON), whatever form it arrives in."""
    if isinstance(data, (bytes, bytearray, str)):
        try:
            return json.loads(data)
        except ValueError:
            return None
    return data


def handle(data: Any) -> None:
    """The whole per-event work: decode, spin, record."""
    obj = decode(data)
    if SPIN:
        spin(SPIN)
    if _FD >= 0:
        t = obj.get("t") if isinstance(obj, dict) else None
        lat = (time.time_ns() - int(t)) // 1000 if t else -1
        os.write(_FD, b"%015d\n" % lat)
