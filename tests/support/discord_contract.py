"""Discord's own contract: what the bot sends, and what the emulator answers, checked against Discord's OpenAPI
spec (API v10, vendored in ``discord_openapi/``).

The emulator is only as strict as we make it; the spec is Discord's. Every JSON request body (and the
``payload_json`` of a multipart one) is validated against the ``requestBody`` schema of its route, and a
failure is answered the way Discord answers it (400, code 50035 "Invalid Form Body", the failing field's
path in ``errors``) and recorded, so a test fails at the request that breaks the contract. The emulator's
own answers are checked against the response schemas too, except for the deviations listed in
``KEPT_DEVIATIONS``.

The spec's known looseness (its README): snowflakes are typed as strings, and Discord also takes integers
(discord.py sends new attachments' ids as 0, 1, ...), so both are accepted; ``format`` is not checked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SPEC_PATH = Path(__file__).with_name("discord_openapi") / "openapi.json"
SNOWFLAKE = {"anyOf": [{"type": "string", "pattern": "^(0|[1-9][0-9]*)$"}, {"type": "integer", "minimum": 0}]}

# Where the emulator's answers knowingly differ from the response schemas, and why (path template, method,
# the response field's path as a dotted prefix). Kept short: each one is a simplification tests do not need.
KEPT_DEVIATIONS: tuple[tuple[str, str, str], ...] = (
    # the docs win where they and the spec disagree: a callback's resource names its type for every callback
    # (deferrals 5 and 6, autocomplete 8, forms 9), where the spec lists message and activity resources only
    ("/interactions/{interaction_id}/{interaction_token}/callback", "POST", "resource"),
    # a message made by a submitted form: the emulator does not track which interaction opened the form, so its
    # interaction_metadata lacks triggering_interaction_metadata (discord.py does not read it)
    ("*", "*", "interaction_metadata"),
)


@dataclass(frozen=True)
class Violation:
    """A body that Discord would refuse (or an answer shaped unlike Discord's)."""

    method: str
    route: str  # the spec's path template
    field: str  # where in the body, e.g. data.components.0.components.0.label
    message: str

    def __str__(self) -> str:
        return f"{self.method} {self.route}: {self.field or '(body)'}: {self.message}"


class Contract:
    """The spec, compiled: routes matched by path, validators made once per schema."""

    def __init__(self, spec_path: Path = SPEC_PATH) -> None:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        spec["components"]["schemas"]["SnowflakeType"] = SNOWFLAKE
        self._components = spec["components"]
        routes = []
        for template, operations in spec["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            # literal segments (/messages/@original) before templated ones (/messages/{message_id})
            routes.append((template.count("{"), template, re.compile(pattern), operations))
        self._routes = [(t, p, ops) for _n, t, p, ops in sorted(routes, key=lambda r: (r[0], r[1]))]
        self._validators: dict[tuple[str, str, str], Draft202012Validator | None] = {}

    def route(self, path: str) -> tuple[str, dict[str, Any]] | None:
        """The spec's path template and operations for a request path (without the /api/v10 prefix)."""
        for template, pattern, operations in self._routes:
            if pattern.fullmatch(path):
                return template, operations
        return None

    def request_violations(self, method: str, path: str, body: Any) -> list[Violation]:
        """What is wrong with a request body for this route (nothing when the spec has no schema for it)."""
        validator, template = self._validator(method, path, "request")
        if validator is None:
            return []
        return _violations(validator, body, method, template)

    def response_violations(self, method: str, path: str, status: int, body: Any) -> list[Violation]:
        """What is wrong with an answer for this route, less the kept deviations."""
        validator, template = self._validator(method, path, f"response {status}")
        if validator is None:
            return []
        return [v for v in _violations(validator, body, method, template) if not _kept(v)]

    def _validator(self, method: str, path: str, kind: str) -> tuple[Draft202012Validator | None, str]:
        found = self.route(path)
        if found is None:
            return None, path
        template, operations = found
        key = (template, method, kind)
        if key not in self._validators:
            self._validators[key] = self._make(operations.get(method.lower()) or {}, kind)
        return self._validators[key], template

    def _make(self, operation: dict[str, Any], kind: str) -> Draft202012Validator | None:
        if kind == "request":
            content = (operation.get("requestBody") or {}).get("content") or {}
            schema = (content.get("application/json") or {}).get("schema")
        else:
            status = kind.split()[1]
            answer = (operation.get("responses") or {}).get(status) or {}
            schema = ((answer.get("content") or {}).get("application/json") or {}).get("schema")
        if schema is None:
            return None
        return Draft202012Validator({**schema, "components": self._components})


@cache
def contract() -> Contract:
    """The one compiled contract (reading the 1 MB spec once per test run)."""
    return Contract()


def discord_errors(violations: list[Violation]) -> dict[str, Any]:
    """``errors`` of a 50035 answer: the failing fields nested by path, each with its ``_errors``."""
    errors: dict[str, Any] = {}
    for violation in violations:
        node = errors
        for part in [p for p in violation.field.split(".") if p]:
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": "BASE_TYPE_INVALID", "message": violation.message})
    return errors


def _violations(validator: Draft202012Validator, body: Any, method: str, template: str) -> list[Violation]:
    """Every failing field, deepest first (one per top-level failure)."""
    errors = sorted((_deepest(e) for e in validator.iter_errors(body)), key=lambda e: -len(e.absolute_path))
    return [Violation(method, template, ".".join(str(p) for p in e.absolute_path), e.message[:300]) for e in errors]


def _deepest(error: ValidationError) -> ValidationError:
    """The error that says what is wrong: inside an anyOf (a union of shapes), the branches whose discriminating
    ``type`` matched the body, and there the deepest failing field."""
    while error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for inner in error.context:
            branches.setdefault(inner.relative_schema_path[0], []).append(inner)
        viable = [errs for errs in branches.values() if not any(_wrong_kind(e) for e in errs)]
        pool = [e for errs in (viable or list(branches.values())) for e in errs]
        error = max((_deepest(e) for e in pool), key=lambda e: len(e.absolute_path))
        if not error.context:
            break
    return error


def _wrong_kind(error: ValidationError) -> bool:
    # a union branch meant for another kind of body: its ``type`` (the discriminator) is not the body's
    return error.validator in ("enum", "const") and bool(error.absolute_path) and error.absolute_path[-1] == "type"


def _kept(violation: Violation) -> bool:
    """Whether a violation is one of KEPT_DEVIATIONS: its route and method, and the field anywhere on its path."""
    return any(route in ("*", violation.route) and method in ("*", violation.method)
               and field in violation.field.split(".") for route, method, field in KEPT_DEVIATIONS)
