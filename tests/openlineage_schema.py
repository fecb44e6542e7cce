"""Validate OpenLineage events offline, through what is installed: no schema file of ours, nothing fetched.

openlineage-python's ``openlineage.client.generated`` modules are attrs classes generated from the OpenLineage
JSON schema (``base.py``: RunEvent, Run, Job, the datasets; one module per facet). Structuring an event into them
checks what the schema says: required fields (an attrs field without a default), types (the resolved type hints)
and the generated validators (``eventTime`` an ISO date-time with a time, ``runId`` a UUID, URLs that parse).
A facet is structured into the generated class whose ``_get_schema()`` equals its ``_schemaURL``. The Airflow
provider's own facets (``airflow``, ``airflowDagRun``, ``airflowState``, ``debug``) carry the core RunFacet/
JobFacet URL, so they are recognised by key, or by a ``_schemaURL`` naming one of the provider's JSON files, and
checked with jsonschema against that file (shipped with the provider); the file's ``$ref`` to the core spec
(by URL, not on disk) is checked by the generated base class instead. Any other facet (a producer's own) has its
envelope checked: ``_producer`` and ``_schemaURL`` strings.
"""

from __future__ import annotations

import enum
import importlib
import json
import pkgutil
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

import attr


class SchemaError(ValueError):
    """The event does not follow the OpenLineage schema; the message names the path of the bad value."""


# the provider's facets by (holder, key): they are emitted with the core RunFacet/JobFacet ``_schemaURL``
PROVIDER_FACETS = {
    ("run", "airflow"): "AirflowRunFacet",
    ("run", "airflowDagRun"): "AirflowDagRunFacet",
    ("run", "airflowState"): "AirflowStateRunFacet",
    ("run", "debug"): "AirflowDebugRunFacet",
    ("job", "airflow"): "AirflowJobFacet",
}


FACETS_FOLDER = "airflow/providers/openlineage/facets"

# Where the provider's own events (Airflow 3, provider 2.x) differ from its JSON files, seen in dag.test() runs:
# a DAG without start_date omits it, the task instance has no pool, and Airflow 3's retry_exponential_backoff is
# a number (the multiplier) where the files, written for Airflow 2, say boolean. Exactly these are let through
# (facet, path, keyword, detail); any other difference fails.
PROVIDER_DEVIATIONS = {
    ("AirflowRunFacet", "dag", "required", "start_date"),
    ("AirflowDagRunFacet", "dag", "required", "start_date"),
    ("AirflowRunFacet", "taskInstance", "required", "pool"),
    ("AirflowRunFacet", "task.retry_exponential_backoff", "type", "number"),
}


@cache
def facet_classes() -> dict[str, type]:
    """Every generated facet class of the installed client, by the schema URL it was generated from."""
    import openlineage.client.generated as generated
    from openlineage.client.generated.base import BaseFacet

    found: dict[str, type] = {}
    for module in pkgutil.iter_modules(generated.__path__):
        loaded = importlib.import_module(f"{generated.__name__}.{module.name}")
        for value in vars(loaded).values():
            if isinstance(value, type) and issubclass(value, BaseFacet) and attr.has(value):
                found[value._get_schema()] = value
    return found


@cache
def provider_schemas() -> dict[str, dict[str, Any]]:
    """The Airflow provider's facet schemas on disk, by file stem (empty without the provider)."""
    from importlib import metadata

    try:  # found through the distribution's file list: importing airflow would cost seconds
        dist = metadata.distribution("apache-airflow-providers-openlineage")
    except metadata.PackageNotFoundError:
        return {}
    files = [f for f in dist.files or [] if f.parent.as_posix() == FACETS_FOLDER and f.suffix == ".json"]
    return {f.stem: json.loads(Path(str(dist.locate_file(f))).read_text()) for f in sorted(files, key=str)}


def _fail(path: str, message: str) -> typing.NoReturn:
    raise SchemaError(f"{path or '$'}: {message}")


def _envelope(facet: Any, path: str) -> None:
    if not isinstance(facet, dict):
        _fail(path, f"a facet must be an object, not {type(facet).__name__}")
    for key in ("_producer", "_schemaURL"):
        if not isinstance(facet.get(key), str):
            _fail(f"{path}.{key}", "required string missing")


