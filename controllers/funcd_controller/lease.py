"""A coordination.k8s.io Lease as the lock of the ``kubernetes`` client's leader elector.

The client (36.x) ships only a ConfigMap lock; ``LeaseLock`` has the same interface (``name``,
``namespace``, ``identity``, ``get``/``create``/``update`` with a ``LeaderElectionRecord``) on
``CoordinationV1Api``. The elector compares records by value and keeps times as strings; the Lease keeps
them as RFC 3339 micro-times, so the lock converts both ways. Every failure is returned as a value (the
elector only handles ``False``): an update carries the resourceVersion it read, so two candidates cannot
both win one term (the loser gets 409 Conflict).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

log = logging.getLogger("funcd_controller.lease")

_MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


class LockReadError:
    """Why the Lease could not be read, shaped like an ``ApiException`` for the elector (``body``
    with a JSON ``code``, ``reason``)."""

    def __init__(self, code: int, reason: str) -> None:
        self.body = json.dumps({"code": code})
        self.reason = reason


def _to_micro(text: str | None) -> str | None:
    """The elector's ``str(datetime.now())`` (local, naive) as a Lease micro-time (UTC)."""
    if not text:
        return None
    return dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc).strftime(_MICRO)


def _from_micro(value: Any) -> str | None:
    """A Lease time (a datetime, or a string when not deserialised) as the elector's string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.strptime(value, _MICRO).replace(tzinfo=dt.timezone.utc)
    return str(value.astimezone().replace(tzinfo=None))


class LeaseLock:
    """Leader election record in the Lease ``namespace/name``, held by ``identity``."""

    def __init__(self, name: str, namespace: str, identity: str, api_client: Any) -> None:
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self._resource_version: str | None = None

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        """``(True, record)`` when the Lease exists (``record`` None when it has no holder), else
        ``(False, error)`` with the error's HTTP code (0 when the API server was not reached)."""
        from kubernetes.client.rest import ApiException
        from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord

        try:
            lease = self.api.read_namespaced_lease(name, namespace, _request_timeout=10)
        except ApiException as exc:
            return False, LockReadError(int(exc.status or 0), str(exc.reason))
        except Exception as exc:  # connection refused, timeout: not the elector's business to crash
            log.info("cannot read Lease %s/%s: %s", namespace, name, exc)
            return False, LockReadError(0, f"{type(exc).__name__}: {exc}")
        self._resource_version = lease.metadata.resource_version
        spec = lease.spec
        if spec is None or not spec.holder_identity:
            return True, None
        return True, LeaderElectionRecord(
            spec.holder_identity,
            str(spec.lease_duration_seconds) if spec.lease_duration_seconds is not None else None,
            _from_micro(spec.acquire_time),
            _from_micro(spec.renew_time),
        )

    def _body(self, name: str, record: Any) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name}
        if self._resource_version:
            metadata["resourceVersion"] = self._resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": record.holder_identity,
                "leaseDurationSeconds": round(float(record.lease_duration)),
                "acquireTime": _to_micro(record.acquire_time),
                "renewTime": _to_micro(record.renew_time),
            },
        }

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        self._resource_version = None
        try:
            lease = self.api.create_namespaced_lease(
                namespace, self._body(name, election_record), _request_timeout=10
            )
        except Exception as exc:
            log.info("cannot create Lease %s/%s: %s", namespace, name, exc)
            return False
        self._resource_version = lease.metadata.resource_version
        return True

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        try:
            lease = self.api.replace_namespaced_lease(
                name, namespace, self._body(name, updated_record), _request_timeout=10
            )
        except Exception as exc:
            log.info("cannot update Lease %s/%s: %s", namespace, name, exc)
            return False
        self._resource_version = lease.metadata.resource_version
        return True
