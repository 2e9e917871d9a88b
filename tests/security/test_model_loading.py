"""Item 4 of issue 14: the server unpickles only versions carrying an allowed alias (the
latest unpromoted one only when enabled), and only when the artifact's SHA-256 recorded at
registration matches; a tampered or unfingerprinted artifact is never unpickled."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.training import tiny_run_config

from trademl.api import train as run
from trademl.config import Settings
from trademl.data.ingest import import_path, open_default_store
from trademl.errors import TrackingError
from trademl.serving.host import ModelHost
from trademl.tracking.client import connect
from trademl.tracking.pipeline import load_pipeline
from trademl.tracking.registry import (
    PIPELINE_SHA_TAG,
    file_sha256,
    promote,
    resolve_version,
)

MODEL = "BTCUSDT_1h_security_test"


@dataclass
class Registry:
    settings: Settings
    artifact: Path  # version 1's pipeline.pkl in the local artifact store


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Registry:
    """One naive version registered behind an impossible gate: it stays unpromoted."""
    home = tmp_path_factory.mktemp("security_models")
    settings = Settings(home=home, mlflow_timeout_s=5)
    with open_default_store(settings) as store:
        import_path(data_dir / "crypto" / "BTCUSDT_1h.csv", store)
    config = tiny_run_config(
        home / "runs" / "v1", {"kind": "naive"}, name=MODEL, gate={"min_rows": 1_000_000}
    )
    run(config, settings=settings)
    (artifact,) = (home / "mlflow").rglob("pipeline.pkl")
    return Registry(settings, artifact)


class _Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_registration_records_the_artifacts_sha256(registry: Registry) -> None:
    info = resolve_version(MODEL, 1, registry.settings)
    assert info.tags[PIPELINE_SHA_TAG] == file_sha256(registry.artifact)
    pipeline, _ = load_pipeline(MODEL, 1, registry.settings)
    assert pipeline.symbol == "BTCUSDT"


def test_unpromoted_versions_load_only_when_enabled(registry: Registry) -> None:
    host = ModelHost(registry.settings)
    host.refresh()
    assert host.served == {}  # before: the latest version was loaded, no promotion needed
    assert "promote one" in host.load_errors[MODEL]
    opted_in = registry.settings.model_copy(update={"serve_latest_unpromoted": True})
    host = ModelHost(opted_in)
    host.refresh()
    assert host.served[MODEL].version == 1 and host.served[MODEL].latest_unpromoted


def test_only_allowed_aliases_load(registry: Registry) -> None:
    client = connect(registry.settings)
    client.set_registered_model_alias(MODEL, "staging", "1")
    try:
        host = ModelHost(registry.settings)
        host.refresh()
        assert host.served == {}  # "staging" is not an allowed alias
        staging = registry.settings.model_copy(update={"serve_aliases": ["champion", "staging"]})
        host = ModelHost(staging)
        host.refresh()
        assert host.served[MODEL].alias == "staging"
    finally:
        client.delete_registered_model_alias(MODEL, "staging")


def test_a_tampered_or_unfingerprinted_artifact_is_never_unpickled(
    registry: Registry, tmp_path: Path
) -> None:
    promote(MODEL, 1, force=True, settings=registry.settings)
    original = registry.artifact.read_bytes()
    marker = tmp_path / "code-ran"
    client = connect(registry.settings)
    sha = resolve_version(MODEL, 1, registry.settings).tags[PIPELINE_SHA_TAG]
    try:
        registry.artifact.write_bytes(pickle.dumps(_Payload(marker)))
        with pytest.raises(TrackingError, match="does not match the SHA-256 recorded"):
            load_pipeline(MODEL, "champion", registry.settings)
        host = ModelHost(registry.settings)
        host.refresh()
        assert host.served == {} and "does not match" in host.load_errors[MODEL]
        client.delete_model_version_tag(MODEL, "1", PIPELINE_SHA_TAG)
        registry.artifact.write_bytes(original)
        with pytest.raises(TrackingError, match=f"carries no {PIPELINE_SHA_TAG} tag"):
            load_pipeline(MODEL, "champion", registry.settings)
        assert not marker.exists()
    finally:
        registry.artifact.write_bytes(original)
        client.set_model_version_tag(MODEL, "1", PIPELINE_SHA_TAG, sha)
    host = ModelHost(registry.settings)
    host.refresh()
    assert host.served[MODEL].alias == "champion"
