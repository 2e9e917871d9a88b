"""The attacker's fixtures: a service home with a file just outside it that no request may
read, and an API with a key on an in-process job queue."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from trademl.config import Settings
from trademl.serving import create_app

API_KEY = "security-suite-key-7f3a"
HEADERS = {"X-API-Key": API_KEY}
# Lines of a file outside every allowed root: no response, error or log may ever quote them.
SECRET_LINES = (
    "root:$6$SECRET-SHADOW-LINE-91c2e$:19000:0:99999:7:::\ntoken: SECRET-YAML-VALUE-5d1b\n"
)


@dataclass
class Outside:
    """Files outside TRADEML_HOME that a config may try to name."""

    secret: Path  # a YAML-ish file with distinctive secret lines
    folder: Path  # a folder holding it and a fake run


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    folder = tmp_path / "outside"
    folder.mkdir()
    secret = folder / "secret.yaml"
    secret.write_text(SECRET_LINES)
    (folder / "config.yaml").write_text(SECRET_LINES)
    (folder / "predictions.parquet").write_text(SECRET_LINES)
    return Outside(secret, folder)


def assert_no_secret(text: str) -> None:
    """No line of the secret file appears in ``text``."""
    assert "SECRET-SHADOW-LINE" not in text and "SECRET-YAML-VALUE" not in text, text


@pytest.fixture
def api(home: Path) -> Iterator[TestClient]:
    """The app on a fresh home (TRADEML_HOME, as its job tasks read it), with an API key, no
    tracking and an in-process job queue."""
    settings = Settings(
        home=home,
        api_key=API_KEY,  # type: ignore[arg-type]
        tracking=False,
        model_reload_s=0,
    )
    with TestClient(create_app(settings)) as client:
        yield client
