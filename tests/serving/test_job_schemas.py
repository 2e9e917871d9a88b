"""The API's job bodies are the job layer's model: same fields, same order, same states."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from trademl.jobs.info import JobError, JobInfo, JobState
from trademl.serving.schemas import JobResponse, JobSummary


def test_job_bodies_are_built_from_the_job_layer() -> None:
    names = [field.name for field in dataclasses.fields(JobInfo)]
    assert list(JobResponse.model_fields) == names
    assert list(JobSummary.model_fields) == [
        name for name in names if name not in {"payload", "result", "error"}
    ]
    assert JobResponse.model_fields["state"].annotation is JobState
    schema = JobResponse.model_json_schema()
    assert schema["$defs"]["JobState"]["enum"] == [state.value for state in JobState]


def test_a_job_round_trips_through_its_response_body() -> None:
    info = JobInfo(
        id="a" * 32,
        kind="fail",
        state=JobState.FAILED,
        progress=1.0,
        message="boom",
        payload={"x": 1},
        result=None,
        error=JobError("boom", "RuntimeError"),
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
        started_at=None,
        finished_at=None,
        attempts=1,
        retryable=False,
        cancel_requested=False,
    )
    body = JobResponse.model_validate(info.to_dict()).model_dump()
    assert body == {
        **dataclasses.asdict(info),
        "error": {"message": "boom", "type": "RuntimeError"},
    }
