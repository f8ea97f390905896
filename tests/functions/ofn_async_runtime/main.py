"""An async function in the style of OpenFunction's first Python framework (``runtime: Async``):
``(context, data)``, where ``data`` is the raw payload of the topic event or binding event, and
``context.send(data, output_name)`` publishes it. The return value is not used."""


def forward(context, data):
    context.send(data, "processed")
