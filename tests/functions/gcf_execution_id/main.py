"""Reads the execution id from the request, as Google's functions-framework provides it."""

import functions_framework


@functions_framework.http
def whoami(request):
    return {"execution_id": request.headers.get("Function-Execution-Id")}
