"""The hello function on Knative's Python functions middleware (func-python), from bench/.venvs/knative.

    LISTEN_ADDRESS=127.0.0.1:PORT python bench/peers/knative_hello.py

The shape `func create -l python` gives an HTTP function: a class with an ASGI ``handle`` and a ``new()``
constructor, served by ``func_python.http.serve`` (hypercorn, one process, asyncio). Same answer as the
other peers: decode the JSON body, answer {"message": "Hello, <name>!"}.
"""

import json

from func_python.http import serve


class Function:
    async def handle(self, scope, receive, send):
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        name = data.get("name", "world") if isinstance(data, dict) else "world"
        payload = json.dumps({"message": f"Hello, {name}!"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [[b"content-type", b"application/json"]],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def new():
    return Function()


if __name__ == "__main__":
    serve(new)
