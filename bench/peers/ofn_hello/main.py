"""The hello function on OpenFunction's Python framework (ofn-functions-framework), HTTP mode.

Served from bench/.venvs/ofn by its CLI with FUNC_CONTEXT naming an HTTP trigger; OpenFunction calls
``f(context: UserContext)`` (that exact signature) through Flask on gunicorn (1 worker, 1024 threads).
Same answer as the other peers.
"""

from functions_framework.context.user_context import UserContext


def hello(context: UserContext):
    body = context.get_http_request().get_json(silent=True) or {}
    return {"message": f"Hello, {body.get('name', 'world')}!"}
