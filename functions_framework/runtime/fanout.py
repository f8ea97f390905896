"""Worker fan-out for the gRPC app protocol: every worker serves deliveries.

daprd opens one gRPC connection to its app, and SO_REUSEPORT spreads connections, not calls, so one
worker process receives every delivery. With several workers, that worker hands deliveries on:

- every worker listens on a Unix socket, ``<pid>.sock``, in a private directory the supervisor
  makes (``serve.relay_directory``), and runs what arrives there with its own handler (``RelayServer``);
- the receiving worker runs a delivery itself or sends it to the other worker with the fewest of
  its deliveries in flight, at most ``threads`` per worker (``FanOut.dispatch``): cheap deliveries
  (less CPU than relaying costs) stay here until this worker is full; costly ones go to the others
  first, since a handler running here holds the GIL that relaying needs;
- the answer daprd gets is the answer of the worker that ran the handler, so an event is still
  acknowledged only after its handler finished. When that worker dies first, the call fails with
  UNAVAILABLE and daprd redelivers the event.

A relayed call carries the request's protobuf bytes and the gRPC metadata (trace context, headers),
pickled, between processes of the same funcd only (the directory is the supervisor's, mode 0700).
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from dapr.proto import appcallback_v1

log = logging.getLogger("functions_framework.dapr")

# Relayed methods: their request and response types.
MESSAGES: dict[str, tuple[Any, Any]] = {
    "OnTopicEvent": (appcallback_v1.TopicEventRequest, appcallback_v1.TopicEventResponse),
    "OnBulkTopicEvent": (appcallback_v1.TopicEventBulkRequest, appcallback_v1.TopicEventBulkResponse),
    "OnBindingEvent": (appcallback_v1.BindingEventRequest, appcallback_v1.BindingEventResponse),
}
_LENGTH = struct.Struct("!I")
_RESCAN = 1.0  # seconds between looks for workers that started or stopped
_RESCAN_WHEN_FULL = 0.05  # ... while every known worker is busy
RELAY_WORTH = 0.0002
"""Deliveries costing less CPU than this (seconds, running mean) run in the receiving worker while it
has a free slot: relaying one costs about 0.1 ms of CPU in each of the two workers."""
_COST_WEIGHT = 0.05
SWITCH_INTERVAL = 0.0005
"""``sys.setswitchinterval`` in the worker that receives daprd's connection while deliveries are
costly (the default comes back when they are cheap again)."""


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _recv(sock: socket.socket) -> bytes | None:
    """One frame, or None when the other side closed the connection."""
    head = _recv_exact(sock, _LENGTH.size)
    if head is None:
        return None
    return _recv_exact(sock, _LENGTH.unpack(head)[0])


class Aborted(Exception):
    """What ``context.abort`` raises in a relayed call; the receiving worker aborts daprd's call."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class RelayedContext:
    """The part of ``grpc.ServicerContext`` the AppCallback servicer uses, for a relayed call."""

    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


Handler = Callable[[Any, Any], Any]


