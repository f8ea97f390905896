"""Start the runtimes a function needs, handle signals, drain gracefully.

On SIGTERM (or SIGINT): readiness turns 503 at once, requests in flight finish within the grace
period, then the process exits 0. A second signal stops at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from multiprocessing import util as mp_util
from pathlib import Path
from typing import Any

from ..access_log import AccessLog
from ..dapr_client import configure_sdk
from ..invocation import Invoker, run_coroutine
from ..loader import LoadedFunction
from ..model import FunctionContext
from ..plugins import SupervisorHooks, WorkerInfo, load_factories, load_plugins
from ..runtime_context import RuntimeContext
from ..settings import Settings
from .delivery import Router
from .drain import wait_drained
from .http import HttpApp
from .lifecycle import Lifecycle
from .ports import check_ports, serving_claims
from .scratch import owned_directory

log = logging.getLogger("functions_framework.serve")


def build_worker(
    function: LoadedFunction,
    context: FunctionContext,
    settings: Settings,
    lifecycle: Lifecycle,
    relay: Path | None = None,
) -> HttpApp:
    """Build one worker: plugins, ``init_context``, invoker, and the runtimes the context asks for.

    Runs in each worker process, after the fork; ``settings`` holds the bound ports. ``relay``: the
    directory through which the workers share gRPC deliveries (``runtime/fanout.py``).
    """
    hooks = load_plugins(context)
    if settings.access_log:
        access = AccessLog()
        hooks = replace(hooks, post=(*hooks.post, access), plugins=(*hooks.plugins, access))
    if settings.dapr_address is not None and context.uses_dapr:
        configure_sdk(settings.dapr_address)  # for the function's own DaprClient()
    runtime_context = RuntimeContext(context, settings=settings, hooks=hooks)
    run_init_context(function, runtime_context)
    invoker = Invoker(function.adapter, runtime_context, hooks, settings.timeout)
    dapr_routes = None
    grpc_server = relay_server = None
    if settings.app_protocol == "http" and context.uses_dapr:
        # daprd asks an HTTP app for /dapr/config and /dapr/subscribe even when nothing is subscribed
        # (a function with outputs only): funcd answers them, never the function.
        from .dapr_http import DaprHttpRoutes

        dapr_routes = DaprHttpRoutes(Router(context, invoker, settings, lifecycle))
    elif context.inputs:
        from .dapr import start_appcallback

        router = Router(context, invoker, settings, lifecycle)
        grpc_server, relay_server = start_appcallback(
            router, settings.host, settings.dapr_port, settings.threads, relay, settings.workers
        )
    app = HttpApp(invoker, settings, lifecycle, dapr_routes, context.has_http, hooks.routes())
    app.keep_alive = grpc_server  # the gRPC server stops when garbage-collected

    def stop() -> None:
        hooks.worker_stopping()
        if grpc_server is not None:
            grpc_server.stop(1.0)
        if relay_server is not None:
            relay_server.close()
        runtime_context.close()

    # Granian's workers are multiprocessing children, which leave through os._exit: atexit handlers
    # never run there, multiprocessing's finalizers do (and, in a single process, at interpreter exit).
    mp_util.Finalize(None, stop, exitpriority=100)
    hooks.worker_started(WorkerInfo(os.getpid(), context, settings))
    return app


def run_init_context(function: LoadedFunction, runtime_context: RuntimeContext) -> None:
    init = function.init_context
    if init is None:
        return
    result = init(runtime_context)
    if hasattr(result, "__await__"):
        run_coroutine(result)


def announce(context: FunctionContext, settings: Settings) -> None:
    """Log the bound addresses; tests and tools read the ports from these lines."""
    workers = 1 if settings.server == "wsgiref" else settings.workers
    log.info(
        "serving %r on http://%s:%d (%s, %d worker(s) x %d thread(s))",
        context.name,
        settings.host,
        settings.port,
        settings.server,
        workers,
        settings.threads,
    )
    if context.inputs:
        protocol = settings.app_protocol
        where = (
            f"grpc://{settings.host}:{settings.dapr_port}"
            if protocol == "grpc"
            else f"http://{settings.host}:{settings.port}"
        )
        log.info("serving Dapr app callbacks for %s on %s", ", ".join(context.inputs), where)
        if protocol == "grpc" and workers > 1:
            log.info("the worker that receives daprd's connection hands deliveries to all %d", workers)


def resolve_ports(
    context: FunctionContext, settings: Settings, check: bool = True
) -> tuple[Settings, list[socket.socket]]:
    """Settings with concrete ports. Port 0 becomes a free port, held by a reservation socket (workers
    bind the ports each, with SO_REUSEPORT); keep the reservations open while serving.
    Raises ``PortInUseError`` when a port is held by anybody (another funcd included)."""
    port, dapr_port = settings.port, settings.dapr_port
    if check:
        check_ports(
            settings.host,
            serving_claims(context.has_http, bool(context.inputs), settings.app_protocol, port, dapr_port),
        )
    reservations = []
    if port == 0:
        reservations.append(reserve_port(settings.host))
        port = reservations[-1].getsockname()[1]
    if dapr_port == 0 and context.inputs and settings.app_protocol == "grpc":
        reservations.append(reserve_port(settings.host))
        dapr_port = reservations[-1].getsockname()[1]
    return replace(settings, port=port, dapr_port=dapr_port), reservations


def serve(
    function: LoadedFunction,
    context: FunctionContext,
    settings: Settings,
    on_ready: Callable[[int], None] | None = None,
    ports_checked: bool = False,
) -> int:
    """Serve until stopped. Returns the process exit code. ``ports_checked``: the caller already
    checked the ports (local mode checks them before daprd starts; daprd's own outgoing connections
    may then hold one of them as a source port for a moment, which is harmless)."""
    settings, reservations = resolve_ports(context, settings, check=not ports_checked)
    lifecycle = Lifecycle()
    supervisor = SupervisorHooks(load_factories(context))
    supervisor.setup(settings)
    try:
        if settings.server == "wsgiref":
            return _serve_wsgiref(function, context, settings, lifecycle, on_ready)
        relay = relay_directory(context, settings)
        return _serve_granian(function, context, settings, lifecycle, supervisor, relay)
    finally:
        for sock in reservations:
            sock.close()


def relay_directory(context: FunctionContext, settings: Settings) -> Path | None:
    """A private directory for the workers' relay sockets when several workers share gRPC
    deliveries (``runtime/fanout.py``), else None. No gRPC here: the supervisor forks."""
    if context.inputs and settings.app_protocol == "grpc" and settings.workers > 1:
        return Path(owned_directory("funcd-relay-"))
    return None


def _serve_granian(
    function: LoadedFunction,
    context: FunctionContext,
    settings: Settings,
    lifecycle: Lifecycle,
    supervisor_hooks: SupervisorHooks,
    relay: Path | None,
) -> int:
    from granian.constants import Interfaces
    from granian.server.mp import MPServer

    grace = settings.grace

    class Server(MPServer):  # type: ignore[misc]
        draining = False

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            if self.draining:
                log.warning("second signal: stopping now")
                super().signal_handler_interrupt(*args, **kwargs)  # type: ignore[no-untyped-call]
                return
            self.draining = True
            lifecycle.start_draining()
            log.info(
                "draining: readiness is 503; %d call(s) in flight; grace %.1fs", lifecycle.inflight, grace
            )
            threading.Thread(target=self._drain, name="funcd-drain", daemon=True).start()

        def _init_shared_socket(self) -> None:
            super()._init_shared_socket()  # type: ignore[no-untyped-call]
            announce(context, settings)

        def _worker_pids(self) -> list[int]:
            return [w.inner.pid for w in self.wrks if getattr(w.inner, "pid", None)]

        def _stop_workers(self) -> None:
            pids = self._worker_pids()
            try:
                super()._stop_workers()  # type: ignore[no-untyped-call]
            finally:
                for pid in pids:
                    supervisor_hooks.worker_exited(pid)

        def _respawn_workers(self, workers: Any, *args: Any, **kwargs: Any) -> None:
            pids = self._worker_pids()
            super()._respawn_workers(workers, *args, **kwargs)  # type: ignore[no-untyped-call]
            for pid in set(pids) - set(self._worker_pids()):
                supervisor_hooks.worker_exited(pid)

        def _drain(self) -> None:
            if wait_drained(lifecycle, grace, context, settings):
                log.info("drained; stopping")
            else:
                log.warning(
                    "grace period of %.1fs over with %d call(s) in flight; stopping",
                    grace,
                    lifecycle.inflight,
                )
            MPServer.signal_handler_interrupt(self)  # type: ignore[no-untyped-call,arg-type]

    def loader(_target: str) -> Any:
        # Until granian installs the worker's own handlers, a stop signal must end this worker, not
        # run the supervisor's drain handler inherited through fork.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        die_with_parent(supervisor)
        return build_worker(function, context, settings, lifecycle, relay)

    supervisor = os.getpid()

    server = Server(
        target="funcd",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=settings.workers,
        blocking_threads=settings.threads,
        backlog=2048,
        log_enabled=False,
        workers_kill_timeout=max(1, int(grace)),
    )
    try:
        server.serve(target_loader=loader)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the supervisor dies, so that no orphan keeps the ports."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(1)


def reserve_port(host: str) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket on a free port; workers then bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def _serve_wsgiref(
    function: LoadedFunction,
    context: FunctionContext,
    settings: Settings,
    lifecycle: Lifecycle,
    on_ready: Callable[[int], None] | None,
) -> int:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class ThreadingServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    app = build_worker(function, context, settings, lifecycle)
    httpd = make_server(
        settings.host, settings.port, app, server_class=ThreadingServer, handler_class=QuietHandler
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stopping.is_set():
            os._exit(1)
        stopping.set()
        lifecycle.start_draining()

        def drain() -> None:
            wait_drained(lifecycle, settings.grace, context, settings)
            httpd.shutdown()

        threading.Thread(target=drain, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bound = httpd.server_address[1]
    announce(context, replace(settings, port=int(bound)))
    if on_ready:
        on_ready(int(bound))
    httpd.serve_forever(poll_interval=0.1)
    httpd.server_close()
    sys.stdout.flush()
    return 0
