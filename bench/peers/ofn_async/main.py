"""OpenFunction's Python framework (ofn-functions-framework) subscriber in bench/async_bench.py.

OpenFunction requires exactly ``def f(context: UserContext)``; the Dapr event is
``context.get_topic_event()`` (a CloudEvents v1.Event whose data is the raw bytes). Same work as the
other peers (peers/async_work.py); returning None acks SUCCESS.
"""

import sys
from pathlib import Path

from functions_framework.context.user_context import UserContext

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from async_work import handle


def handler(context: UserContext):
    handle(context.get_topic_event().data)