class RelayServer:
    """A worker's Unix socket: runs the deliveries other workers hand over, a thread per connection
    (the sender opens at most ``threads`` connections to it)."""

    def __init__(self, directory: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = directory / f"{os.getpid()}.sock"
        self._handlers = handlers
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(128)
        threading.Thread(target=self._accept, name="funcd-relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), name="funcd-relay-call", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    frame = _recv(conn)
                except OSError:
                    return
                if frame is None:
                    return
                method, body, metadata = pickle.loads(frame)
                request_type, _ = MESSAGES[method]
                started = time.thread_time()
                try:
                    response = self._handlers[method](request_type.FromString(body), RelayedContext(metadata))
                    reply: tuple[Any, ...] = (
                        "ok",
                        response.SerializeToString(),
                        time.thread_time() - started,
                    )
                except Aborted as exc:
                    reply = ("abort", exc.code.name, exc.details)
                except Exception:
                    log.exception("relayed %s failed", method)
                    reply = ("abort", "INTERNAL", f"{method} failed in worker {os.getpid()}")
                try:
                    _send(conn, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
                except OSError:
                    return

    def close(self) -> None:
        self._sock.close()
        self.path.unlink(missing_ok=True)


class _Peer:
    """Another worker, as the receiving worker sees it: its socket, its calls in flight, idle
    connections."""

    def __init__(self, pid: int, path: Path) -> None:
        self.pid = pid
        self.path = path
        self.busy = 0
        self.idle: list[socket.socket] = []

    def connect(self) -> socket.socket:
        if self.idle:
            return self.idle.pop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        for sock in self.idle:
            sock.close()
        self.idle.clear()


class _Gone(Exception):
    """The peer could not be reached before anything was sent: the delivery can go elsewhere."""


class FanOut:
    """The receiving worker's side: which worker runs a delivery, and relaying it there."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory = directory
        self.capacity = capacity
        self._me = os.getpid()
        self._cond = threading.Condition()
        self._peers: dict[int, _Peer] = {}
        self._local = 0
        self._scanned = -math.inf
        self._switch_set = False
        self._default_switch = sys.getswitchinterval()
        self.cost = 0.0
        """Running mean of the CPU seconds a delivery takes in the worker that runs it."""

    def dispatch(self, method: str, request: Any, context: Any, local: Handler) -> Any:
        """Run ``method`` here (``local``) or in another worker; return its response."""
        while True:
            peer = self._acquire()
            try:
                if peer is None:
                    started = time.thread_time()
                    try:
                        return local(request, context)
                    finally:
                        self._measured(time.thread_time() - started)
                return self._relay(peer, method, request, context)
            except _Gone:
                continue
            finally:
                self._release(peer)

    def _measured(self, cpu: float) -> None:
        """Fold one call's CPU time into the running mean (no lock: a lost update is harmless)."""
        self.cost += (cpu - self.cost) * _COST_WEIGHT

    def _acquire(self) -> _Peer | None:
        """Where the next delivery runs (None: here), once a slot is free there.

        Calls that cost less CPU than relaying them (``RELAY_WORTH``) run here while this worker has
        a free slot, and go to the least busy other worker only when it has none. Costlier calls go
        to the least busy other worker first, and run here only when every other one is full: a
        handler running here holds the GIL that relaying needs.
        """
        with self._cond:
            while True:
                if time.monotonic() - self._scanned >= _RESCAN:
                    self._rescan()
                best = min(self._peers.values(), key=lambda p: p.busy, default=None)
                peer_free = best is not None and best.busy < self.capacity
                local_free = self._local < self.capacity
                costly = self.cost >= RELAY_WORTH
                if costly != self._switch_set:
                    # Costly handlers here hold the GIL for up to the switch interval (5 ms by
                    # default) while relayed calls wait for it to pass deliveries on; cheap ones
                    # keep the default, which costs less in switches.
                    sys.setswitchinterval(SWITCH_INTERVAL if costly else self._default_switch)
                    self._switch_set = costly
                if local_free and (not costly or not peer_free):
                    self._local += 1
                    return None
                if peer_free:
                    assert best is not None
                    best.busy += 1
                    return best
                if time.monotonic() - self._scanned >= _RESCAN_WHEN_FULL:
                    self._rescan()  # a worker may have started since
                    continue
                self._cond.wait(_RESCAN_WHEN_FULL)

    def _release(self, peer: _Peer | None) -> None:
        with self._cond:
            if peer is None:
                self._local -= 1
            else:
                peer.busy -= 1
            self._cond.notify()

    def _rescan(self) -> None:
        self._scanned = time.monotonic()
        found = {}
        for path in self.directory.glob("*.sock"):
            pid = int(path.stem) if path.stem.isdigit() else 0
            if pid and pid != self._me:
                found[pid] = path
        for pid in set(self._peers) - set(found):
            self._drop(pid)
        for pid, path in found.items():
            self._peers.setdefault(pid, _Peer(pid, path))

    def _drop(self, pid: int) -> None:
        peer = self._peers.pop(pid, None)
        if peer is not None:
            peer.close()

    def _relay(self, peer: _Peer, method: str, request: Any, context: Any) -> Any:
        try:
            with self._cond:
                sock = peer.connect()
        except OSError:
            with self._cond:
                self._drop(peer.pid)
            peer.path.unlink(missing_ok=True)  # nobody listens there any more
            raise _Gone from None
        metadata = tuple((m[0], m[1]) for m in context.invocation_metadata())
        payload = pickle.dumps(
            (method, request.SerializeToString(), metadata), protocol=pickle.HIGHEST_PROTOCOL
        )
        try:
            _send(sock, payload)
            frame = _recv(sock)
        except OSError:
            frame = None
        if frame is None:
            sock.close()
            with self._cond:
                self._drop(peer.pid)
            log.warning("worker %d stopped while handling a delivery; daprd will redeliver it", peer.pid)
            return context.abort(
                grpc.StatusCode.UNAVAILABLE, f"worker {peer.pid} stopped while handling the delivery"
            )
        with self._cond:
            peer.idle.append(sock)
        kind, *rest = pickle.loads(frame)  # type: ignore[arg-type]
        if kind == "ok":
            self._measured(rest[1])
            return MESSAGES[method][1].FromString(rest[0])
        return context.abort(getattr(grpc.StatusCode, rest[0]), rest[1])
