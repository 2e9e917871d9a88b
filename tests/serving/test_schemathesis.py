"""Property-based calls of every operation of the app's own OpenAPI schema (schemathesis,
in-process over ASGI, with the API key): no 5xx, and every answer conforms to the schema."""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from tests.serving.conftest import HEADERS
from tests.support.schema_checks import CHECKS

EXAMPLES_PER_OPERATION = 30


def test_every_operation_conforms_to_the_schema(client: TestClient) -> None:
    # The session's running app: models loaded and the job queue open, as when served.
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Case) -> None:
            statuses.append(case.call_and_validate(headers=HEADERS, checks=CHECKS).status_code)

        call()
    assert len(statuses) >= 10 * len(operations) and 200 in statuses
