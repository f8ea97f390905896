"""A Dapr-triggered function in the style of OpenFunction's current Python framework (0.2.0): the
binding request comes from ``context.get_binding_request()``; ``send(output_name, data)`` publishes
JSON to a topic. The return value is not used."""

from functions_framework.context.user_context import UserContext


def on_tick(context: UserContext):
    request = context.get_binding_request()
    context.send("processed", {"tick": request.text()})
    return "ignored"
