"""A Google-style HTTP function that refuses bad requests with flask.abort."""

import logging

import flask

import functions_framework

log = logging.getLogger("gcf_abort")


@functions_framework.http
def greet(request):
    if request.path == "/ping":
        log.info("ping %s", request.args.get("n", ""))
        return "pong"
    name = request.args.get("name")
    if not name:
        flask.abort(400, description="missing name")
    return f"Hello {name}!"
