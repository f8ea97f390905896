"""The Function CRD's schema agrees with the Function model (functions_framework/model).

Walks the model's spec dataclasses and the CRD's OpenAPI schema side by side: every field has a
property of the matching type and closed set, every property has a field, and every key the model's
reader accepts is a property. So the two cannot drift. The API server's side is tests/e2e/test_funcd_crd.py.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from functions_framework.model import parse_function, resource, sections, spec
from functions_framework.model.context import TRACING_PROVIDERS, Exporter, Tracing

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_FILE = REPO_ROOT / "manifests" / "crds" / "functions.funcd.dev.yaml"
FIXTURES = REPO_ROOT / "tests" / "fixtures"
LAST_APPLIED_LIMIT = 256 * 1024  # an annotation's size limit: what client-side apply stores the CRD in

# (dataclass, field) -> the YAML key, where it is not the field's name in camelCase.
RENAMED = {(spec.FunctionSpec, "image_credentials"): "imageCredentials"}
# YAML keys the model reads without keeping a field for them.
READ_ONLY_KEYS = {spec.KedaTrigger: {"fallback"}}
# The leaf properties that are not walked as dataclasses: imageCredentials is {name}, tracing is
# OpenFunction's TracingConfig, whose shape differs from the runtime's Tracing (checked below).
OPAQUE_FIELDS = {(spec.FunctionSpec, "image_credentials"), (spec.Serving, "tracing")}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _version() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = crd["spec"]["versions"]
    return typing.cast(dict[str, Any], version)


def _schema() -> dict[str, Any]:
    return typing.cast(dict[str, Any], _version()["schema"]["openAPIV3Schema"])


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(args) == 1, hint
        return args[0]
    return hint


def _check_leaf(hint: Any, prop: dict[str, Any], where: str) -> None:
    """A field that is not a dataclass: its property has the matching type."""
    origin = typing.get_origin(hint)
    if hint is str:
        assert prop.get("type") == "string", where
    elif hint is int:
        is_port = prop.get("x-kubernetes-int-or-string") is True  # the model reads digits too
        assert is_port or (prop.get("type") == "integer" and prop.get("minimum") == 0), where
    elif hint is bool:
        assert prop.get("type") == "boolean", where
    elif hint is Any:
        assert prop.get("x-kubernetes-preserve-unknown-fields") is True, where
    elif origin is Literal:
        assert prop.get("type") == "string" and set(prop["enum"]) == set(typing.get_args(hint)), where
    elif origin is tuple:
        assert prop.get("type") == "array", where
        _check_leaf(typing.get_args(hint)[0], prop["items"], f"{where}[]")
    elif origin is Mapping:
        value = typing.get_args(hint)[1]
        assert prop.get("type") == "object", where
        if value is Any:
            assert prop.get("x-kubernetes-preserve-unknown-fields") is True, where
        else:
            _check_leaf(value, prop["additionalProperties"], f"{where}.*")
    else:
        raise AssertionError(f"{where}: no rule for a field of type {hint!r}")


def _walk(cls: type, schema: dict[str, Any], where: str, seen: list[str]) -> None:
    """Every field of ``cls`` is a property of ``schema`` and the reverse; recurse into dataclasses."""
    hints = typing.get_type_hints(cls, vars(spec))
    keys = {}
    for f in dataclasses.fields(cls):
        keys[RENAMED.get((cls, f.name), _camel(f.name))] = f
    props = schema.get("properties", {})
    expected = set(keys) | READ_ONLY_KEYS.get(cls, set())
    assert set(props) == expected, (
        f"{where}: schema has {sorted(set(props) - expected)} more, model has "
        + str(sorted(expected - set(props)))
    )
    for key, f in keys.items():
        path, prop = f"{where}.{key}", props[key]
        seen.append(path)
        if (cls, f.name) in OPAQUE_FIELDS:
            continue
        hint = _strip_optional(hints[f.name])
        origin = typing.get_origin(hint)
        if dataclasses.is_dataclass(hint):
            assert prop["type"] == "object", path
            _walk(typing.cast(type, hint), prop, path, seen)
        elif origin is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            assert prop["type"] == "array", path
            _walk(typing.get_args(hint)[0], prop["items"], f"{path}[]", seen)
        elif origin is Mapping and dataclasses.is_dataclass(typing.get_args(hint)[1]):
            assert prop["type"] == "object", path
            _walk(typing.get_args(hint)[1], prop["additionalProperties"], f"{path}.*", seen)
        else:
            _check_leaf(hint, prop, path)


def test_every_spec_field_has_a_schema_property_and_the_reverse() -> None:
    seen: list[str] = []
    _walk(spec.FunctionSpec, _schema()["properties"]["spec"], "spec", seen)
    assert len(seen) > 100  # the walk reached the whole spec


def _serving() -> dict[str, Any]:
    return typing.cast(dict[str, Any], _schema()["properties"]["spec"]["properties"]["serving"])


def test_tracing_matches_the_readers_keys_and_the_runtime_tracing() -> None:
    tracing = _serving()["properties"]["tracing"]
    provider = tracing["properties"]["provider"]
    exporter = provider["properties"]["exporter"]
    assert set(tracing["properties"]) == set(sections.TRACING_FIELDS)
    assert set(provider["properties"]) == set(sections.PROVIDER_FIELDS)
    assert set(exporter["properties"]) == set(sections.EXPORTER_FIELDS)
    assert set(provider["properties"]["name"]["enum"]) == set(TRACING_PROVIDERS)
    # Every Exporter field is a string, and Tracing's maps are maps of strings.
    assert {f.name for f in dataclasses.fields(Exporter)} == set(sections.EXPORTER_FIELDS)
    assert all(p["type"] == "string" for p in exporter["properties"].values())
    assert {f.name for f in dataclasses.fields(Tracing)} >= {"enabled", "tags", "baggage"}
    assert tracing["properties"]["enabled"]["type"] == "boolean"


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        ("", resource.SPEC_FIELDS),
        ("serving", resource.SERVING_FIELDS),
        ("serving.triggers", sections.TRIGGERS_FIELDS),
        ("serving.triggers.http", sections.HTTP_TRIGGER_FIELDS),
        ("serving.triggers.dapr[]", sections.DAPR_TRIGGER_FIELDS),
        ("serving.triggers.inputs[].dapr", sections.DAPR_REF_FIELDS),
        ("serving.outputs[].dapr", sections.DAPR_OUTPUT_FIELDS),
        ("serving.pubsub.*", sections.COMPONENT_SPEC_FIELDS),
        ("serving.bindings.*.metadata[]", sections.METADATA_ITEM_FIELDS),
        ("serving.states.*.spec.metadata[].secretKeyRef", sections.SECRET_KEY_REF_FIELDS),
        ("serving.scaleOptions", sections.SCALE_OPTIONS_FIELDS),
        ("serving.scaleOptions.keda", sections.KEDA_FIELDS),
        ("serving.scaleOptions.keda.scaledJob", sections.SCALED_JOB_FIELDS),
        ("serving.scaleOptions.keda.triggers[]", sections.KEDA_TRIGGER_FIELDS),
        ("serving.hooks", sections.HOOKS_FIELDS),
        ("serving.dapr", resource.DAPR_SETTINGS_FIELDS),
    ],
)
def test_schema_properties_are_the_keys_the_reader_accepts(path: str, keys: tuple[str, ...]) -> None:
    node = _schema()["properties"]["spec"]
    for part in filter(None, re.split(r"\.", path)):
        name, many = part.rstrip("[]"), part.endswith("[]")
        node = node["additionalProperties"] if name == "*" else node["properties"][name]
        if many:
            node = node["items"]
    assert set(node["properties"]) == set(keys)


def test_closed_sets_are_the_models() -> None:
    serving = _serving()["properties"]
    keda = serving["scaleOptions"]["properties"]["keda"]["properties"]
    assert serving["workloadType"]["enum"] == list(spec.WORKLOAD_TYPES)
    assert serving["dapr"]["properties"]["mode"]["enum"] == list(spec.DAPR_MODES)
    assert serving["hooks"]["properties"]["policy"]["enum"] == list(spec.HOOK_POLICIES)
    assert serving["triggers"]["properties"]["http"]["properties"]["engine"]["enum"] == list(
        spec.HTTP_ENGINES
    )
    assert keda["scaledJob"]["properties"]["restartPolicy"]["enum"] == list(spec.RESTART_POLICIES)
    assert keda["triggers"]["items"]["properties"]["metricType"]["enum"] == list(spec.METRIC_TYPES)


def test_durations_use_the_models_pattern() -> None:
    serving = _serving()["properties"]
    component = serving["pubsub"]["additionalProperties"]["properties"]
    for prop in (serving["timeout"], component["initTimeout"]):
        assert prop["pattern"] == f"^({sections.DURATION.pattern})$"


def test_printer_columns_and_status_subresource() -> None:
    version = _version()
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Ready", "Reason", "Triggers", "Replicas", "Address", "Age"]
    assert version["subresources"] == {"status": {}}
    status = _schema()["properties"]["status"]["properties"]
    assert {"conditions", "observedGeneration", "replicas", "address", "triggers", "objects"} <= set(status)


def test_crd_fits_the_last_applied_annotation() -> None:
    size = len(CRD_FILE.read_bytes())
    assert size < LAST_APPLIED_LIMIT // 4, f"{CRD_FILE.name} is {size} bytes"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.yaml")), ids=lambda p: p.stem)
def test_fixture_functions_are_valid_for_the_model(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    if doc.get("kind") != "Function":
        pytest.skip(f"{path.name} is not a Function")
    assert parse_function(doc).metadata.name


def _properties(node: dict[str, Any], where: str) -> typing.Iterator[tuple[str, dict[str, Any]]]:
    for key, prop in node.get("properties", {}).items():
        yield f"{where}.{key}", prop
        yield from _properties(prop, f"{where}.{key}")
    for nested in ("items", "additionalProperties"):
        if isinstance(node.get(nested), dict):
            yield from _properties(node[nested], where)


def test_every_spec_and_status_property_is_described() -> None:
    """``kubectl explain fn.spec...`` says what each field is for."""
    schema = _schema()["properties"]
    undescribed = [
        where
        for part in ("spec", "status")
        for where, prop in _properties(schema[part], part)
        if not prop.get("description")
    ]
    assert undescribed == []
