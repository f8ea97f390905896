"""An HTTP function in the style of OpenFunction's Python framework (ofn-functions-framework 0.2.0):
one parameter named ``context`` annotated with ``UserContext``; the Flask request comes from
``context.get_http_request()`` and the return value is the response. A POST also sends the greeting
to the ``greetings`` output, with OpenFunction's argument order ``send(output_name, data)``."""

from functions_framework.context.user_context import UserContext


def hello(context: UserContext):
    request = context.get_http_request()
    name = request.args.get("name") or "world"
    if request.method == "POST":
        context.send("greetings", {"name": name, "via": request.path})
    return f"hello {name}"
