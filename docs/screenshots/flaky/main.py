"""flaky: sleeps ``ms`` milliseconds, then fails (500) if ``fail``, refuses (422) if ``reject``."""

import time


def handler(context, event):
    body = event.data if isinstance(event.data, dict) else {}
    time.sleep(float(body.get("ms", 0)) / 1000)
    if body.get("fail"):
        raise RuntimeError("asked to fail")
    if body.get("reject"):
        return {"error": "asked to refuse"}, 422
    return {"ok": True}
