"""The schemathesis checks every property-based API test applies: no 5xx, and every answer
conforms to the app's own OpenAPI schema (status, content type, body)."""

from __future__ import annotations

from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
