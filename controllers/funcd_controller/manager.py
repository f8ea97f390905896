"""The controller process: watches, a work queue with backoff, workers, health and metrics endpoints.

Watches come from the ``kubernetes`` client (its dynamic client's ``watch``), restarted with backoff
when the API server goes away. Functions are watched cluster-wide, and so are the Deployments,
StatefulSets and Jobs labelled as ours, so that a change to a child (e.g. its available replicas)
reconciles its Function.
Each key (``namespace/name``) is in the queue at most once; a worker that fails with ``TemporaryError``
requeues it with exponential backoff (0.5 s doubling to 60 s); a periodic resync requeues everything.
With leader election (``--leader-elect``) the process stands for the ``funcd-controller`` Lease and
starts its watches and workers only once it holds it; it exits when it loses it, so that a restarted
process stands again with a fresh cache.
"""

from __future__ import annotations

import heapq
import http.server
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .apply import INSTANCE, MANAGED_BY
from .errors import ControllerError, PermanentError, TemporaryError
from .reconcile import API_VERSION, KIND, Reconciler
from .render import DEFAULT_OPTIONS, RenderOptions

log = logging.getLogger("funcd_controller")

WATCHED_CHILDREN = (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("batch/v1", "Job"))
"""Children whose changes (e.g. available replicas) bring their Function back to reconcile."""

LEASE_NAME = "funcd-controller"


