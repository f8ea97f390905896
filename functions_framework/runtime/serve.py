"""Start the runtimes a function needs, handle signals, drain gracefully.

On SIGTERM (or SIGINT): readiness turns 503 at once, requests in flight finish within the grace
period, then the process exits 0. A second signal stops at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..context import FunctionContext
from ..dapr_client import SidecarAddress, configure_sdk
from ..invocation import Invoker, run_coroutine
from ..loader import LoadedFunction
from ..plugins import load_plugins
from ..runtime_context import RuntimeContext
from .delivery import AsyncOptions, Router
from .drain import wait_drained
from .http import HttpApp, HttpOptions
from .lifecycle import Lifecycle
from .ports import check_ports, serving_claims

log = logging.getLogger("functions_framework.serve")

SERVERS = ("granian", "wsgiref")


@dataclass(frozen=True)
class ServeOptions:
    """How to serve a function."""

    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int | None = None
    """HTTP port; ``None`` takes the context's."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Worker processes sharing the port."""
    threads: int = 4
    """Handler threads per worker process."""
    timeout: float | None = None
    """Per-call timeout in seconds (504 over HTTP); ``None`` for no limit."""
    grace: float = 30.0
    """Seconds in-flight calls get to finish after SIGTERM."""
    server: str = "granian"
    """``granian`` (default) or ``wsgiref`` (pure-Python fallback, one process)."""
    http: HttpOptions = field(default_factory=HttpOptions)
    """HTTP runtime settings."""
    dapr: AsyncOptions = field(default_factory=AsyncOptions)
    """Dapr runtime settings."""
    dapr_port: int | None = None
    """AppCallback gRPC port; ``None`` takes the context's."""
    dapr_address: SidecarAddress | None = None
    """The sidecar, for outputs, state and drain; ``None``: Dapr's default address (127.0.0.1:50001)."""


def build_worker(
    function: LoadedFunction,
    context: FunctionContext,
    options: ServeOptions,
    lifecycle: Lifecycle,
    dapr_port: int,
) -> HttpApp:
    """Build one worker: plugins, ``init_context``, invoker, and the runtimes the context asks for.

    Runs in each worker process, after the fork.
    """
    hooks = load_plugins(context)
    if options.dapr_address is not None and context.uses_dapr:
        configure_sdk(options.dapr_address)  # for the function's own DaprClient()
    runtime_context = RuntimeContext(context, dapr_address=options.dapr_address)
    atexit.register(runtime_context.close)  # closes the Dapr client when the worker exits
    run_init_context(function, runtime_context)
    invoker = Invoker(function.handler, runtime_context, hooks, options.timeout)
    dapr_routes = None
    grpc_server = None
    if context.inputs:
        router = Router(context, invoker, options.dapr, lifecycle)
        if options.dapr.app_protocol == "http":
            from .dapr_http import DaprHttpRoutes

            dapr_routes = DaprHttpRoutes(router)
        else:
            from .dapr import start_appcallback

            grpc_server = start_appcallback(router, options.host, dapr_port, options.threads)
            atexit.register(grpc_server.stop, 1.0)
    app = HttpApp(function, invoker, options.http, lifecycle, dapr_routes, serve_function=context.has_http)
    app.keep_alive = grpc_server  # the gRPC server stops when garbage-collected
    return app


def run_init_context(function: LoadedFunction, runtime_context: RuntimeContext) -> None:
    init = function.init_context
    if init is None:
        return
    result = init(runtime_context)
    if hasattr(result, "__await__"):
        run_coroutine(result)


