"""Parity: one set of handlers answered by ``functions_framework.testing.call`` and by a real
``funcd run`` server gives the same status, headers and body.

Only what differs per request or per transport is ignored: the values of Date, Server,
Content-Length and Function-Execution-Id (the execution id is also masked inside error bodies).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from functions_framework import OutputError, testing
from tests.fakes.dapr_api import DaprApiFake
from tests.support import Server

SOURCE = """
import flask
import functions_framework as ff


def handler(context, event):
    p = event.path
    if p == "/dict": return {"a": 1, "b": [True, None]}
    if p == "/list": return [1, "two"]
    if p == "/str": return "héllo"
    if p == "/bytes": return b"\\x00\\x01"
    if p == "/none": return None
    if p == "/tuple2": return {"created": True}, 201
    if p == "/tuple3": return "teapot", 418, {"x-tea": "earl grey"}
    if p == "/tuple-headers": return "moved", {"Location": "/elsewhere"}
    if p == "/response": return ff.Response(b"<a/>", status=202, content_type="application/xml")
    if p == "/http-error": raise ff.HTTPError(409, "version conflict")
    if p == "/http-error-5xx": raise ff.HTTPError(502, "upstream down")
    if p == "/retry": raise ff.Retry("later")
    if p == "/drop": raise ff.Drop("poison")
    if p == "/boom": raise RuntimeError("secret internals")
    if p == "/abort": flask.abort(404)
    if p == "/data": return {"data": event.data}
    if p == "/unsendable": return object()
    if p == "/send": return context.send({"n": 1}, output="out")
    if p == "/send-undeclared": return context.send({"n": 1}, output="nope")
    if p == "/state-undeclared": return context.state("nope").get("k")
    if p == "/state-nan": return context.state("kv").save("k", float("nan"))
    if p == "/state-bad-key": return context.state("kv").save("a||b", 1)
    if p == "/send-unencodable": return context.send({1, 2}, output="out")
    return {"path": p, "method": event.method, "query": event.query}


@ff.http
def google(request):
    if request.path == "/abort":
        flask.abort(404)
    if request.path == "/abort-400":
        flask.abort(400, "name is required")
    if request.path == "/json":
        return flask.jsonify(name=request.args.get("name"), body=request.get_json(silent=True))
    if request.path == "/tuple":
        return "made", 201, {"x-made": "yes"}
    if request.path == "/boom":
        raise RuntimeError("secret internals")
    if request.path == "/redirect":
        return flask.redirect("/elsewhere")
    return f"Hello {request.method} {request.path}!"


@ff.typed
def typed(order: dict):
    if order.get("fail"):
        raise ValueError("cannot price it")
    return {"total": order.get("quantity", 0) * 3}
"""

CONTEXT = """
name: parity
outputs:
  out: {componentName: msg, componentType: pubsub.redis, topic: processed}
states:
  kv: {componentName: statestore, componentType: state.redis}
