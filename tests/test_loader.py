"""The loader: the signature rules (loader.py's docstring), arity and trigger checks at load time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import functions_framework as ff
from functions_framework.context.user_context import UserContext
from functions_framework.errors import FunctionLoadError, SignatureError
from functions_framework.loader import check_arity, find_source, load_function, pick_signature
from functions_framework.model import Component, FunctionContext
from functions_framework.signatures import SIGNATURE_TYPES

PUBSUB_INPUT = {"msg": Component("msg", "pubsub", "pubsub.redis", topic="orders")}
BINDING_INPUT = {"cron": Component("cron", "cron", "bindings.cron")}


# ---------------------------------------------------------------- rule 1: the flag / env wins


def test_rule_1_a_requested_signature_wins_over_everything():
    @ff.http
    def marked(request):
        pass

    def two(context, event):
        pass

    assert pick_signature(marked, "cloudevent") == "cloudevent"
    assert pick_signature(two, "event") == "event"
    for name in SIGNATURE_TYPES:
        assert pick_signature(two, name) == name


def test_rule_1_an_unknown_requested_signature_is_refused_listing_the_known_ones():
    with pytest.raises(SignatureError) as info:
        pick_signature(lambda r: r, "cloud_event")
    message = str(info.value)
    assert "'cloud_event'" in message
    for name in SIGNATURE_TYPES:
        assert name in message


# ---------------------------------------------------------------- rule 2: decorators


def test_rule_2_decorators_mark_the_signature_whatever_the_parameters_are_named():
    @ff.http
    def a(context):  # named like an OpenFunction context, but marked @http
        pass

    @ff.cloud_event
    def b(request):
        pass

    @ff.typed
    def c(context):
        pass

    @ff.typed(dict)
    def d(obj):
        pass

    assert [pick_signature(f) for f in (a, b, c, d)] == ["http", "cloudevent", "typed", "typed"]


# ---------------------------------------------------------------- rule 3: UserContext annotation


def test_rule_3_a_first_parameter_annotated_user_context_is_openfunction():
    def real(anything: UserContext):
        pass

    def as_string(anything: "UserContext"):  # noqa: UP037 - an annotation left as text
        pass

    def dotted(anything: functions_framework.context.user_context.UserContext, data):  # noqa: F821
        pass

    assert [pick_signature(f) for f in (real, as_string, dotted)] == ["openfunction"] * 3


# ---------------------------------------------------------------- rule 4: two parameters


def test_rule_4_two_parameters_are_funcd_or_openfunction_when_the_second_is_data():
    def funcd(context, event):
        pass

    def named_otherwise(ctx, ev):
        pass

    def openfunction(context, data):
        pass

    def with_default(context, event=None):
        pass

    assert pick_signature(funcd) == "funcd"
    assert pick_signature(named_otherwise) == "funcd"
    assert pick_signature(openfunction) == "openfunction"
    assert pick_signature(with_default) == "funcd"


def test_rule_4_callables_count_their_call_parameters():
    class Handler:
        def __call__(self, context, event):
            pass

    assert pick_signature(Handler()) == "funcd"


# ---------------------------------------------------------------- rule 5: one parameter


@pytest.mark.parametrize(
    ("name", "signature"),
    [("request", "http"), ("req", "http"), ("context", "openfunction"), ("ctx", "openfunction")],
)
def test_rule_5_one_parameter_is_http_or_openfunction_by_its_name(name, signature):
    namespace: dict = {}
    exec(f"def f({name}): pass", namespace)
    assert pick_signature(namespace["f"]) == signature


# ---------------------------------------------------------------- no rule matches


@pytest.mark.parametrize("source", ["def f(): pass", "def f(a, b, c): pass", "def f(*, key): pass"])
def test_no_rule_matches_a_signature_error_naming_the_function_and_the_accepted_ones(source):
    namespace: dict = {}
    exec(source, namespace)
    with pytest.raises(SignatureError) as info:
        pick_signature(namespace["f"])
    message = str(info.value)
    assert message.startswith("f(")
    assert "matches no signature" in message
    assert_names_accepted(message)


def assert_names_accepted(message: str) -> None:
    accepted = message.split("funcd accepts:", 1)[1]
    for name, params in [
        ("funcd", "(context, event)"),
        ("http", "(request)"),
        ("cloudevent", "(cloud_event)"),
        ("typed", "(obj)"),
        ("event", "(data, context)"),
        ("openfunction", "(context) or (context, data)"),
    ]:
        assert f"{name}{params}" in accepted, message


# ---------------------------------------------------------------- arity


@pytest.mark.parametrize(
    ("source", "signature"),
    [
        ("def f(a, b=None, c=None): pass", "funcd"),
        ("def f(a, b, *rest): pass", "http"),
        ("def f(*args, **kwargs): pass", "funcd"),
        ("def f(request, *, verbose=False): pass", "http"),
        ("def f(context, data=None): pass", "openfunction"),
        ("def f(context): pass", "openfunction"),
        ("def f(data, context): pass", "event"),
    ],
)
def test_arity_accepts_what_can_be_called(source, signature):
    namespace: dict = {}
    exec(source, namespace)
    check_arity(namespace["f"], signature)


@pytest.mark.parametrize(
    ("source", "signature", "wants", "declares"),
    [
        ("def f(request, name): pass", "http", "takes 1 positional", "declares 2"),
        ("def f(context, event, extra): pass", "funcd", "takes 2 positional", "declares 3"),
        ("def f(data): pass", "event", "takes 2 positional", "declares 1"),
        ("def f(a, b, c): pass", "openfunction", "takes 1 or 2 positional", "declares 3"),
        ("def f(cloud_event, *, key): pass", "cloudevent", "takes 1 positional", "required keyword-only key"),
        ("def f(): pass", "typed", "takes 1 positional", "declares 0"),
    ],
)
def test_wrong_arity_names_the_function_what_it_declares_and_the_accepted_signatures(
    source, signature, wants, declares
):
    namespace: dict = {}
    exec(source, namespace)
    with pytest.raises(SignatureError) as info:
        check_arity(namespace["f"], signature)
    message = str(info.value)
    declared = source.split("def ", 1)[1].split(":", 1)[0]
    assert message.startswith(f"{declared}: the {signature!r} signature"), message
    assert wants in message and declares in message, message
    assert_names_accepted(message)


# ---------------------------------------------------------------- load_function from a file


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "main.py"
    path.write_text(source)
    return path


def test_load_builds_one_adapter_for_the_picked_signature(tmp_path):
    loaded = load_function(write(tmp_path, "def handler(context, event):\n    return 1\n"))
    assert loaded.signature == "funcd"
    assert loaded.adapter.signature == "funcd" and not loaded.adapter.is_async
    assert loaded.init_context is None and loaded.target == "handler"


def test_load_a_wrong_arity_is_a_start_up_error_naming_the_function(tmp_path):
    source = write(
        tmp_path, "import functions_framework as ff\n\n@ff.http\ndef hello(request, name):\n    pass\n"
    )
    with pytest.raises(SignatureError) as info:
        load_function(source, "hello")
    message = str(info.value)
    assert re.match(r"hello\(request, name\): the 'http' signature takes 1 positional", message), message
    assert_names_accepted(message)


def test_load_an_http_function_on_a_pubsub_input_is_refused(tmp_path):
    source = write(tmp_path, "import functions_framework as ff\n\n@ff.http\ndef hello(request):\n    pass\n")
    context = FunctionContext(name="f", inputs=PUBSUB_INPUT)
    with pytest.raises(SignatureError) as info:
        load_function(source, "hello", context=context)
    message = str(info.value)
    assert message.startswith("hello(request) has the 'http' signature (request), which cannot serve ")
    assert "the Dapr input 'msg' (pubsub topic 'orders' of 'pubsub')" in message
    assert "signatures that can: funcd, batch, cloudevent, typed, event, openfunction" in message


def test_load_an_http_function_on_a_binding_is_refused_too(tmp_path):
    source = write(tmp_path, "def hello(request):\n    pass\n")  # rule 5: http
    with pytest.raises(SignatureError, match=r"cannot serve the Dapr input 'cron' \(binding cron\)"):
        load_function(source, "hello", context=FunctionContext(name="f", inputs=BINDING_INPUT))


def test_load_an_http_function_with_only_an_http_trigger_is_fine(tmp_path):
    source = write(tmp_path, "def hello(request):\n    return 'hi'\n")
    assert load_function(source, "hello", context=FunctionContext(name="f")).signature == "http"


@pytest.mark.parametrize(
    "source",
    [
        "import functions_framework as ff\n\n@ff.cloud_event\ndef f(cloud_event):\n    pass\n",
        "import functions_framework as ff\n\n@ff.typed\ndef f(obj: dict):\n    return obj\n",
        "def f(context, event):\n    pass\n",
        "def f(context, data):\n    pass\n",
        "def f(data, context):\n    pass\n",
    ],
    ids=["cloud_event", "typed", "funcd", "openfunction", "background"],
)
def test_load_signatures_that_serve_pubsub_inputs_are_accepted(tmp_path, source):
    signature = "event" if "(data, context)" in source else None
    context = FunctionContext(name="f", inputs={**PUBSUB_INPUT, **BINDING_INPUT})
    loaded = load_function(write(tmp_path, source), "f", signature, context)
    assert "pubsub" in loaded.adapter.triggers and "binding" in loaded.adapter.triggers


def test_load_finds_init_context_and_async_handlers(tmp_path):
    source = write(
        tmp_path,
        "def init_context(context):\n    pass\n\nasync def handler(context, event):\n    return 1\n",
    )
    loaded = load_function(source)
    assert loaded.init_context is not None and loaded.adapter.is_async


def test_load_a_missing_target_lists_the_callables(tmp_path):
    source = write(tmp_path, "def one(r):\n    pass\n\ndef two(r):\n    pass\n\nthree = 3\n")
    with pytest.raises(FunctionLoadError) as info:
        load_function(source, "handler")
    assert "expected a function named 'handler', found nothing callable" in str(info.value)
    assert "callables defined there: one, two" in str(info.value)
    with pytest.raises(FunctionLoadError, match="found a int, not a function"):
        load_function(source, "three")


def test_load_an_import_error_names_the_file(tmp_path):
    source = write(tmp_path, "raise ImportError('no such dependency')\n")
    with pytest.raises(
        FunctionLoadError, match=r"main\.py: importing it raised ImportError: no such dependency"
    ):
        load_function(source)


def test_load_a_non_callable_init_context_is_refused(tmp_path):
    source = write(tmp_path, "init_context = 1\n\ndef handler(context, event):\n    pass\n")
    with pytest.raises(FunctionLoadError, match="init_context: expected a function, got int"):
        load_function(source)


def test_find_source(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    with pytest.raises(FunctionLoadError, match=r"found no main\.py"):
        find_source(folder)
    (folder / "main.py").write_text("")
    (folder / "function.yaml").write_text("name: f\n")
    found = find_source(folder)
    assert (found.main.name, found.context_file and found.context_file.name) == ("main.py", "function.yaml")
    (folder / "notes.txt").write_text("")
    with pytest.raises(FunctionLoadError, match=r"expected a Python file \(\.py\) or a folder, got a \.txt"):
        find_source(folder / "notes.txt")
    with pytest.raises(FunctionLoadError, match="found nothing there"):
        find_source(tmp_path / "missing")
