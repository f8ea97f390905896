"""cron-binding: a cron input binding fires the function, which writes a file through localstorage."""

import datetime


def handler(context, event):
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    context.send({"fired_at": now, "binding": event.binding}, output="store")
    context.logger.info("tick at %s", now)
