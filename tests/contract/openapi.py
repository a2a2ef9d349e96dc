"""Validate recorded sandbox traffic against the vendors' OpenAPI files.

The specs live in ../shared/vendor-specs (beside the repository; never copied
in) or wherever `SYNCCTL_VENDOR_SPECS` points. They are large and have cyclic
`$ref`s, so only the operation at hand is resolved, lazily, by jsonschema.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

REPO = Path(__file__).resolve().parents[2]


def specs_dir() -> Path:
    configured = os.environ.get("SYNCCTL_VENDOR_SPECS")
    return Path(configured) if configured else REPO.parent / "shared" / "vendor-specs"


@functools.cache
def _load(name: str) -> dict[str, Any] | None:
    path = specs_dir() / name
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_spec(name: str) -> dict[str, Any]:
    """The parsed spec, or skip the test with a visible reason when it is absent."""
    spec = _load(name)
    if spec is None:
        if os.environ.get("CI"):
            pytest.fail(f"vendor spec {name} missing from {specs_dir()} on CI")
        pytest.skip(f"vendor spec {name} not found in {specs_dir()} (set SYNCCTL_VENDOR_SPECS)")
    return spec


class Operation:
    """One operation of a spec, with validators for its bodies and parameters."""

    def __init__(self, spec: dict[str, Any], template: str, method: str) -> None:
        self.spec = spec
        self.template = template
        self.method = method.lower()
        item = spec["paths"][template]
        if self.method not in item:
            raise AssertionError(f"{method.upper()} {template} is not in the spec")
        self.op = item[self.method]
        self.parameters = [self._deref(p) for p in item.get("parameters", [])] + [
            self._deref(p) for p in self.op.get("parameters", [])
        ]

    def _deref(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/"):
            target: Any = self.spec
            for part in node["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def _validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        # Refs like "#/components/schemas/X" resolve against this wrapper's root.
        root = {"allOf": [schema], "components": self.spec.get("components", {})}
        return Draft202012Validator(root)

    def _check(self, schema: dict[str, Any], instance: Any, what: str) -> None:
        try:
            self._validator(schema).validate(instance)
        except ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            raise AssertionError(
                f"{self.method.upper()} {self.template} {what} breaks the spec at "
                f"'{where}': {exc.message}"
            ) from None

    def validate_request(self, body: Any) -> None:
        request_body = self._deref(self.op.get("requestBody"))
        if request_body is None:
            assert body in (None, b"", ""), f"{self.template} takes no request body"
            return
        content = request_body.get("content", {})
        schema = content.get("application/json", {}).get("schema")
        assert schema is not None, f"{self.template} has no JSON request body in the spec"
        self._check(schema, body, "request body")

    def validate_query(self, query: list[tuple[str, str]]) -> None:
        """Check each documented query parameter's value against its schema."""
        by_name = {p["name"]: p for p in self.parameters if p.get("in") == "query"}
        for name, raw in query:
            param = by_name.get(name)
            if param is None or "schema" not in param:
                continue
            schema = self._deref(param["schema"])
            value: Any = raw
            if schema.get("type") in ("integer", "number"):
                with contextlib.suppress(ValueError):
                    value = int(raw) if schema.get("type") == "integer" else float(raw)
            elif schema.get("type") == "boolean":
                value = {"true": True, "false": False}.get(raw.lower(), raw)
            self._check(schema, value, f"query parameter {name}")

    def response_schema(self, status: int) -> dict[str, Any] | None:
        responses = self.op.get("responses", {})
        answer = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
        if answer is None:
            answer = responses.get("default")
        assert answer is not None, (
            f"{self.method.upper()} {self.template} documents no {status} response"
        )
        content = self._deref(answer).get("content", {})
        media = content.get("application/json")
        return media.get("schema") if media else None

    def validate_response(self, status: int, body: Any) -> None:
        schema = self.response_schema(status)
        if schema is None:
            assert body in (None, b"", ""), (
                f"{self.template} documents no body for {status}, got {body!r:.80}"
            )
            return
        self._check(schema, body, f"{status} response")


def operation_for(spec: dict[str, Any], method: str, path: str, *, prefix: str = "") -> Operation:
    """The spec operation that a concrete request path (minus `prefix`) hits."""
    relative = path[len(prefix) :] if prefix and path.startswith(prefix) else path
    candidates = []
    for template, item in spec["paths"].items():
        if method.lower() not in item:
            continue
        regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(regex, relative):
            # Prefer literal segments over parameters (/Lead/{id} vs /{entity}/{id}).
            candidates.append((template.count("{"), template))
    assert candidates, f"{method} {relative} matches no path of the spec"
    return Operation(spec, min(candidates)[1], method)
