"""The pipeline model in MLflow: :class:`PipelinePyfunc` wraps a
:class:`trademl.pipeline.PipelineModel` (plain Python, saved by every run) as an MLflow pyfunc
model, logged with a signature and an input example by :func:`log_pipeline`;
:func:`load_pipeline` loads a registered version back.

>>> pipeline, info = load_pipeline("BTCUSDT_1h_btc_1h", "champion")  # doctest: +SKIP
>>> pipeline.predict(candles).tail(1)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from trademl import __version__
from trademl.config import Settings, get_settings
from trademl.data.candles import COLUMNS
from trademl.errors import TrackingError
from trademl.pipeline import PipelineModel, check_feature_contract
from trademl.tracking.client import connect
from trademl.tracking.wheel import write_project_wheel

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from trademl.tracking.registry import VersionInfo

PIPELINE_ARTIFACT = "pipeline"
WHEEL_ARTIFACT = "trademl_wheel"
LOGGED_MODEL_NAME = "pipeline"
# What the pyfunc's environment needs, pinned to what trained it (never inferred: the inferred
# list is noisy and drops torch's +cpu local version).
_REQUIREMENTS = (
    "mlflow",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
    "lightgbm",
    "TA-Lib",
    "numba",
    "PyYAML",
    "pydantic",
)


class PipelinePyfunc(PythonModel):
    """The MLflow pyfunc face of a :class:`PipelineModel`.

    Its input is the candles with a (naive, UTC) ``timestamp`` column, as MLflow signatures
    hold no time zone; its output is :meth:`PipelineModel.predict` with the index as a
    ``timestamp`` column, so it survives JSON serving.
    """

    def load_context(self, context: Any) -> None:
        """Unpickle the pipeline from the model's artifacts."""
        with open(context.artifacts[PIPELINE_ARTIFACT], "rb") as handle:
            self.pipeline: PipelineModel = pickle.load(handle)
        check_feature_contract(self.pipeline, "this pyfunc model")

    # A DataFrame hint: MLflow validates nothing from it (the signature rules) and stays quiet.
    def predict(
        self, context: object, model_input: pd.DataFrame, params: dict[str, object] | None = None
    ) -> pd.DataFrame:
        """Per-horizon predictions of the candles in ``model_input``."""
        out = self.pipeline.predict(pd.DataFrame(model_input))
        out.index = pd.DatetimeIndex(out.index).tz_convert("UTC").tz_localize(None)
        return out.reset_index()


def to_model_input(candles: pd.DataFrame) -> pd.DataFrame:
    """Candles as the pyfunc takes them: a naive UTC ``timestamp`` column and float64 OHLCV."""
    frame = candles[list(COLUMNS)].astype(np.float64)
    index = pd.DatetimeIndex(frame.index)
    frame.index = (index.tz_convert("UTC") if index.tz else index).tz_localize(None)
    frame.index.name = "timestamp"
    return frame.reset_index()


def requirements(kinds: list[str], wheel: str | None = None) -> list[str]:
    """Pinned pip requirements of the pyfunc for the given model kinds.

    ``wheel`` is the logged wheel of trademl, relative to the model's folder (where MLflow
    installs the requirements from); without one, trademl is pinned by version.
    """
    names = list(_REQUIREMENTS)
    if "xgb" in kinds:
        # Whichever of the two is installed (never both: they share one package).
        names += ["xgboost-cpu", "xgboost"]
    if set(kinds) & {"gru", "lstm", "transformer", "cnn_lstm"}:
        names.append("torch")
    pinned = [wheel or f"trademl=={__version__}"]
    for name in names:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pinned


def log_pipeline(pipeline: PipelineModel, candles: pd.DataFrame, kinds: list[str]) -> ModelInfo:
    """Log ``pipeline`` as a pyfunc model of the active MLflow run.

    The input example is the last ``warmup_bars + 3`` of ``candles`` (MLflow runs the model on
    it when logging, so it must be long enough to predict); the signature is inferred from it
    and from the model's output on it.
    """
    from mlflow.models import infer_signature

    example = to_model_input(candles.iloc[-(pipeline.warmup_bars + 3) :])
    wrapper = PipelinePyfunc()
    wrapper.pipeline = pipeline
    signature = infer_signature(example, wrapper.predict(None, example))
    with tempfile.TemporaryDirectory() as folder, _quiet("mlflow.pyfunc"):
        path = Path(folder) / "pipeline.pkl"
        path.write_bytes(pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL))
        # The code that trained it, as a wheel beside it: the environment rebuilds from the
        # model alone (MLflow installs requirements from the model's folder).
        wheel = write_project_wheel(Path(folder))
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=LOGGED_MODEL_NAME,
            python_model=PipelinePyfunc(),
            artifacts={PIPELINE_ARTIFACT: str(path), WHEEL_ARTIFACT: str(wheel)},
            signature=signature,
            input_example=example,
            pip_requirements=requirements(kinds, f"artifacts/{wheel.name}"),
            metadata={
                "symbol": pipeline.symbol,
                "symbols": list(pipeline.served_symbols),
                "timeframe": pipeline.timeframe,
                "horizons": pipeline.horizons,
                "feature_set": pipeline.feature_set.name,
                "feature_set_version": pipeline.feature_set.version,
                "warmup_bars": pipeline.warmup_bars,
            },
        )
    return info


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    # MLflow warns about cloudpickle for any Python-object model; ours is a class of trademl.
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def load_pipeline(
    name: str, alias_or_version: str | int = "champion", settings: Settings | None = None
) -> tuple[PipelineModel, VersionInfo]:
    """Load a registered pipeline model without MLflow's pyfunc machinery.

    Parameters
    ----------
    name : str
        The registered model name.
    alias_or_version : str or int
        ``"champion"``, ``"challenger"`` or a version number.
    settings : Settings or None
        The tracking backend; the process settings by default.

    Returns
    -------
    tuple of (PipelineModel, VersionInfo)
        The pipeline and the registry's record of the version (name, version, aliases, run
        id, tags).

    Raises
    ------
    ModelNotFoundError
        No such model, version or alias.
    TrackingError
        The backend is unreachable or the version holds no pipeline.
    """
    from trademl.tracking.registry import (
        pipeline_file,
        resolve_version,
        verify_pipeline_artifact,
    )

    info = resolve_version(name, alias_or_version, settings)
    with tempfile.TemporaryDirectory() as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(
                # The version's own storage location: no registry lookup through MLflow's
                # process-wide URI, which another thread may point elsewhere.
                artifact_uri=connect(settings).get_model_version_download_uri(
                    name, str(info.version)
                ),
                dst_path=folder,
                tracking_uri=(settings or get_settings()).mlflow_uri,
            )
        )
        path = pipeline_file(local, f"model {name} version {info.version}")
        verify_pipeline_artifact(info, path)  # before unpickling: loading runs its code
        with open(path, "rb") as handle:
            pipeline = pickle.load(handle)
    if not isinstance(pipeline, PipelineModel):
        raise TrackingError(f"model {name} version {info.version} is not a trademl pipeline")
    check_feature_contract(pipeline, f"model {name} version {info.version}")
    return pipeline, info
