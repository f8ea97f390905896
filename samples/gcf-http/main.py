"""A function written for Google's functions-framework; it runs unchanged on funcd."""

import functions_framework


@functions_framework.http
def hello(request):
    request_json = request.get_json(silent=True)
    if request_json and "name" in request_json:
        name = request_json["name"]
    elif request.args and "name" in request.args:
        name = request.args["name"]
    else:
        name = "World"
    return f"Hello {name}!"
