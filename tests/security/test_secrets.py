"""Item 3 of issue 14: no password or key in any answer or log line (job store, Celery,
MLflow, sources, job errors), through one redaction helper; the API's description follows
``api_auth_all``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from loguru import logger
from tests.conftest import POSTGRES_ADMIN_URL
from tests.security.conftest import API_KEY, HEADERS
from tests.support.api import finished_job

from trademl.config import Settings
from trademl.data.stores.sql_store import normalise_url
from trademl.redact import redact, redact_url
from trademl.serving import create_app

PASSWORD = "Pw-7c1e-DISTINCT-db-password"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every loguru message and standard logging record of the test, as text."""
    lines: list[str] = []
    # As trademl's own sink (trademl.log): no variable values in tracebacks. Loguru's default
    # would print the locals of every frame, connection parameters included, which no sink
    # of ours ever writes.
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG", diagnose=False)
    caplog.set_level(logging.DEBUG)
    # Standard logging records join the list as they are emitted, so that a test's assertions
    # see them (adding caplog's records at teardown came after every assertion).
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    yield lines
    logging.getLogger().removeHandler(handler)
    logger.remove(sink)


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and API_KEY not in text, text


def test_redact_masks_passwords_keys_and_known_secrets() -> None:
    Settings(polygon_api_key="polygon-KEY-0042", jobs_url=f"postgresql://u:{PASSWORD}@h/j")  # type: ignore[arg-type]
    cases = {
        f"postgresql+psycopg://tm:{PASSWORD}@db:5432/x failed": "postgresql+psycopg://tm:***@db:5432/x failed",
        f"redis://:{PASSWORD}@127.0.0.1:6379/0": "redis://:***@127.0.0.1:6379/0",
        "amqp://guest:guest@localhost:5672//": "amqp://guest:***@localhost:5672//",
        "https://api.polygon.io/v2?apiKey=abc&limit=5": "https://api.polygon.io/v2?apiKey=***&limit=5",
        "https://x/y?access_token=t0k&secret=s": "https://x/y?access_token=***&secret=***",
        "sqlite:////tmp/jobs.sqlite": "sqlite:////tmp/jobs.sqlite",
        "key polygon-KEY-0042 and password " + PASSWORD: "key *** and password ***",
    }  # fmt: skip
    for text, expected in cases.items():
        assert redact(text) == expected
    assert redact_url("mysql+pymysql://root@h/db") == "mysql+pymysql://root@h/db"
    # Paths and password-less URLs in settings are not secrets: messages keep them.
    Settings(mlflow_artifact_root="/srv/artifacts-root", store_url="duckdb:////srv/market.db")
    assert redact("wrote /srv/artifacts-root/x") == "wrote /srv/artifacts-root/x"


def test_job_errors_are_redacted(api: TestClient) -> None:
    message = f"cannot reach postgresql://tm:{PASSWORD}@db/x with key {API_KEY}"
    job = api.post(
        "/api/v1/jobs", json={"kind": "fail", "payload": {"message": message}}, headers=HEADERS
    )
    done = finished_job(api, job.json()["id"], HEADERS)
    assert done["state"] == "failed"
    assert done["error"]["message"] == "cannot reach postgresql://tm:***@db/x with key ***"


@pytest.fixture
def doomed_database() -> Iterator[str]:
    """A job store URL, password included, on a real PostgreSQL database that the test may
    drop under the server's feet."""
    admin = sa.create_engine(normalise_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT")
    name = "trademl_security_doomed"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as error:
        from tests.conftest import _service_missing

        _service_missing("postgresql", error)
    url = sa.engine.make_url(normalise_url(POSTGRES_ADMIN_URL)).set(
        database=name,
        password=PASSWORD,  # trust authentication ignores it
    )
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def test_503_bodies_and_logs_never_carry_a_password(
    home: Path, doomed_database: str, logs: list[str]
) -> None:
    settings = Settings(
        home=home,
        api_key=API_KEY,  # type: ignore[arg-type]
        jobs_url=doomed_database,
        mlflow_tracking_uri=f"postgresql://tm:{PASSWORD}@127.0.0.1:1/mlflow",
        mlflow_timeout_s=1,
        tracking=False,
        model_reload_s=0,
    )
    bodies = []
    with TestClient(create_app(settings)) as client:
        accepted = client.post("/api/v1/jobs", json={"kind": "echo"}, headers=HEADERS)
        assert accepted.status_code == 202
        admin = sa.create_engine(normalise_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:  # the job store goes away
            conn.exec_driver_sql("DROP DATABASE trademl_security_doomed WITH (FORCE)")
        admin.dispose()
        for method, path in (
            ("GET", "/api/v1/jobs"),
            ("POST", "/api/v1/jobs"),
            ("GET", "/api/v1/models"),
            ("GET", "/ready"),
        ):
            response = client.request(method, path, json={"kind": "echo"}, headers=HEADERS)
            bodies.append(response.text)
            if path.startswith("/api/v1/jobs"):
                assert response.status_code == 503, response.text
                assert "job store postgresql" in response.text and ":***@" in response.text
    assert_clean(*bodies, *logs)


def test_an_unreachable_broker_is_named_without_its_password(home: Path, logs: list[str]) -> None:
    settings = Settings(
        home=home,
        api_key=API_KEY,  # type: ignore[arg-type]
        celery_broker_url=f"redis://:{PASSWORD}@127.0.0.1:1/0",
        tracking=False,
        model_reload_s=0,
    )
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/v1/jobs", json={"kind": "echo"}, headers=HEADERS)
    assert response.status_code == 503, response.text
    assert "Celery broker redis://:***@127.0.0.1:1/0" in response.text
    assert_clean(response.text, *logs)


@pytest.mark.parametrize("auth_all", [False, True])
def test_the_api_description_follows_api_auth_all(home: Path, auth_all: bool) -> None:
    settings = Settings(
        home=home,
        api_key=API_KEY,
        api_auth_all=auth_all,
        tracking=False,
        model_reload_s=0,  # type: ignore[arg-type]
    )
    with TestClient(create_app(settings)) as client:
        for path in ("/openapi.json", "/docs", "/redoc"):
            anonymous = client.get(path)
            assert anonymous.status_code == (401 if auth_all else 200), path
            assert client.get(path, headers=HEADERS).status_code == 200, path
        schema = client.get("/openapi.json", headers=HEADERS).json()
        assert "/api/v1/jobs" in schema["paths"] and "/openapi.json" not in schema["paths"]
        assert client.get("/health").status_code == 200