def announce(context: FunctionContext, options: ServeOptions, port: int, dapr_port: int) -> None:
    """Log the bound addresses; tests and tools read the ports from these lines."""
    workers = 1 if options.server == "wsgiref" else options.workers
    log.info(
        "serving %r on http://%s:%d (%s, %d worker(s) x %d thread(s))",
        context.name,
        options.host,
        port,
        options.server,
        workers,
        options.threads,
    )
    if context.inputs:
        protocol = options.dapr.app_protocol
        where = (
            f"grpc://{options.host}:{dapr_port}" if protocol == "grpc" else f"http://{options.host}:{port}"
        )
        log.info("serving Dapr app callbacks for %s on %s", ", ".join(context.inputs), where)
        if protocol == "grpc" and workers > 1:
            log.warning(
                "daprd opens a single gRPC connection to its app, so with the grpc app protocol one of "
                "the %d workers receives the deliveries; use --app-protocol http (or more replicas) "
                "to spread them over every worker",
                workers,
            )


def resolve_ports(context: FunctionContext, options: ServeOptions) -> tuple[int, int, list[socket.socket]]:
    """The HTTP and AppCallback ports. Port 0 becomes a free port, held by a reservation socket
    (workers bind the ports each, with SO_REUSEPORT); keep the reservations open while serving.
    Raises ``ports.PortError`` when a port is held by anybody (another funcd included)."""
    port = options.port if options.port is not None else (context.http_port or 8080)
    dapr_port = options.dapr_port if options.dapr_port is not None else context.dapr_port
    check_ports(
        options.host,
        serving_claims(context.has_http, bool(context.inputs), options.dapr.app_protocol, port, dapr_port),
    )
    reservations = []
    if port == 0:
        reservations.append(reserve_port(options.host))
        port = reservations[-1].getsockname()[1]
    if dapr_port == 0 and context.inputs and options.dapr.app_protocol == "grpc":
        reservations.append(reserve_port(options.host))
        dapr_port = reservations[-1].getsockname()[1]
    return port, dapr_port, reservations


def serve(
    function: LoadedFunction,
    context: FunctionContext,
    options: ServeOptions,
    on_ready: Callable[[int], None] | None = None,
) -> int:
    """Serve until stopped. Returns the process exit code."""
    port, dapr_port, reservations = resolve_ports(context, options)
    lifecycle = Lifecycle()
    try:
        if options.server == "wsgiref":
            return _serve_wsgiref(function, context, options, lifecycle, port, dapr_port, on_ready)
        return _serve_granian(function, context, options, lifecycle, port, dapr_port)
    finally:
        for sock in reservations:
            sock.close()


def _serve_granian(
    function: LoadedFunction,
    context: FunctionContext,
    options: ServeOptions,
    lifecycle: Lifecycle,
    port: int,
    dapr_port: int,
) -> int:
    from granian.constants import Interfaces
    from granian.server.mp import MPServer

    grace = options.grace

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
            announce(context, options, port, dapr_port)

        def _drain(self) -> None:
            if wait_drained(lifecycle, grace, context, options):
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
        return build_worker(function, context, options, lifecycle, dapr_port)

    supervisor = os.getpid()

    server = Server(
        target="funcd",
        address=options.host,
        port=port,
        interface=Interfaces.WSGI,
        workers=options.workers,
        blocking_threads=options.threads,
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
    options: ServeOptions,
    lifecycle: Lifecycle,
    port: int,
    dapr_port: int,
    on_ready: Callable[[int], None] | None,
) -> int:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class ThreadingServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    app = build_worker(function, context, options, lifecycle, dapr_port)
    httpd = make_server(options.host, port, app, server_class=ThreadingServer, handler_class=QuietHandler)
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stopping.is_set():
            os._exit(1)
        stopping.set()
        lifecycle.start_draining()

        def drain() -> None:
            wait_drained(lifecycle, options.grace, context, options)
            httpd.shutdown()

        threading.Thread(target=drain, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bound = httpd.server_address[1]
    announce(context, options, int(bound), dapr_port)
    if on_ready:
        on_ready(int(bound))
    httpd.serve_forever(poll_interval=0.1)
    httpd.server_close()
    sys.stdout.flush()
    return 0
