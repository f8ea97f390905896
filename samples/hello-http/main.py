"""hello-http: the smallest funcd function."""


def handler(context, event):
    body = event.data if isinstance(event.data, dict) else {}
    who = body.get("name", "world")
    context.logger.info("greeting %s", who)
    return {"message": f"Hello, {who}!"}
