"""Background jobs: ``POST /api/v1/train``, ``POST /api/v1/backtest`` and ``POST
/api/v1/jobs`` (any registered kind) answer a job id at once; ``GET /api/v1/jobs[/{id}]``
reports state, progress, result or error; ``DELETE /api/v1/jobs/{id}`` cancels.

Submitting and cancelling need the API key; reading needs it too whenever the server has one
(payloads and results are a client's own). Listings leave payloads, results and errors out.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from trademl.jobs.info import JobState
from trademl.serving.deps import ApiKey, ApiKeyIfConfigured, State
from trademl.serving.routes import errors
from trademl.serving.schemas import (
    ConfigJobRequest,
    JobList,
    JobRequest,
    JobResponse,
    JobSummary,
)

router = APIRouter(prefix="/api/v1", tags=["jobs"])

_SUBMITTED = {"status_code": 202, "response_model": JobResponse, "responses": errors(429, 503)}


def _submit(state: State, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    queue = state.job_queue()
    return queue.get(queue.submit(kind, payload)).to_dict()


@router.post("/train", dependencies=[ApiKey], **_SUBMITTED)  # type: ignore[arg-type]
def train(body: ConfigJobRequest, state: State) -> dict[str, Any]:
    """Start a training run (a run config, as `trademl train` reads) as a background job."""
    return _submit(state, "train", {"config": body.config})


@router.post("/backtest", dependencies=[ApiKey], **_SUBMITTED)  # type: ignore[arg-type]
def backtest(body: ConfigJobRequest, state: State) -> dict[str, Any]:
    """Start a backtest (a backtest config, as `trademl backtest` reads) as a background job."""
    return _submit(state, "backtest", {"config": body.config})


@router.post("/jobs", dependencies=[ApiKey], **_SUBMITTED)  # type: ignore[arg-type]
def submit(body: JobRequest, state: State) -> dict[str, Any]:
    """Start a job of any registered kind (`echo`, `sleep` and `fail` are cheap diagnostics)."""
    return _submit(state, body.kind, body.payload)


_LISTED = set(JobSummary.model_fields)


@router.get(
    "/jobs",
    response_model=JobList,
    responses=errors(401, 403, 503),
    dependencies=[ApiKeyIfConfigured],
)
def list_jobs(
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    job_state: Annotated[JobState | None, Query(alias="state")] = None,
) -> dict[str, Any]:
    """The newest jobs, optionally in one state, and the count per state."""
    queue = state.job_queue()
    jobs = [
        {key: value for key, value in job.to_dict().items() if key in _LISTED}
        for job in queue.list(limit, job_state)
    ]
    return {"jobs": jobs, "counts": queue.counts()}


@router.get(
    "/jobs/{job_id}",
    response_model=JobResponse,
    responses=errors(401, 403, 404, 503),
    dependencies=[ApiKeyIfConfigured],
)
def get_job(job_id: str, state: State) -> dict[str, Any]:
    """A job's state, progress, and result or error."""
    return state.job_queue().get(job_id).to_dict()


@router.delete(
    "/jobs/{job_id}",
    response_model=JobResponse,
    responses=errors(404, 409, 503),
    dependencies=[ApiKey],
)
def cancel_job(job_id: str, state: State) -> dict[str, Any]:
    """Cancel a job: a queued one at once, a running one at its next progress report."""
    return state.job_queue().cancel(job_id).to_dict()
