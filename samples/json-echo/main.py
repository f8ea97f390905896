"""json-echo: returns the request as JSON, with a status chosen by the caller."""

import functions_framework as ff


def init_context(context):
    context.user_data.served = 0


def handler(context, event):
    context.user_data.served += 1
    if event.method == "GET":
        return {"method": "GET", "path": event.path, "query": event.query}
    status = int(event.query.get("status", ["200"])[0])
    echo = {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "content_type": event.content_type,
        "data": event.data,
        "path": event.path,
    }
    return ff.Response(echo, status=status, headers={"x-served-by-worker": str(context.user_data.served)})
