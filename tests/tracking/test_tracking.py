"""Runs, the pipeline model and the registry on real MLflow backends (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from tests.tracking.conftest import MODEL, Backend

from trademl.config import Settings
from trademl.data.ingest import open_default_store, read_series
from trademl.errors import ModelNotFoundError, PromotionRefusedError, TrackingError
from trademl.features import build_features
from trademl.har import HAR_SEASONAL, har_columns
from trademl.pipeline import load_run_pipeline
from trademl.tracking import registry
from trademl.tracking.client import connect, fluent
from trademl.tracking.export import export_version
from trademl.tracking.pipeline import load_pipeline, to_model_input
from trademl.tracking.runs import best_run, log_metrics, note_nonfinite, search_runs, tracked_run

TAGS = ("symbol", "timeframe", "horizons", "feature_set", "feature_set_version", "data_hash")


def candles(settings: Settings) -> pd.DataFrame:
    with open_default_store(settings) as store:
        frame = read_series(
            store,
            "BTCUSDT",
            "1h",
            pd.Timestamp("2023-05-01", tz="UTC"),  # longer than the warm-up
            pd.Timestamp("2023-06-20", tz="UTC"),
        )
    frame.attrs.update(symbol="BTCUSDT", timeframe="1h")
    return frame


def test_training_run_records_tags_metrics_artifacts_and_model(backend: Backend) -> None:
    result = backend.runs["good"]
    client = connect(backend.settings)
    run = client.get_run(str(result.run_id))
    tags = run.data.tags
    for key in (*TAGS, "git_commit", "trigger", "trademl_version", "run_kind"):
        assert tags.get(key), key
    assert tags["trigger"] == "manual" and tags["horizons"] == "intraday=6"
    assert tags["data_hash"] == result.data_hash
    assert run.data.params["models.0.kind"] == "lgbm"
    assert run.data.params["data.symbol"] == "BTCUSDT"
    assert 0.5 < run.data.metrics["direction.intraday.lgbm.log_loss"] < 0.8
    assert "direction.intraday.naive_prior.log_loss" in run.data.metrics
    folds = client.get_metric_history(run.info.run_id, "fold.direction.intraday.lgbm.accuracy")
    assert sorted(m.step for m in folds) == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "predictions.parquet", "folds.csv", "model_card.md"} <= artifacts
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "model_training"
    version = client.get_model_version(MODEL, str(result.model_version))
    assert version.run_id == run.info.run_id and version.description.startswith("BTCUSDT 1h")
    assert version.tags["data_hash"] == result.data_hash
    with fluent(backend.settings):  # MLflow's own API, on the backend trademl logged to
        model = mlflow.models.get_model_info(f"models:/{MODEL}/{result.model_version}")
    assert model.signature is not None and model.saved_input_example_info is not None
    assert [c.name for c in model.signature.inputs.inputs][:2] == ["timestamp", "open"]
    record = json.loads((result.output / "tracking.json").read_text())
    assert record["run_id"] == result.run_id


def test_champion_pyfunc_equals_training_process(backend: Backend) -> None:
    champion = registry.resolve_version(MODEL, "champion", backend.settings)
    result = next(r for r in backend.runs.values() if r.model_version == champion.version)
    frame = candles(backend.settings)
    with fluent(backend.settings):
        loaded = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    served = loaded.predict(to_model_input(frame)).set_index("timestamp")
    # The training process: the final predictor it pickled, on features of the same candles.
    final = load_run_pipeline(result.output).predictor
    pipeline, info = load_pipeline(MODEL, "champion", backend.settings)
    features = build_features(frame, pipeline.feature_set).iloc[pipeline.warmup_bars :]
    trained = final.predict(features[pipeline.feature_columns], frame["close"].loc[features.index])
    assert info.version == champion.version and len(served) == len(trained) > 100
    np.testing.assert_array_equal(served[trained.columns].to_numpy(), trained.to_numpy())
    pd.testing.assert_frame_equal(pipeline.predict(frame), trained, check_names=False)
    assert pipeline.symbol == "BTCUSDT" and pipeline.horizons == {"intraday": 6}


def test_nonfinite_metrics_do_not_lose_the_run(backend: Backend) -> None:
    with tracked_run("model_training", run_name="nan", tags={}, settings=backend.settings) as (
        client,
        run_id,
    ):
        skipped = log_metrics(client, run_id, {"ok": 1.5, "nan": math.nan, "inf": math.inf})
        note_nonfinite(client, run_id, skipped)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"ok": 1.5}
    assert run.data.tags["nonfinite_metrics"] == "inf,nan"


def test_first_version_failing_the_gate_gets_no_alias(backend: Backend) -> None:
    weak = backend.runs["weak"]
    assert weak.model_version is not None and weak.alias is None
    assert "the baselines serve them all" in str(weak.registry_reason)
    # Its max-high forecast (a constant over the HAR baseline) loses to the mean baseline, so
    # a baseline serves that target: in the registered pipeline and in the model card.
    choice = weak.choices["max_high_6"]
    assert choice.source.startswith("naive_") and not choice.learned
    assert not all(c.better(0.5) for c in choice.comparisons)
    pipeline, _ = load_pipeline(MODEL, weak.model_version, backend.settings)
    served = pipeline.predictor.served_by("intraday")
    assert served == {
        k: weak.choices[f"{k}_6"].source for k in ("direction", "max_high", "min_low")
    }
    card = (weak.output / "model_card.md").read_text()
    assert (
        f"max_high_6 ({choice.source})" in card.split("Served by a baseline: ")[1].splitlines()[0]
    )
    good = backend.runs["good"]
    assert "passes the gate" in str(good.registry_reason)
    # Learning from zero (residual: false), its pipeline still computes the HAR baseline's
    # columns: a range target its model does not win is served by that baseline.
    good_pipeline, _ = load_pipeline(MODEL, good.model_version, backend.settings)
    assert {*har_columns(6), HAR_SEASONAL} <= set(good_pipeline.feature_columns)


def test_promote_refuse_rollback_and_history(backend: Backend) -> None:
    settings = backend.settings
    weak, good, better = (backend.runs[k].model_version for k in ("weak", "good", "better"))
    with pytest.raises(PromotionRefusedError, match="the baselines serve them all"):
        registry.promote(MODEL, weak, settings=settings)
    with pytest.raises(PromotionRefusedError, match="by more than the margin 1"):
        registry.promote(MODEL, settings=settings, margin=1.0)
    # At the usual level 0.05 the challenger's edge is noise on 800 rows: refused.
    with pytest.raises(PromotionRefusedError, match=r"\(one-sided p < 0\.05\) on no gated"):
        registry.promote(MODEL, settings=settings, level=0.05)
    decision = registry.promote(MODEL, settings=settings)  # the challenger
    assert (decision.version, decision.previous) == (better, good)
    assert registry.resolve_version(MODEL, "champion", settings).version == better
    with pytest.raises(ModelNotFoundError, match="no alias 'challenger'"):
        registry.resolve_version(MODEL, "challenger", settings)
    back = registry.rollback(MODEL, settings=settings, reason="test")
    assert (back.version, back.previous) == (good, better)
    with pytest.raises(ModelNotFoundError, match="nothing to roll back to"):
        registry.rollback(MODEL, settings=settings)
    actions = [(e["action"], e["version"]) for e in registry.history(MODEL, settings)]
    assert actions[-5:] == [
        ("rejected", weak),
        ("rejected", better),
        ("rejected", better),
        ("promoted", better),
        ("rollback", good),
    ]


def test_missing_model_and_version(backend: Backend) -> None:
    with pytest.raises(ModelNotFoundError, match="'nope' is not registered"):
        registry.resolve_version("nope", "champion", backend.settings)
    with pytest.raises(ModelNotFoundError, match="has no version 99"):
        load_pipeline(MODEL, 99, backend.settings)


def test_search_and_best_run(backend: Backend) -> None:
    runs = search_runs(
        f"tags.registered_model = '{MODEL}' and tags.run_kind = 'train'", settings=backend.settings
    )
    assert len(runs) >= 3 and set(runs["tags.run_kind"]) == {"train"}
    best = best_run("max_high.intraday.lgbm.r2", mode="max", settings=backend.settings)
    assert best["run_id"] == backend.runs["better"].run_id


def test_onnx_export_and_card(backend: Backend, tmp_path: Path) -> None:
    manifest = json.loads(
        export_version(MODEL, "champion", tmp_path, settings=backend.settings).read_text()
    )
    assert "intraday__max_high" in manifest["models"]
    assert (tmp_path / manifest["models"]["intraday__max_high"]["file"]).exists()
    # A target a baseline serves is not exported, and the manifest says which baseline.
    pipeline, _ = load_pipeline(MODEL, "champion", backend.settings)
    baselines = {
        t: s for t, s in pipeline.predictor.served_by("intraday").items() if s.startswith("naive_")
    }
    assert baselines  # the champion's direction forecast did not beat the class prior
    for target, source in baselines.items():
        assert f"served by the baseline {source}" in manifest["skipped"][f"intraday__{target}"]
    card = registry.model_card_text(MODEL, "champion", backend.settings)
    for heading in ("## Data", "## Features", "## Labels", "## Validation", "## Limitations"):
        assert heading in card
    assert "naive_prior" in card and "Interval coverage" in card


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9", "postgresql://postgres@127.0.0.1:9/mlflow"])
def test_unreachable_backend_fails_fast(uri: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(TrackingError, match="unreachable within 2s"):
        connect(Settings(home=tmp_path, mlflow_tracking_uri=uri, mlflow_timeout_s=2))
    assert time.perf_counter() - started < 5
