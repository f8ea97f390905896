"""An ``@http`` function declaring two parameters: Google's HTTP signature takes one (the request)."""

import functions_framework


@functions_framework.http
def hello(request, name):
    return f"Hello {name}!"
