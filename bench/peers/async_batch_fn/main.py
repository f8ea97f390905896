"""funcd batch subscriber in bench/async_bench.py: a bulk delivery as one call taking a list of events.

Same per-event work as the other peers (peers/async_work.py). Returning None acks every entry.
"""

import sys
from pathlib import Path

import functions_framework

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from async_work import handle


@functions_framework.batch
def handler(context, events):
    for event in events:
        handle(event.data)
