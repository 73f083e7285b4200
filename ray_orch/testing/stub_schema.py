"""JSON for the stub server's replies: a valid instance of any response schema.

``reply_content`` turns a scripted reply into the message content; when the request
asks for JSON it synthesises an instance of the schema (``_synthesize``) and, when the
schema has a single required string slot, puts a plain-string reply into it.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_orch.testing.stub_rules import StubRequest

__all__ = ["reply_content"]

_MAX_DEPTH = 32
_SOFT_DEPTH = 8


def reply_content(value: Any, record: StubRequest) -> str:
    """The message content for a reply ``value``: always valid JSON when ``record`` asks
    for JSON (see ``StubLLMServer`` for how a string is fitted into a schema)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    text = "" if value is None else str(value)
    if not record.wants_json:
        return text
    try:
        if isinstance(json.loads(text), (dict, list)):
            return text
    except ValueError:
        pass
    schema = record.schema
    if schema is None:
        return json.dumps({"text": text})
    instance = _synthesize(schema)
    slot = _single_string_slot(schema)
    if slot is not None and isinstance(instance, dict):
        instance[slot] = text
    return json.dumps(instance)


def _deref(schema: Any, root: dict[str, Any]) -> Any:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < _MAX_DEPTH:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if part else node
        schema, seen = node, seen + 1
    return schema


def _single_string_slot(schema: dict[str, Any]) -> str | None:
    node = _deref(schema, schema)
    props = node.get("properties") if isinstance(node, dict) else None
    if not isinstance(props, dict):
        return None
    slots = [name for name in node.get("required", [])
             if _is_string(_deref(props.get(name, {}), schema), schema)]
    return slots[0] if len(slots) == 1 else None


def _is_string(node: Any, root: dict[str, Any]) -> bool:
    if not isinstance(node, dict):
        return False
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:  # Optional[str] is a string slot too
        return any(_is_string(_deref(b, root), root) for b in branches)
    if node.get("type") == "string":
        return True
    values = node.get("enum") or ([node["const"]] if "const" in node else [])
    return bool(values) and all(isinstance(v, str) for v in values)


def _synthesize(schema: dict[str, Any], root: dict[str, Any] | None = None,
               depth: int = 0) -> Any:
    """A valid instance of a JSON schema (first enum value, required properties only).

    Args:
        schema: the (sub)schema.
        root: the document ``$ref`` points into (default: ``schema``).
        depth: recursion depth; recursive schemas end through empty arrays or null
            branches past a fixed depth.

    Returns:
        A JSON-compatible value.

    Example:
        >>> _synthesize({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}})
        {'n': 0}
    """
    root = schema if root is None else root
    node = _deref(schema, root)
    if not isinstance(node, dict):
        return "stub"
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if node.get(key):
            branches = node[key]
            if depth >= _SOFT_DEPTH and {"type": "null"} in branches:
                return None  # ends an Optional[Self] recursion
            return _synthesize(branches[0], root, depth + 1)
    if node.get("allOf"):
        parts = [_synthesize(s, root, depth + 1) for s in node["allOf"]]
        if all(isinstance(p, dict) for p in parts):
            return {k: v for p in parts for k, v in p.items()}
        return parts[0]
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else "string"
    if kind == "object":
        if depth >= _MAX_DEPTH:
            return {}
        props = node.get("properties") or {}
        return {name: _synthesize(props.get(name, {}), root, depth + 1)
                for name in node.get("required", [])}
    if kind == "array":
        prefix = node.get("prefixItems") or []
        items = [_synthesize(s, root, depth + 1) for s in prefix]
        # Deep down, arrays stay empty where allowed: that ends list[Self] recursion.
        want = max(node.get("minItems", 1 if depth < _SOFT_DEPTH else 0), len(items))
        if "maxItems" in node:
            want = min(want, node["maxItems"])
        extra = node.get("items")
        while len(items) < want and isinstance(extra, dict):
            items.append(_synthesize(extra, root, depth + 1))
        return items[:want]
    if kind in ("integer", "number"):
        return _number(node, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(node)


def _number(node: dict[str, Any], integer: bool) -> int | float:
    value = 0.0
    if "minimum" in node:
        value = max(value, float(node["minimum"]))
    if "exclusiveMinimum" in node:
        value = max(value, float(node["exclusiveMinimum"]) + (1 if integer else 1e-6))
    if "maximum" in node:
        value = min(value, float(node["maximum"]))
    if "exclusiveMaximum" in node:
        value = min(value, float(node["exclusiveMaximum"]) - (1 if integer else 1e-6))
    return math.ceil(value) if integer else value


_FORMATS = {"date-time": "1970-01-01T00:00:00Z", "date": "1970-01-01", "time": "00:00:00",
            "email": "stub@example.com", "uri": "https://example.com/stub",
            "uuid": "00000000-0000-0000-0000-000000000000"}


def _string(node: dict[str, Any]) -> str:
    text = _FORMATS.get(node.get("format", ""), "stub")
    text = text.ljust(int(node.get("minLength", 0)), "x")
    return text[: node["maxLength"]] if "maxLength" in node else text
