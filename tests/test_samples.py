"""Every sample runs through a real server."""

from __future__ import annotations

import requests

from tests.support import SAMPLES


def test_hello_http(funcd):
    server = funcd(str(SAMPLES / "hello-http"))
    r = requests.post(server.url, json={"name": "Ada"})
    assert r.status_code == 200
    assert r.json() == {"message": "Hello, Ada!"}
    assert r.headers["content-type"] == "application/json"
    assert len(r.headers["function-execution-id"]) >= 8
    assert requests.get(server.url + "/any/path").json() == {"message": "Hello, world!"}


def test_json_echo_with_duration_plugin(funcd):
    server = funcd(str(SAMPLES / "json-echo"))
    r = requests.put(server.url + "/orders?status=201", json={"a": [1, 2]})
    assert r.status_code == 201
    body = r.json()
    assert body["data"] == {"a": [1, 2]}
    assert body["path"] == "/orders"
    assert body["content_type"] == "application/json"
    assert float(r.headers["x-funcd-duration"]) >= 0
    assert r.headers["x-served-by-worker"] == "1"
    r = requests.get(server.url + "/x?k=v&k=w")
    assert r.json() == {"method": "GET", "path": "/x", "query": {"k": ["v", "w"]}}
    assert "x-funcd-duration" in r.headers


def test_json_echo_cloudevent_binary_and_structured(funcd):
    server = funcd(str(SAMPLES / "json-echo"))
    binary = requests.post(
        server.url,
        data=b'{"n": 1}',
        headers={
            "ce-specversion": "1.0",
            "ce-id": "evt-1",
            "ce-type": "com.example.created",
            "ce-source": "/tests",
            "content-type": "application/json",
        },
    )
    assert binary.status_code == 200, binary.text
    assert binary.json()["id"] == "evt-1"
    assert binary.json()["type"] == "com.example.created"
    assert binary.json()["data"] == {"n": 1}
    structured = requests.post(
        server.url,
        json={
            "specversion": "1.0",
            "id": "evt-2",
            "type": "com.example.updated",
            "source": "/tests",
            "datacontenttype": "application/json",
            "data": {"n": 2},
        },
        headers={"content-type": "application/cloudevents+json"},
    )
    assert structured.status_code == 200, structured.text
    assert structured.json()["id"] == "evt-2"
    assert structured.json()["source"] == "/tests"
    assert structured.json()["data"] == {"n": 2}


def test_google_style_http_sample(funcd):
    server = funcd(str(SAMPLES / "gcf-http"), "--target", "hello")
    assert requests.get(server.url + "/?name=Ada").text == "Hello Ada!"
    assert requests.post(server.url, json={"name": "Bob"}).text == "Hello Bob!"
    r = requests.get(server.url)
    assert r.text == "Hello World!"
    assert r.headers["content-type"].startswith("text/html")
    assert "function-execution-id" in r.headers


def test_google_env_vars(funcd):
    server = funcd(
        env={"FUNCTION_TARGET": "hello", "FUNCTION_SOURCE": str(SAMPLES / "gcf-http" / "main.py")}, port=""
    )
    # PORT is not set here, so --port comes from the fixture default path: check the env-var path separately
    assert requests.get(server.url + "/?name=Env").text == "Hello Env!"


def test_pubsub_sink_logs_what_arrives_and_acks(caplog):
    from functions_framework import testing
    from functions_framework.event import Trigger

    order = {"customer": "ada", "amount": 5, "customer_total": 5}
    event = testing.make_event(order, trigger=Trigger("pubsub", "orders-pubsub"), topic="processed", id="e-1")
    with caplog.at_level("INFO"):
        result = testing.call(SAMPLES / "pubsub-sink", event)
    assert result.ack == "SUCCESS"
    assert f"processed order e-1: {order}" in caplog.messages


def test_pubsub_bulk_sample_takes_a_bulk_in_one_call_and_drops_what_is_not_an_order():
    from functions_framework import testing
    from functions_framework.event import Trigger

    trigger = Trigger("pubsub", "orders-pubsub")
    orders = [{"customer": "ada", "amount": 5}, "not an order", {"customer": "ada", "amount": 2}]
    events = [
        testing.make_event(order, trigger=trigger, topic="orders", id=f"e{n}")
        for n, order in enumerate(orders)
    ]
    result = testing.call_bulk(SAMPLES / "pubsub-bulk", events)
    assert result.acks == ["SUCCESS", "DROP", "SUCCESS"]
    assert len(result.outcomes) == 1  # one call for the bulk
    assert result.context is not None and result.context.state("totals").get("ada") == 7
