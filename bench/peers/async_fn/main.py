"""funcd's subscriber in bench/async_bench.py: one event per call, the shared work of peers/async_work.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from async_work import handle


def handler(context, event):
    handle(event.data)
