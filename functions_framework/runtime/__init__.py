"""Runtimes that deliver events to a function: HTTP, Dapr, or both."""