"""

IGNORED = {"date", "server", "content-length", "function-execution-id"}


@dataclass(frozen=True)
class Case:
    target: str
    method: str
    path: str
    body: bytes = b""
    content_type: str = ""
    query: str = ""

    def __str__(self) -> str:
        return f"{self.target}:{self.method}:{self.path}" + (f"?{self.query}" if self.query else "")


JSON = "application/json"

CASES = [
    *(
        Case("handler", "GET", p)
        for p in (
            "/dict",
            "/list",
            "/str",
            "/bytes",
            "/none",
            "/tuple2",
            "/tuple3",
            "/tuple-headers",
            "/response",
            "/http-error",
            "/http-error-5xx",
            "/retry",
            "/drop",
            "/boom",
            "/abort",
            "/unsendable",
            "/send",
            "/send-undeclared",
            "/send-unencodable",
            "/state-undeclared",
            "/state-nan",
            "/state-bad-key",
        )
    ),
    Case("handler", "POST", "/data", b'{"a": [1, 2]}', JSON),
    Case("handler", "POST", "/data", b"{not json", JSON),
    Case("handler", "PUT", "/data", "héllo".encode(), "text/plain; charset=utf-8"),
    Case("handler", "POST", "/data", b"\xff\xfe", "text/plain"),
    Case("handler", "DELETE", "/anything/deeper", query="a=1&a=2&b="),
    Case("google", "GET", "/hello"),
    Case("google", "POST", "/json", b'{"k": "v"}', JSON, "name=Ada"),
    Case("google", "GET", "/abort"),
    Case("google", "GET", "/abort-400"),
    Case("google", "GET", "/tuple"),
    Case("google", "GET", "/boom"),
    Case("google", "GET", "/redirect"),
    Case("typed", "POST", "/", b'{"quantity": 4}', JSON),
    Case("typed", "POST", "/", b"[1, 2]", JSON),
    Case("typed", "POST", "/", b"{not json", JSON),
    Case("typed", "POST", "/", b'{"fail": true}', JSON),
]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def normalise(status: int, headers: dict[str, str], body: bytes) -> Answer:
    lowered = {k.lower(): v for k, v in headers.items()}
    execution_id = lowered.get("function-execution-id", "")
    assert execution_id, f"no Function-Execution-Id header: {headers}"
    kept = {k: v for k, v in lowered.items() if k not in IGNORED}
    return Answer(status, kept, body.replace(execution_id.encode(), b"<execution-id>"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parity")
    (path / "main.py").write_text(SOURCE)
    (path / "function.yaml").write_text(CONTEXT)
    return path


@pytest.fixture(scope="module")
def sidecar() -> Iterator[DaprApiFake]:
    with DaprApiFake() as fake:
        yield fake


@pytest.fixture(scope="module")
def servers(folder: Path, sidecar: DaprApiFake) -> Iterator[dict[str, Server]]:
    """One real server per target, started together and stopped at the end of the module."""
    started = {
        target: Server(
            [
                "run",
                str(folder),
                "--target",
                target,
                "--port",
                "0",
                "--workers",
                "1",
                "--dapr-address",
                sidecar.address,
            ],
            {**sidecar.env(), "FUNCD_ACCESS_LOG": "0"},
            folder,
        )
        for target in ("handler", "google", "typed")
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.kill()


def by_server(server: Server, case: Case) -> Answer:
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    url = f"{server.url}{case.path}" + (f"?{case.query}" if case.query else "")
    r = requests.request(case.method, url, data=case.body, headers=headers, allow_redirects=False)
    return normalise(r.status_code, dict(r.headers), r.content)


def by_testing(folder: Path, case: Case) -> Answer:
    result = testing.call(
        folder,
        target=case.target,
        method=case.method,
        path=case.path,
        body=case.body,
        content_type=case.content_type or None,
        query_string=case.query,
    )
    return normalise(result.status, result.headers, result.body)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_testing_call_answers_as_the_server_does(servers, folder, case):
    served = by_server(servers[case.target], case)
    called = by_testing(folder, case)
    assert called == served


def test_the_cases_cover_every_kind_of_reply(servers, folder):
    """The parity above would be cheap if every case answered alike: it spans successes, client
    errors, signals and server errors."""
    statuses = {by_server(servers[c.target], c).status for c in CASES}
    assert {200, 201, 202, 204, 302, 400, 404, 409, 418, 422, 500, 502, 503} <= statuses, statuses


def test_sending_to_an_undeclared_output_or_bad_state_is_refused_like_the_server(folder, sidecar):
    for path, problem in [
        ("/send-undeclared", "send(output='nope'): expected one of out"),
        ("/state-undeclared", "state('nope'): expected one of kv"),
        ("/state-nan", "expected bytes or a JSON-serializable value"),
        ("/state-bad-key", "a||b"),
        ("/send-unencodable", "expected bytes, str or a JSON-serializable value, got set"),
    ]:
        result = testing.call(folder, method="GET", path=path)
        error = result.outcome.error
        assert isinstance(error, OutputError), (path, error)
        assert problem in str(error), (path, str(error))
        assert not error.temporary
        assert result.status == 500
    assert all(key != "a||b" for store in sidecar.states.values() for key in store)


def test_a_send_is_recorded_by_testing_and_published_by_the_server(servers, folder, sidecar):
    result = testing.call(folder, method="GET", path="/send")
    assert result.sent == [("out", {"n": 1}, {})]
    before = len(sidecar.published)
    assert requests.get(servers["handler"].url + "/send").status_code == 200
    published = sidecar.published[before:]
    assert [(p.topic, json.loads(p.data)) for p in published] == [("processed", {"n": 1})]


def test_debug_shows_the_same_details_in_both(folder, tmp_path, sidecar):
    server = Server(
        ["run", str(folder), "--port", "0", "--workers", "1", "--debug", "--dapr-address", sidecar.address],
        sidecar.env(),
        folder,
    )
    try:
        server.wait_ready()
        for path in ("/boom", "/unsendable", "/http-error-5xx", "/retry"):
            served = requests.get(server.url + path).json()["error"]
            called = testing.call(folder, method="GET", path=path, debug=True).json["error"]
            assert served["message"] == called["message"], path
            assert ("detail" in served) == ("detail" in called), path
            if "detail" in served:
                assert served["detail"].splitlines()[-1] == called["detail"].splitlines()[-1], path
        # A key Dapr refuses: refused in memory by testing, by the sidecar for the server; the
        # wording differs, the reply and what it names do not.
        served = requests.get(server.url + "/state-bad-key").json()["error"]
        called = testing.call(folder, method="GET", path="/state-bad-key", debug=True).json["error"]
        assert served["code"] == called["code"] == 500
        for error in (served, called):
            assert error["message"].startswith("the function raised OutputError: state('kv')"), error
            assert "a||b" in error["message"] and "'||'" in error["message"], error
    finally:
        server.kill()
