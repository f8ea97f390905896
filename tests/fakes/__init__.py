"""Protocol fakes: real servers speaking real protocols through the official stubs (the fast tier).

* ``tests.fakes.dapr_api``: the Dapr sidecar API (gRPC ``Dapr`` service + HTTP health), fixture ``dapr_api``.
"""
