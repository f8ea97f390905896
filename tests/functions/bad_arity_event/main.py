"""Served with ``--signature-type event``, which calls ``(data, context)``; this declares one parameter."""


def on_event(data):
    return None
