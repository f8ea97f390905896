"""A handler that takes one parameter too many."""


def handler(context, event, extra):
    return "never called"
