"""funcd bulk subscriber in bench/async_bench.py: bulk deliveries, still one event per handler call."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from async_work import handle


def handler(context, event):
    handle(event.data)