def function_fingerprint(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What of a Function can change what we render: not its status, which we write ourselves."""
    md = obj.get("metadata") or {}
    return (
        md.get("generation"),
        sorted((md.get("labels") or {}).items()),
        sorted((md.get("annotations") or {}).items()),
        md.get("deletionTimestamp"),
    )


def child_fingerprint(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What of a workload its Function's status shows (replicas, availability) or that drifted (spec)."""
    md, st = obj.get("metadata") or {}, obj.get("status") or {}
    counts = ("replicas", "availableReplicas", "readyReplicas", "active", "succeeded", "failed")
    progressing = [c.get("reason") for c in st.get("conditions") or [] if c.get("type") == "Progressing"]
    return (md.get("generation"), md.get("deletionTimestamp"), progressing, *(st.get(k) for k in counts))


def backoff(failures: int) -> float:
    """Seconds before retrying a key that failed ``failures`` times in a row: 0.5 doubling to 60."""
    return float(min(0.5 * 2 ** max(failures - 1, 0), 60.0))


class WorkQueue:
    """Keys to reconcile: deduplicated, delayed requeues, never two workers on one key."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: list[str] = []
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, str]] = []
        self.closed = False

    def add(self, key: str, after: float = 0.0) -> None:
        with self._cond:
            if after > 0:
                heapq.heappush(self._delayed, (time.monotonic() + after, key))
            elif key in self._busy:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
            self._cond.notify()

    def get(self) -> str | None:
        with self._cond:
            while True:
                if self.closed:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, key = heapq.heappop(self._delayed)
                    if key in self._busy:  # due while a worker has it: once more after that worker
                        self._dirty.add(key)
                    elif key not in self._queued:
                        self._queued.add(key)
                        self._ready.append(key)
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    self._busy.add(key)
                    return key
                wait = self._delayed[0][0] - now if self._delayed else None
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._busy.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._queued.add(key)
                self._ready.append(key)
                self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Metrics:
    """The controller's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "funcd_controller_reconciles", "Reconciles, by result", ["result"], registry=self.registry
        )
        self.duration = Histogram(
            "funcd_controller_reconcile_seconds", "Time one reconcile took", registry=self.registry
        )
        self.watch_ends = Counter(
            "funcd_controller_watch_ends",
            "Watches that ended, by kind and cause (timeout: resumed from its version; error: listed again)",
            ["kind", "cause"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "funcd_controller_queue_depth", "Keys waiting in the work queue", registry=self.registry
        )


class Manager:
    """Runs the controller until ``stop()``."""

    def __init__(self, dynamic: Any, workers: int = 4, resync: float = 300.0, reconciler: Any = None) -> None:
        self.dynamic = dynamic
        self.reconciler = reconciler if reconciler is not None else Reconciler(dynamic)
        self.queue = WorkQueue()
        self.workers = workers
        self.resync = resync
        self.watch_timeout = 60  # seconds the API server keeps one watch open before we resume it
        self.stopping = threading.Event()
        self.started = threading.Event()
        self.watching = threading.Event()
        """Set once every watch has listed."""
        self._lock = threading.Lock()
        self._listed: set[str] = set()
        self._broken: dict[str, str] = {}  # kind -> why its watch is down (listing again)
        self._failures: dict[str, int] = {}
        self.metrics = Metrics()
        self.metrics.queue_depth.set_function(lambda: len(self.queue))

    # ------------------------------------------------------------------ watches

    def _watch(
        self,
        api_version: str,
        kind: str,
        key_of: Callable[[dict[str, Any]], str | None],
        fingerprint: Callable[[dict[str, Any]], tuple[Any, ...]],
        **kw: Any,
    ) -> None:
        seen: dict[str, tuple[Any, ...]] = {}  # uid -> fingerprint of the last event
        pause = 0.5
        version: str | None = None  # None: list (again) before watching
        while not self.stopping.is_set():
            try:
                resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
                if version is None:
                    listed = resource.get(**kw)
                    seen.clear()
                    for item in listed.items:
                        obj = item.to_dict()
                        seen[obj["metadata"]["uid"]] = fingerprint(obj)
                        self._enqueue(key_of(obj))
                    self._watch_state(kind, None)
                    version = listed.metadata.resourceVersion
                for event in self._stream(resource, version, kw):
                    obj = event["raw_object"]
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event["type"] != "BOOKMARK" and self._changed(event["type"], obj, seen, fingerprint):
                        self._enqueue(key_of(obj))
                pause = 0.5  # the server closed the watch after its timeout: resume from `version`
                self.metrics.watch_ends.labels(kind, "timeout").inc()
            except Exception as exc:  # the API server went away, or 410 Gone: events may be lost, list
                version = None
                self.metrics.watch_ends.labels(kind, "error").inc()
                if self.stopping.is_set():
                    return
                what = f"{type(exc).__name__}: {exc}"
                self._watch_state(kind, what)
                log.warning("watch of %s ended (%s); listing again in %.1fs", kind, what, pause)
                self.stopping.wait(pause)
                pause = min(pause * 2, 30.0)

    def _watch_state(self, kind: str, broken: str | None) -> None:
        with self._lock:
            if broken is None:
                self._broken.pop(kind, None)
                self._listed.add(kind)
                if len(self._listed) == 1 + len(WATCHED_CHILDREN):
                    self.watching.set()
            else:
                self._broken[kind] = broken.splitlines()[0][:200]

    def readiness(self) -> tuple[bool, str]:
        """Ready while every watch is up: not before each has listed, nor while one lists again
        because the API server went away."""
        with self._lock:
            broken = dict(self._broken)
        if broken:
            kind, why = next(iter(sorted(broken.items())))
            return False, f"lost the API server: the watch of {kind} is listing again ({why})"
        if self.watching.is_set():
            return True, "ready"
        return False, "not watching yet" if self.started.is_set() else "not started"

    @staticmethod
    def _changed(
        kind: str,
        obj: dict[str, Any],
        seen: dict[str, tuple[Any, ...]],
        fingerprint: Callable[[dict[str, Any]], tuple[Any, ...]],
    ) -> bool:
        """Whether an event can change the outcome of a reconcile; our own status writes and the
        bookkeeping updates of children (e.g. observedGeneration) cannot, so they do not requeue."""
        uid = (obj.get("metadata") or {}).get("uid", "")
        if kind == "DELETED":
            seen.pop(uid, None)
            return True
        new = fingerprint(obj)
        old, seen[uid] = seen.get(uid), new
        if kind == "ADDED" and fingerprint is child_fingerprint:
            return False  # a child appears because a reconcile applied it: nothing new to see yet
        return old != new

    def _stream(self, resource: Any, version: str, kw: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from resource.watch(
            resource_version=version, timeout=self.watch_timeout, allow_watch_bookmarks=True, **kw
        )

    def _enqueue(self, key: str | None) -> None:
        if key:
            self.queue.add(key)

    @staticmethod
    def _function_key(obj: dict[str, Any]) -> str:
        return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"

    @staticmethod
    def _owner_key(obj: dict[str, Any]) -> str | None:
        instance = (obj["metadata"].get("labels") or {}).get(INSTANCE)
        return f"{obj['metadata']['namespace']}/{instance}" if instance else None

    # ------------------------------------------------------------------ workers

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            namespace, name = key.split("/", 1)
            started = time.perf_counter()
            try:
                result = self.reconciler.reconcile(namespace, name)
                self.metrics.reconciles.labels("success").inc()
                self._failures.pop(key, None)
                if result.requeue_after:
                    self.queue.add(key, result.requeue_after)
            except PermanentError as exc:  # retrying cannot help; the next change of the key requeues it
                self.metrics.reconciles.labels("error").inc()
                self._failures.pop(key, None)
                log.warning("reconcile %s failed permanently: %s", key, exc)
            except (TemporaryError, ControllerError, Exception) as exc:
                self.metrics.reconciles.labels("error").inc()
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = backoff(failures)
                what = f"{type(exc).__name__}: {exc}"
                log.warning("reconcile %s failed (%s); again in %.1fs", key, what, delay)
                self.queue.add(key, delay)
            finally:
                self.metrics.duration.observe(time.perf_counter() - started)
                self.queue.done(key)

    def _resync(self) -> None:
        while not self.stopping.wait(self.resync):
            try:
                for item in self.dynamic.resources.get(api_version=API_VERSION, kind=KIND).get().items:
                    self._enqueue(self._function_key(item.to_dict()))
            except Exception as exc:
                log.warning("resync failed: %s", exc)

    # ------------------------------------------------------------------ run

    def start(self) -> None:
        self.started.set()
        selector = f"{MANAGED_BY}=funcd"
        threads = [
            threading.Thread(
                target=self._watch,
                args=(API_VERSION, KIND, self._function_key, function_fingerprint),
                daemon=True,
            ),
            *(
                threading.Thread(
                    target=self._watch,
                    args=(api_version, kind, self._owner_key, child_fingerprint),
                    kwargs={"label_selector": selector},
                    daemon=True,
                )
                for api_version, kind in WATCHED_CHILDREN
            ),
            threading.Thread(target=self._resync, daemon=True),
            *(threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)),
        ]
        for t in threads:
            t.start()
        log.info("controller started: %d worker(s), resync every %gs", self.workers, self.resync)

    def stop(self) -> None:
        self.stopping.set()
        self.queue.close()


def serve_health(
    current: Callable[[], Manager | None], host: str, port: int
) -> http.server.ThreadingHTTPServer:
    """``/healthz`` (the process runs), ``/readyz`` (this replica leads and all its watches are up)
    and ``/metrics`` (Prometheus) on ``host:port``, for the Manager ``current()`` returns."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            manager = current()
            if self.path == "/healthz":
                status, body = 200, b"ok"
            elif self.path == "/readyz":
                if manager is None:
                    status, body = 503, b"not connected: the API server or the Function CRD is not served yet"
                elif not manager.started.is_set():
                    status, body = 503, b"standby: another replica holds the Lease"
                else:
                    ready, why = manager.readiness()
                    status, body = (200 if ready else 503), why.encode()
            elif self.path == "/metrics":
                status, body = 200, generate_latest(manager.metrics.registry) if manager else b""
            else:
                status, body = 404, b"not found"
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST if self.path == "/metrics" else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _connect(
    api_client: Any, workers: int, resync: float, options: RenderOptions, done: threading.Event
) -> Manager | None:
    """A Manager once discovery works and the Function CRD is served (retried with backoff, so that
    the controller may start before the API server or the CRD); None if ``done`` is set first."""
    from kubernetes.dynamic import DynamicClient

    from .discovery import Discovery

    delay = 0.5
    while not done.is_set():
        try:
            dynamic = Discovery(DynamicClient(api_client))
            return Manager(dynamic, workers=workers, resync=resync, reconciler=Reconciler(dynamic, options))
        except Exception as exc:
            log.warning("cannot discover the API (%s); again in %.1fs", exc, delay)
            done.wait(delay)
            delay = min(delay * 2, 30.0)
    return None


def _elect(
    api_client: Any,
    namespace: str,
    identity: str,
    timing: tuple[float, float, float],
    lead: Callable[[], None],
) -> threading.Event:
    """Stand for the Lease in a thread; ``lead`` runs once it is held. Returns an event set when the
    Lease is lost (renewal failed for the renew deadline)."""
    from kubernetes.leaderelection import electionconfig, leaderelection

    from .lease import LeaseLock

    lost = threading.Event()
    lease_duration, renew_deadline, retry_period = timing
    lock = LeaseLock(LEASE_NAME, namespace, identity, api_client)

    def leading() -> None:
        log.info("%s holds Lease %s/%s: starting watches and workers", identity, namespace, LEASE_NAME)
        lead()

    # The elector logs every attempt at info level (once per retry period while standing by).
    logging.getLogger("leaderelection").setLevel(logging.WARNING)
    cfg = electionconfig.Config(lock, lease_duration, renew_deadline, retry_period, leading, lost.set)
    elector = leaderelection.LeaderElection(cfg)
    threading.Thread(target=elector.run, name="leader-election", daemon=True).start()
    log.info("standing for Lease %s/%s as %s", namespace, LEASE_NAME, identity)
    return lost


def run(
    kubeconfig: str | None,
    workers: int,
    host: str,
    health_port: int,
    resync: float,
    election: tuple[str, str, tuple[float, float, float]] | None = None,
    watch_timeout: int = 60,
    options: RenderOptions = DEFAULT_OPTIONS,
) -> int:
    """``funcd controller``: run until SIGTERM/SIGINT. ``election`` is ``(namespace, identity,
    (lease duration, renew deadline, retry period))`` to run only while holding the Lease."""
    import signal

    from kubernetes import client, config

    if kubeconfig:
        api_client = config.new_client_from_config(config_file=kubeconfig)
    else:
        config.load_incluster_config()
        api_client = client.ApiClient()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    holder: list[Manager] = []
    health = serve_health(lambda: holder[0] if holder else None, host, health_port)
    log.info("health on http://%s:%d/healthz and /readyz", host, health.server_address[1])
    manager = _connect(api_client, workers, resync, options, done)
    if manager is None:
        health.shutdown()
        return 0
    manager.watch_timeout = watch_timeout
    holder.append(manager)
    lost = threading.Event()
    if election is None:
        manager.start()
    else:
        namespace, identity, timing = election
        lost = _elect(api_client, namespace, identity, timing, manager.start)

        def stop_when_lost() -> None:
            lost.wait()
            done.set()

        threading.Thread(target=stop_when_lost, daemon=True).start()
    done.wait()
    manager.stop()
    health.shutdown()
    if lost.is_set():
        log.error("lost the Lease %s; exiting so that a new process stands for election", LEASE_NAME)
        return 1
    return 0
