"""funcd's side of the Dapr benchmark: the same tiny handler as the bare App."""


def handler(context, event):
    _ = event.data
