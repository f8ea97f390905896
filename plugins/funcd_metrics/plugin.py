"""``MetricsPlugin``: the hooks that count, and the route that serves the counts."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, get_args

from prometheus_client import CollectorRegistry, make_wsgi_app

from functions_framework import FunctionContext, Invocation, Outcome
from functions_framework.plugins import OutboundCall, Rejected, RejectReason, WorkerInfo, WsgiApp

from .families import Families
from .multiprocess import LockedCollector, create_directory, retire_worker, use_directory
from .tally import Flusher, Tallies

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from functions_framework.event import Trigger
    from functions_framework.settings import Settings

log = logging.getLogger("funcd_metrics")

DEFAULT_PATH = "/metrics"
SEND_OUTCOMES = ("success", "temporary_error", "permanent_error")


def trigger_label(trigger: Trigger) -> str:
    """``http``, or ``pubsub:<input>`` / ``binding:<input>``: one value per declared trigger."""
    return "http" if trigger.kind == "http" else f"{trigger.kind}:{trigger.name}"


def process_age() -> float | None:
    """Seconds since this process started as the kernel records it (``/proc/self/stat`` field 22,
    in clock ticks since boot: 10 ms resolution), or ``None`` where there is no ``/proc``."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        after_name = stat[stat.rindex(b")") + 2 :].split()  # fields 3.. (the name may hold spaces)
        started = int(after_name[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class MetricsPlugin:
    """Prometheus metrics of one function (hook name ``metrics``); one instance per worker.

    Under ``funcd run`` the supervisor first calls ``supervisor_setup``, and every worker writes its
    samples to the supervisor's multiprocess directory; a scrape of any worker sums all of them.
    Without a supervisor (an embedding, a unit test) the plugin counts in its own registry.

    A call only adds to this worker's plain-Python tallies (``tally.py``); they reach the
    prometheus_client metrics when flushed: right before this worker answers a scrape, every
    ``flush_interval`` seconds from a background thread in multiprocess mode (so a scrape answered by
    another worker lags this one's calls by at most that), and in ``worker_stopping``, before the
    supervisor folds the exited worker's files into the archive.
    """

    name = "metrics"
    directory: ClassVar[str | None] = None
    """The multiprocess directory ``supervisor_setup`` made in this process or its parent."""
    flush_interval: float = 0.5
    """Seconds between background flushes in multiprocess mode: the most a scrape answered by
    another worker lags this worker's calls."""

    def __init__(self, context: FunctionContext | None = None) -> None:
        self.context = context or FunctionContext()
        self.function = self.context.name
        self.path = self.context.metrics.path if self.context.metrics is not None else DEFAULT_PATH
        directory = type(self).directory
        if directory is not None:
            use_directory()
            self.registry = CollectorRegistry(auto_describe=False)
            self.registry.register(LockedCollector(directory))  # type: ignore[arg-type]
            self.families = Families.create(None)
        else:
            self.registry = CollectorRegistry()
            self.families = Families.create(self.registry)
        self.created = time.monotonic()
        named_pre, named_post = self.context.plugin_pre_hooks, self.context.plugin_post_hooks
        self._pre_only = self.name in named_pre and self.name not in named_post
        if self._pre_only:
            log.warning(
                "the metrics plugin is named in the pre hooks only; it counts in its post hook, so "
                "name it in the post hooks too (or set metrics.enabled)"
            )
        self._tallies = Tallies(self.families, self.function)
        self._by_thread = self._tallies.by_thread
        self._flusher: Flusher | None = None
        self.background_flush = directory is not None
        """Flush from a background thread (multiprocess mode: other workers answer scrapes too)."""
        self._rejected = {
            reason: self.families.rejected.labels(self.function, reason) for reason in get_args(RejectReason)
        }
        self._send_callbacks: dict[str, Callable[[BaseException | None], None]] = {}

    # ------------------------------------------------------------------ per call

    def pre_hook(self, invocation: Invocation) -> None:
        if self._pre_only:
            return  # no post hook would take the call out of flight
        invocation.state[self.name] = True
        tally = self._by_thread.get(threading.get_ident()) or self._tallies.mine()
        tally.started += 1

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        tally = self._by_thread.get(threading.get_ident()) or self._tallies.mine()
        if invocation.state.pop(self.name, False):  # False when no pre_hook ran (post hooks only)
            tally.finished += 1
        trigger = invocation.event.trigger
        if outcome.entries is None:
            tally.record(trigger.kind, trigger.name, outcome.duration, outcome.reply)
            return
        for entry in outcome.entries:  # a @batch call: one observation per event, with the batch's time
            tally.record(trigger.kind, trigger.name, entry.duration, entry.reply)

    def flush(self) -> None:
        """Add this worker's counts since the last flush to the prometheus_client metrics."""
        self._tallies.flush()

    def rejected(self, request: Rejected) -> None:
        child = self._rejected.get(request.reason)
        if child is None:
            child = self._rejected[request.reason] = self.families.rejected.labels(
                self.function, request.reason
            )
        child.inc()

    def outbound(self, call: OutboundCall) -> None:
        if call.kind == "state":
            return  # state calls are not sends
        callback = self._send_callbacks.get(call.name)
        if callback is None:
            callback = self._send_callbacks[call.name] = self._send_counter(call.name)
        call.on_done.append(callback)

    def _send_counter(self, output: str) -> Callable[[BaseException | None], None]:
        success, temporary, permanent = (
            self.families.output_sends.labels(self.function, output, outcome) for outcome in SEND_OUTCOMES
        )

        def done(error: BaseException | None) -> None:
            if error is None:
                success.inc()
            elif getattr(error, "temporary", False):
                temporary.inc()
            else:
                permanent.inc()

        return done

    # ------------------------------------------------------------------ per worker

    def worker_started(self, worker: WorkerInfo) -> None:
        age = process_age()
        if age is None:  # no /proc: from the plugin's construction, early in the worker
            age = time.monotonic() - self.created
        self.families.cold_start.labels(self.function).observe(age)
        if self.background_flush and self._flusher is None:
            self._flusher = Flusher(self._tallies, self.flush_interval)

    def worker_stopping(self) -> None:
        """The last flush: it runs in the worker before it exits, so before the supervisor's
        ``worker_exited`` archives the worker's files."""
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None
        self._tallies.flush()

    def routes(self) -> Mapping[str, WsgiApp]:
        served = make_wsgi_app(self.registry)
        flush = self._tallies.flush

        def scrape(environ: dict[str, Any], start_response: Any) -> Any:
            flush()  # this worker's counts are current; other workers' lag by flush_interval at most
            return served(environ, start_response)

        return {self.path: scrape}

    # ------------------------------------------------------------------ in the supervisor

    @classmethod
    def supervisor_setup(cls, settings: Settings) -> None:
        """Create the private multiprocess directory before the workers fork.

        This sets ``PROMETHEUS_MULTIPROC_DIR`` (funcd's settings otherwise never travel through the
        environment): prometheus_client reads it itself, in each worker, to write its values to
        files there, and setting it before the fork is how its multiprocess mode is meant to be used.
        """
        cls.directory = create_directory()
        log.info("metrics: worker processes write their samples to %s", cls.directory)

    @classmethod
    def worker_exited(cls, pid: int) -> None:
        """Fold the exited worker's counts into the directory's archive and remove its files."""
        if cls.directory is not None:
            retire_worker(cls.directory, pid)