def _facet(facet: Any, base: type, path: str, holder: str, key: str, checked: list[str]) -> Any:
    """Structure one facet into its generated class, or validate it against the provider's schema."""
    _envelope(facet, path)
    url = facet["_schemaURL"]
    document = url.split("#", 1)[0].rsplit("/", 1)[-1].removesuffix(".json")
    known = facet_classes().get(url)
    provider = document if document in provider_schemas() else None
    if known is base or known is None:  # a generic envelope URL: the provider's facets are known by key
        provider = provider or PROVIDER_FACETS.get((holder, key))
    if provider is not None and provider in provider_schemas():
        _provider_facet(facet, provider, path)
        checked.append(f"{FACETS_FOLDER}/{provider}.json#/$defs/{provider}")
        return _structure(facet, base, path, checked)  # the core part its $ref names
    if known is None:
        return _structure(facet, base, path, checked)  # a producer's own facet: its envelope only
    if not issubclass(known, base):
        _fail(path, f"{known.__name__} is not a {base.__name__}")
    checked.append(url)
    return _structure(facet, known, path, checked)


def _provider_facet(facet: dict[str, Any], name: str, path: str) -> None:
    from jsonschema import Draft202012Validator

    def local(node: Any) -> Any:  # a $ref to another document (the core spec, by URL) becomes "anything"
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) and not node["$ref"].startswith("#"):
                return {}
            return {k: local(v) for k, v in node.items()}
        return [local(v) for v in node] if isinstance(node, list) else node

    schema = {"$defs": local(provider_schemas()[name]["$defs"]), "$ref": f"#/$defs/{name}"}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for error in sorted(validator.iter_errors(facet), key=lambda e: [str(p) for p in e.absolute_path]):
        where = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            detail = error.message.split("'")[1]
        else:
            number = isinstance(error.instance, int | float) and not isinstance(error.instance, bool)
            detail = "number" if number else type(error.instance).__name__
        if (name, where, error.validator, detail) not in PROVIDER_DEVIATIONS:
            _fail(f"{path}.{where}".rstrip("."), f"{name}: {error.message}")


def _attrs(value: Any, cls: type, path: str, checked: list[str]) -> Any:
    if not isinstance(value, dict):
        _fail(path, f"{cls.__name__} must be an object, not {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in attr.fields(cls):
        key = field.name  # the JSON key: attrs strips the underscore of `_producer` only for __init__
        if key not in value:
            if field.init and field.default is attr.NOTHING:
                _fail(f"{path}.{key}", f"required by {cls.__name__}")
            continue
        if not field.init:  # `_schemaURL`/`schemaURL`: set by the class itself, must be a string here
            if not isinstance(value[key], str):
                _fail(f"{path}.{key}", "must be a string")
            continue
        if key in ("facets", "inputFacets", "outputFacets") and isinstance(value[key], dict):
            base = typing.get_args(_without_none(hints[key]))[1]
            holder = "run" if path.endswith(".run") else "job" if path.endswith(".job") else "dataset"
            kwargs[field.alias] = {
                k: _facet(v, base, f"{path}.{key}.{k}", holder, k, checked) for k, v in value[key].items()
            }
        else:
            kwargs[field.alias] = _structure(value[key], hints[key], f"{path}.{key}", checked)
    try:
        return cls(**kwargs)  # the generated validators run here
    except (ValueError, TypeError, OverflowError) as exc:
        _fail(path, f"{cls.__name__}: {exc}")


def _without_none(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return args[0] if is_union and len(args) == 1 else hint


def _structure(value: Any, hint: Any, path: str, checked: list[str]) -> Any:
    """``value`` (parsed JSON) as an instance of ``hint``; raises SchemaError where it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if len(options := [a for a in args if a is not type(None)]) == 1:
            return _structure(value, options[0], path, checked)
        errors = []
        for option in options:
            try:
                return _structure(value, option, path, checked)
            except SchemaError as exc:
                errors.append(str(exc))
        _fail(path, " / ".join(errors) or "null is not allowed")
    if origin is list or hint is list:
        if not isinstance(value, list):
            _fail(path, f"must be an array, not {type(value).__name__}")
        return [_structure(v, args[0] if args else Any, f"{path}[{i}]", checked) for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            _fail(path, "must be an object")
        item = args[1] if args else Any
        return {k: _structure(v, item, f"{path}.{k}", checked) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            _fail(path, f"{value!r} is not one of {[m.value for m in hint]}")
    if isinstance(hint, type) and attr.has(hint):
        return _attrs(value, hint, path, checked)
    if hint is float:  # a JSON number: int or float, never a boolean
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(path, f"must be a number, not {type(value).__name__}")
        return value
    if hint in (str, int, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            _fail(path, f"must be a {hint.__name__}, not {type(value).__name__}")
        return value
    _fail(path, f"no rule for the type {hint!r}")


def validate_event(event: dict[str, Any]) -> list[str]:
    """Every facet schema the event was checked against (raises ``SchemaError`` if the event is invalid)."""
    from openlineage.client.generated.base import RunEvent

    # the spec requires these of every event; the generated class would default the last two
    for key in ("eventTime", "producer", "schemaURL"):
        if not isinstance(event.get(key), str):
            _fail(key, "required string missing")
    checked: list[str] = []
    _structure(event, RunEvent, "", checked)
    return checked
