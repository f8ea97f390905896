"""The ``funcd`` command. The only module that reads os.environ, configures logging and exits."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .dapr_client import SidecarAddress, sidecar_address
from .errors import FunctionsFrameworkError, SidecarError, UsageError
from .loader import LoadedFunction, find_source, load_function
from .logs import configure_logging
from .model import FunctionContext, parse_context_text
from .settings import APP_PROTOCOLS, DEFAULT_MAX_BODY, ERROR_ACKS, SERVERS, Settings
from .signatures import SIGNATURE_TYPES

log = logging.getLogger("functions_framework.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(name: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name}: expected 1 or more, got {value}")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port: expected a number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port: expected a number 0-65535, got {value}")
    return value


def _seconds(name: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected seconds, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{name}: expected 0 or more seconds, got {value:g}")
        return value

    return parse


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    mult = units.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in units else t
    try:
        value = int(float(digits) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"max-body: expected a size such as 1048576 or 32MiB, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"max-body: expected a positive size, got {text!r}")
    return value


def _hook_names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if not n.replace("-", "").replace("_", "").replace(".", "").isalnum()]
    if bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated plugin names, got {bad[0]!r}")
    return names


def _render_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cluster-wide settings of every Function")
    g.add_argument(
        "--daprd-image", help="daprd image of dapr.mode: container (default ghcr.io/dapr/daprd:1.18.2)"
    )
    g.add_argument("--pre-hooks", type=_hook_names, default=(), help="plugins run before every call")
    g.add_argument("--post-hooks", type=_hook_names, default=(), help="plugins run after every call")


def render_options(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    """The controller's and ``funcd render``'s RenderOptions, from flags, else FUNCD_DAPRD_IMAGE."""
    from funcd_controller.render import RenderOptions

    image = args.daprd_image or env.get("FUNCD_DAPRD_IMAGE") or RenderOptions.daprd_image
    return RenderOptions(daprd_image=image, pre_hooks=args.pre_hooks, post_hooks=args.post_hooks)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="funcd", description="Run Python functions on Kubernetes, Dapr and KEDA.")
    parser.add_argument("--version", action="version", version=f"funcd {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="serve a function")
    run.add_argument("path", nargs="?", help="a .py file, or a folder with main.py (and function.yaml)")
    run.add_argument("--target", help="the function to serve (default: handler; env FUNCTION_TARGET)")
    run.add_argument("--context", metavar="FILE", help="context JSON/YAML, or a Function resource YAML")
    run.add_argument(
        "--signature-type",
        choices=SIGNATURE_TYPES,
        help="how the function is called (default: see docs/authoring.md; env FUNCTION_SIGNATURE_TYPE)",
    )
    run.add_argument("--host", help="address to listen on (default 127.0.0.1; env HOST)")
    run.add_argument("--port", type=_port, help="HTTP port (default: the context's, else 8080; env PORT)")
    run.add_argument("--workers", type=_positive_int("workers"), help="worker processes (default: cores)")
    run.add_argument("--threads", type=_positive_int("threads"), default=4, help="threads per worker")
    run.add_argument(
        "--timeout", type=_seconds("timeout"), help="per-call timeout in seconds (default: none)"
    )
    run.add_argument("--grace", type=_seconds("grace"), default=30.0, help="drain period after SIGTERM")
    run.add_argument(
        "--max-body", type=_size, default=DEFAULT_MAX_BODY, help="largest request body (default 32MiB)"
    )
    run.add_argument("--health-path", default="/healthz", help="liveness path")
    run.add_argument("--ready-path", default="/readyz", help="readiness path")
    run.add_argument("--server", choices=SERVERS, default="granian", help="HTTP server")
    run.add_argument(
        "--app-protocol", choices=APP_PROTOCOLS, help="how daprd calls the function (default grpc)"
    )
    run.add_argument(
        "--dapr-port", type=_port, help="AppCallback gRPC port (default: the context's, else 50051)"
    )
    run.add_argument("--dapr-address", help="the sidecar's gRPC host:port (default: DAPR_GRPC_ENDPOINT/PORT)")
    run.add_argument(
        "--dapr-http-address",
        help="the sidecar's HTTP host:port (optional; default: DAPR_HTTP_ENDPOINT/PORT)",
    )
    run.add_argument(
        "--on-error", choices=ERROR_ACKS, default="retry", help="ack when an async handler raises"
    )
    run.add_argument(
        "--on-invalid", choices=ERROR_ACKS, default="drop", help="ack for an event that does not decode"
    )
    run.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="one JSON line per request or delivery (env FUNCD_ACCESS_LOG=1)",
    )
    run.add_argument("--no-local-dapr", action="store_true", help="never start a local daprd")

    pub = sub.add_parser("publish", help="publish an event to a function running locally (embedded Dapr)")
    pub.add_argument("topic", help="topic to publish to")
    pub.add_argument("data", help="the event: JSON, or any text")
    pub.add_argument("--pubsub", help="pub/sub component (default: the function's only one)")
    pub.add_argument("--app-id", help="which running function (default: the only one)")
    pub.add_argument(
        "--content-type", help="default: application/json when DATA parses as JSON, else text/plain"
    )
    run.add_argument("--debug", action="store_true", help="debug logs and error details in responses")

    ctl = sub.add_parser("controller", help="run the Function controller against a cluster")
    ctl.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster; env KUBECONFIG)")
    ctl.add_argument("--workers", type=_positive_int("workers"), default=4, help="reconcile workers (4)")
    ctl.add_argument("--health-host", default="0.0.0.0", help="address of /healthz and /readyz")
    ctl.add_argument("--health-port", type=_port, default=8081, help="port of /healthz and /readyz")
    ctl.add_argument(
        "--resync", type=_seconds("resync"), default=300.0, help="seconds between full resyncs (default 300)"
    )
    ctl.add_argument(
        "--leader-elect",
        action="store_true",
        help="run only while holding the Lease funcd-controller (for more than one replica)",
    )
    ctl.add_argument(
        "--lease-namespace", help="namespace of the Lease (default: $POD_NAMESPACE, else funcd-system)"
    )
    ctl.add_argument(
        "--lease-duration", type=_seconds("lease-duration"), default=15.0, help="seconds (default 15)"
    )
    ctl.add_argument(
        "--renew-deadline", type=_seconds("renew-deadline"), default=10.0, help="seconds (default 10)"
    )
    ctl.add_argument("--retry-period", type=_seconds("retry-period"), default=2.0, help="seconds (default 2)")
    ctl.add_argument(
        "--watch-timeout",
        type=_positive_int("watch-timeout"),
        default=60,
        help="seconds the API server keeps one watch open before it is resumed (default 60)",
    )

    render = sub.add_parser("render", help="print the Kubernetes manifests of a Function resource (YAML)")
    render.add_argument("file", help="a Function resource, e.g. function.yaml")
    for p in (ctl, render):
        _render_options(p)

    dep = sub.add_parser("deploy", help="apply a Function resource and wait until it is Ready")
    dep.add_argument("file", help="a Function resource, e.g. function.yaml")
    dep.add_argument(
        "--kubeconfig", help="kubeconfig file (default: env KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    dep.add_argument(
        "--namespace", "-n", help="namespace (default: the file's, else the kubeconfig context's)"
    )
    dep.add_argument(
        "--timeout", type=_seconds("timeout"), default=120.0, help="seconds to wait for Ready (default 120)"
    )

    bld = sub.add_parser("build", help="build a function folder into an OCI image archive (no daemon)")
    bld.add_argument("folder", help="the function's folder: main.py, optional requirements.txt")
    bld.add_argument(
        "--tag", required=True, metavar="NAME:TAG", help="the image's name, NAME:TAG (e.g. hello:1)"
    )
    bld.add_argument(
        "--output", "-o", metavar="FILE", help="the archive to write (default: NAME-TAG.oci.tar)"
    )
    bld.add_argument(
        "--base", metavar="ARCHIVE", help="the runtime image archive (default: the one `make image` built)"
    )
    bld.add_argument("--target", help="the function to serve (default handler); sets FUNCTION_TARGET")

    new = sub.add_parser("new", help="scaffold a function with a test")
    new.add_argument("name", help="folder to create")
    new.add_argument("--template", choices=("http",), default="http", help="what to scaffold")
    return parser


def load_context(
    args: argparse.Namespace, env: Mapping[str, str], context_file: Path | None
) -> FunctionContext:
    if args.context:
        path = Path(args.context)
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"--context: cannot read {path}: {exc.strerror}") from None
        return parse_context_text(text, str(path))
    for var in ("FUNC_CONTEXT_V1BETA2", "FUNC_CONTEXT"):
        if env.get(var):
            return parse_context_text(env[var], f"${var}")
    if context_file is not None:
        return parse_context_text(context_file.read_text(), str(context_file))
    return FunctionContext()


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"{name}: expected 1/true/yes/on or 0/false/no/off, got {env[name]!r}")


def build_settings(args: argparse.Namespace, env: Mapping[str, str], context: FunctionContext) -> Settings:
    """The effective settings: flags, then env, then the context, then defaults."""
    if args.port is not None:
        port = args.port
    elif env.get("PORT"):
        try:
            port = _port(env["PORT"])
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"PORT: {exc}") from None
    else:
        port = context.http_port if context.http_port is not None else 8080
    if args.access_log is not None:
        access_log = args.access_log
    elif env.get("FUNCD_ACCESS_LOG"):
        access_log = _flag(env, "FUNCD_ACCESS_LOG")
    else:
        access_log = context.access_log
    return Settings(
        host=args.host or env.get("HOST") or "127.0.0.1",
        port=port,
        dapr_port=args.dapr_port if args.dapr_port is not None else context.dapr_port,
        workers=args.workers or os.cpu_count() or 1,
        threads=args.threads,
        timeout=args.timeout or None,
        grace=args.grace,
        server=args.server,
        max_body=args.max_body,
        health_path=args.health_path,
        ready_path=args.ready_path,
        debug=args.debug,
        access_log=access_log,
        app_protocol=args.app_protocol or context.app_protocol,  # type: ignore[arg-type]
        on_error=args.on_error,
        on_invalid=args.on_invalid,
        app_token=env.get("APP_API_TOKEN") or None,
        dapr_address=sidecar_address(args.dapr_address, args.dapr_http_address, env),
        local_dapr=not args.no_local_dapr,
    )


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    source = find_source(
        args.path or env.get("FUNCTION_SOURCE") or ("main.py" if Path("main.py").exists() else ".")
    )
    context = load_context(args, env, source.context_file)
    configure_logging(context.name, logging.DEBUG if args.debug else logging.INFO)
    target = args.target or env.get("FUNCTION_TARGET") or "handler"
    signature = args.signature_type or env.get("FUNCTION_SIGNATURE_TYPE") or None
    if signature is not None and signature not in SIGNATURE_TYPES:
        raise UsageError(
            f"FUNCTION_SIGNATURE_TYPE: expected one of {', '.join(SIGNATURE_TYPES)}, got {signature!r}"
        )
    settings = build_settings(args, env, context)
    function = load_function(source.main, target, signature, context)
    from .plugins import load_factories
    from .runtime.resiliency import dead_letter_warnings
    from .runtime.serve import serve

    load_factories(context)  # a hook naming a missing plugin fails here, before any worker starts
    if context.uses_dapr and settings.dapr_address is None and settings.local_dapr:
        return serve_with_local_dapr(function, context, settings, source.main.parent, env)
    for warning in dead_letter_warnings(context, None):  # the sidecar's resiliency policies are unknown
        log.warning("%s", warning)
    return serve(function, context, settings)


def testbin_cache(env: Mapping[str, str]) -> Path:
    return Path(env.get("FUNCD_TESTBIN_CACHE") or Path.home() / ".cache" / "funcd-testbin")


def serve_with_local_dapr(
    function: LoadedFunction,
    context: FunctionContext,
    settings: Settings,
    folder: Path,
    env: Mapping[str, str],
) -> int:
    """Embedded mode: start a daprd for the function, point the outputs at it, serve, stop it."""
    from .runtime.serve import resolve_ports, serve
    from .runtime.sidecar import find_daprd, start_local_daprd, state_dir

    daprd = find_daprd(env.get("PATH", ""), Path.home(), testbin_cache(env))
    settings, reservations = resolve_ports(context, settings)
    app_port = settings.dapr_port if settings.app_protocol == "grpc" else settings.port
    for attempt in range(3):
        sidecar = start_local_daprd(
            daprd,
            context,
            folder,
            app_port,
            settings.app_protocol,
            state_dir(env.get("XDG_RUNTIME_DIR")),
            settings.ready_path,
        )
        try:
            sidecar.wait_ready()
            break
        except SidecarError:
            # daprd's own ports are picked free a moment before it binds them; another process may
            # take one in between. Try again with new ports, at most three times.
            busy = "address already in use" in sidecar.log_tail()
            sidecar.stop()
            if not busy or attempt == 2:
                raise
    try:
        address = SidecarAddress(sidecar.grpc_address, sidecar.http_url, env.get("DAPR_API_TOKEN") or None)
        settings = replace(settings, dapr_address=address)
        return serve(function, context, settings, ports_checked=True)
    finally:
        sidecar.stop()
        for sock in reservations:
            sock.close()


def cmd_publish(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .publish import publish

    print(
        publish(
            args.topic, args.data, args.pubsub, args.app_id, env.get("XDG_RUNTIME_DIR"), args.content_type
        )
    )
    return 0


def cmd_controller(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    configure_logging("funcd-controller", logging.INFO)
    from funcd_controller.manager import run

    kubeconfig = args.kubeconfig or env.get("KUBECONFIG") or None
    election = None
    if args.leader_elect:
        timing = (args.lease_duration, args.renew_deadline, args.retry_period)
        if not (timing[0] > timing[1] > 1.2 * timing[2] and timing[2] >= 1):
            raise UsageError(
                "expected --lease-duration > --renew-deadline > 1.2 x --retry-period >= 1 s, got "
                f"{timing[0]:g} / {timing[1]:g} / {timing[2]:g}"
            )
        import socket
        import uuid

        namespace = args.lease_namespace or env.get("POD_NAMESPACE") or "funcd-system"
        identity = env.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        election = (namespace, identity, timing)
    address = (args.health_host, args.health_port)
    options = render_options(args, env)
    return run(kubeconfig, args.workers, *address, args.resync, election, args.watch_timeout, options)


def cmd_render(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print what the controller would apply for a Function, as multi-document YAML (for GitOps)."""
    import yaml

    from .errors import ContextError
    from .model import parse_function

    path = Path(args.file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: expected a YAML Function resource, got a syntax error: {exc}") from None
    from funcd_controller.render import render

    try:
        rendered = render(parse_function(data, str(path)), render_options(args, env))
    except ContextError as exc:
        print(f"funcd: error: {exc}", file=sys.stderr)
        return 2
    for note in rendered.notes:
        print(f"funcd: note: {note.condition} {note.reason}: {note.message}", file=sys.stderr)
    print(yaml.safe_dump_all(rendered.objects, sort_keys=False), end="")
    return 0


def cmd_deploy(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Server-side apply a Function, then print its conditions as they change until Ready or timeout."""
    from funcd_controller.deploy import deploy

    kubeconfig = args.kubeconfig or env.get("KUBECONFIG") or None
    return deploy(args.file, kubeconfig, args.namespace, args.timeout)


def cmd_build(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``funcd build``: the function on the runtime image, as an OCI archive (funcd_controller.image)."""
    from funcd_controller.image import build_function_image
    from funcd_controller.image.names import RUNTIME_ARCHIVE

    base = Path(args.base) if args.base else testbin_cache(env) / "images" / RUNTIME_ARCHIVE
    epoch_text = env.get("SOURCE_DATE_EPOCH", "0")
    if not epoch_text.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH: expected whole seconds since 1970, got {epoch_text!r}")
    output = Path(args.output) if args.output else None
    built = build_function_image(Path(args.folder), args.tag, base, output, args.target, int(epoch_text))
    print(f"{built.output}: {built.ref.name} {built.digest} ({built.size} bytes, {built.layers} layers)")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from .scaffold import scaffold

    created = scaffold(Path(args.name), args.template)
    print(f"created {args.name}/: {', '.join(p.name for p in created)}")
    print(f"  run it:   funcd run {args.name}")
    print(f"  test it:  python -m pytest {args.name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "run":
            return cmd_run(args, os.environ)
        if args.command == "controller":
            return cmd_controller(args, os.environ)
        if args.command == "build":
            return cmd_build(args, os.environ)
        if args.command == "new":
            return cmd_new(args)
        if args.command == "render":
            return cmd_render(args, os.environ)
        if args.command == "deploy":
            return cmd_deploy(args, os.environ)
        if args.command == "publish":
            return cmd_publish(args, os.environ)
        parser.print_help()
        return 2
    except UsageError as exc:
        print(f"funcd: error: {exc}", file=sys.stderr)
        return 2
    except argparse.ArgumentTypeError as exc:
        print(f"funcd: error: {exc}", file=sys.stderr)
        return 2
    except FunctionsFrameworkError as exc:
        print(f"funcd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
