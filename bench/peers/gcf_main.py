"""The hello function written for Google's functions-framework 3.x (served from bench/.venvs/gcf).

funcd can serve this file unchanged too (its @functions_framework.http path, through Flask).
"""

import functions_framework


@functions_framework.http
def hello(request):
    body = request.get_json(silent=True) or {}
    return {"message": f"Hello, {body.get('name', 'world')}!"}
