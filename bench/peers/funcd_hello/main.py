"""The funcd hello function used by the benchmark.

Same work as samples/hello-http minus its per-request log line, so that it does exactly what the
peers (peers/gcf_main.py, peers/flask_app.py) do: decode a JSON body, answer {"message": ...}.
"""


def handler(context, event):
    body = event.data if isinstance(event.data, dict) else {}
    return {"message": f"Hello, {body.get('name', 'world')}!"}
