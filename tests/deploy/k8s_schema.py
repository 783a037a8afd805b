"""Check Kubernetes objects against the API's own types, offline.

The official `kubernetes` Python client carries a model class per API type, with every field's
JSON name and type. Walking a manifest through them catches unknown or misspelt fields, wrong
nesting and wrong value types; building the model catches missing required fields. What this
cannot do: admission (defaults, cross-object checks, quotas) — that needs a cluster.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from kubernetes import client

MODELS = client.models
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),  # IntOrString, raw JSON
    "datetime": (str, datetime.datetime),
    "date": (str, datetime.date),
}


def model_name(api_version: str, kind: str) -> str:
    version = api_version.rsplit("/", 1)[-1]  # apps/v1 -> v1, autoscaling/v2 -> v2
    return version[0].upper() + version[1:] + kind


def problems(doc: dict[str, Any]) -> list[str]:
    """Every way `doc` breaks its type's schema; [] when none."""
    name = model_name(str(doc.get("apiVersion", "")), str(doc.get("kind", "")))
    if not hasattr(MODELS, name):
        return [f"unknown apiVersion/kind: {doc.get('apiVersion')}/{doc.get('kind')}"]
    found: list[str] = []
    _walk(doc, name, doc.get("kind", "?"), found)
    if not found:
        try:  # required fields: the client's models refuse None where the API requires a value
            client.ApiClient().deserialize(_Response(doc), name)
        except (ValueError, TypeError) as exc:
            found.append(f"{doc.get('kind')}: {exc}")
    return found


class _Response:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.data = json.dumps(doc)


def _walk(value: Any, type_name: str, path: str, found: list[str]) -> None:
    if value is None:
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            found.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _walk(item, type_name[5:-1], f"{path}[{i}]", found)
    elif type_name.startswith("dict("):
        if not isinstance(value, dict):
            found.append(f"{path}: expected a mapping")
            return
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        for key, item in value.items():
            _walk(item, inner, f"{path}.{key}", found)
    elif type_name in PRIMITIVES:
        if type_name in ("int", "float") and isinstance(value, bool):
            found.append(f"{path}: expected {type_name}, got a boolean")
        elif not isinstance(value, PRIMITIVES[type_name]):
            found.append(f"{path}: expected {type_name}, got {type(value).__name__}")
    else:
        model = getattr(MODELS, type_name)
        if not isinstance(value, dict):
            found.append(f"{path}: expected a {type_name} object")
            return
        by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
        for key, item in value.items():
            if key not in by_json:
                found.append(f"{path}: unknown field '{key}' for {type_name}")
                continue
            _walk(item, model.openapi_types[by_json[key]], f"{path}.{key}", found)
