"""Export fitted models to ONNX and predict with ONNX Runtime, matching the model's numbers.

Every exported graph has one input and one output:

``features``
    float32. Tree kinds: ``(batch, n_features)``, the columns in the order of
    ``feature_names_in_``. Deep kinds: raw (unscaled) feature windows
    ``(batch, seq_len, n_features)``, oldest row first.
``prediction``
    float32 ``(batch,)``: the regression value (or quantile), or P(y = 1) for classification,
    the number :func:`~trademl.models.base.predicted_value` returns (``model.predict``, or
    ``model.predict_proba(X)[:, 1]``).

Precision
    ONNX tree ensembles compare float32 inputs with float32 thresholds, while LightGBM and
    XGBoost compare float64 values. :class:`OnnxPredictor` casts the features to float32
    (``DataFrame.to_numpy(dtype=numpy.float32)``); the native model fed the *same* float32
    values (cast back to float64) gives the same predictions to about 1e-6. On raw float64
    features a row whose value lies within float32 rounding of a split threshold may take the
    other branch, so compare the two on float32-cast features. NaN is kept as NaN: the
    converted trees route it down the same "missing" branch as the native libraries.

Kinds
    A kind says how it is exported by its class attribute ``onnx_export`` (None: it is not);
    :func:`exportable_kinds` lists the registered kinds that are.

    ``lgbm`` (``onnx_export = "tree"``)
        The LightGBM booster cut at ``best_iteration_`` trees (re-read from its text dump
        with ``num_iteration``), converted by ``onnxmltools.convert_lightgbm``.
    ``xgb`` (``"tree"``)
        The XGBoost booster cut at ``best_iteration_`` rounds, with the feature names
        ``f0..fN`` the converter expects, converted by ``onnxmltools.convert_xgboost``.
    ``split_conformal`` (``"inner"``)
        The fitted inner model ``model_``, whose predictions the wrapper returns unchanged.
        The conformal interval is *not* part of the graph: add ``± q`` to the ONNX output,
        ``q = conformal_quantile(model.scores_, alpha)`` (times ``model.scale(X)`` for
        normalised intervals; the pipeline's ONNX manifest gives ``q`` at the served level and
        the scale columns). Wrappers whose point prediction is
        not one inner model's (``cqr``, ``calibrated``) are refused.
    ``residual`` (``"residual"``: a tree kind on top of the HAR baseline, alone or inside
    ``split_conformal``)
        The tree graph plus the baseline's linear map in the same graph: the volatility
        columns gathered, missing values filled with the training medians, multiplied by the
        coefficients and added, with the intercept, to the trees' output.
    ``gru``, ``lstm``, ``transformer``, ``cnn_lstm`` (``"network"``)
        The torch network, wrapped so that the graph takes raw windows: it applies the
        model's feature scaling ``(x - mean) / scale``, sets non-finite results (NaN) to 0 as
        the kind's scaler does, runs the network and maps its first output back to target
        units (or through the sigmoid for classification). Exported on the CPU with
        ``torch.onnx.export(dynamo=False)`` at opset 17, with a dynamic batch axis; the graph
        is for the fitted ``seq_len`` only. Monte Carlo dropout intervals are not exported
        (dropout is off in the graph).

Tree graphs use opset 15, the newest ``onnxmltools`` 1.16 writes.

What the deep export reads from a deep model
    ``network_`` (the fitted module: scaled windows → ``(batch, n_outputs)``, logits for
    classification, standardised targets otherwise; the first column is exported),
    ``x_scaler_`` and, for regression and quantile, ``y_scaler_`` (each with ``mean`` and
    ``scale``), and ``seq_len``: the attributes of
    :class:`trademl.models.deep.DeepSequenceModel`.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from trademl import __version__
from trademl.atomic import atomic_path
from trademl.errors import ConfigError
from trademl.models.base import BaseModel, load_all_models

if TYPE_CHECKING:
    import torch

# The wrappers exported through the model they hold (onnx_export "inner" and "residual").
_WRAPPERS = "split_conformal or residual around them"

INPUT_NAME = "features"
OUTPUT_NAME = "prediction"
TREE_OPSET = 15
DEEP_OPSET = 17
_META_PREFIX = "trademl."


def export_onnx(model: BaseModel, path: str | Path, *, n_features: int | None = None) -> Path:
    """Write ``model`` as an ONNX graph whose output is ``predicted_value(model, X)``.

    Parameters
    ----------
    model:
        A fitted model whose class declares ``onnx_export``: a tree kind (``lgbm``, ``xgb``),
        a deep kind (``gru``, ``lstm``, ``transformer``, ``cnn_lstm``), ``residual`` around a
        tree kind, or ``split_conformal`` around any of them.
    path:
        The ``.onnx`` file to write (its folder is created); written atomically.
    n_features:
        The number of input features; checked against the model's ``n_features_in_`` when
        given (None takes it from the model).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    NotFittedError
        If ``model`` is not fitted.
    ConfigError
        If the kind cannot be exported (the message lists the supported kinds), or
        ``n_features`` disagrees with the model.

    Notes
    -----
    The graph also stores metadata: ``trademl.kind``, ``trademl.task``,
    ``trademl.features`` (JSON list of column names), ``trademl.seq_len`` (deep kinds) and
    ``trademl.version``; :class:`OnnxPredictor` uses them to align and window its input.
    """
    inner = _exported_model(model)
    inner._check_fitted()
    baseline = None
    if inner.onnx_export == "residual":
        baseline = inner.baseline_  # type: ignore[attr-defined]
        inner = inner.model_  # type: ignore[attr-defined]
        if inner.onnx_export != "tree":
            raise ConfigError(
                f"onnx export: a residual {inner.kind!r} model cannot be exported; supported "
                f"inner kinds of a residual model: {', '.join(exportable_kinds('tree'))}"
            )
    features = list(inner.feature_names_)
    if n_features is not None and n_features != len(features):
        raise ConfigError(
            f"onnx export: n_features={n_features} but the {inner.kind} model was fitted on "
            f"{len(features)} feature(s)"
        )
    meta: dict[str, str] = {
        "kind": model.kind,
        "task": inner.task,
        "features": json.dumps(features),
        "version": __version__,
    }
    target = Path(path)
    if inner.onnx_export == "network":
        module, seq_len = _deep_module(inner)
        meta["seq_len"] = str(seq_len)
        with atomic_path(target) as temp:
            _export_torch(module, seq_len, len(features), temp)
            _add_metadata(temp, meta)
        return target
    onnx_model = _tree_graph(inner, len(features))
    if baseline is not None:
        _add_baseline(onnx_model, baseline, features)
    _set_metadata(onnx_model, meta)
    with atomic_path(target) as temp:
        Path(temp).write_bytes(onnx_model.SerializeToString())
    return target


class OnnxPredictor:
    """Predictions from an exported graph, with ONNX Runtime on one intra-op thread.

    Parameters
    ----------
    path:
        A file written by :func:`export_onnx`.

    Attributes
    ----------
    kind, task : str
        Of the exported model.
    feature_names : list of str
        The input columns, in order.
    seq_len : int or None
        Window length of a deep kind, None for tree kinds.
    """

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        file = Path(path)
        if not file.exists():
            raise ConfigError(f"no ONNX file at {file}")
        options = ort.SessionOptions()
        # Runtime threads spin while waiting; one thread keeps a predictor from starving others.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        meta: dict[str, str] = self.session.get_modelmeta().custom_metadata_map
        self.kind = meta.get(_META_PREFIX + "kind", "")
        self.task = meta.get(_META_PREFIX + "task", "")
        self.feature_names: list[str] = json.loads(meta.get(_META_PREFIX + "features", "[]"))
        seq_len = meta.get(_META_PREFIX + "seq_len")
        self.seq_len: int | None = int(seq_len) if seq_len is not None else None

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The exported model's predictions for ``X``, as float64.

        Parameters
        ----------
        X:
            Tree kinds: a DataFrame holding the fitted feature columns (selected and ordered
            by name), or a 2-D array in that order. Deep kinds: the same feature rows, oldest
            first, turned into the windows the model uses, or a 3-D array of raw windows
            ``(batch, seq_len, n_features)``.

        Returns
        -------
        numpy.ndarray
            One value per row (per window for a 3-D input). For a deep kind given rows, the
            first ``seq_len - 1`` rows have no full window and are NaN.
        """
        matrix = self._matrix(X)
        if self.seq_len is None:
            if matrix.ndim != 2:
                raise ConfigError(f"onnx {self.kind}: expected a 2-D input, got {matrix.ndim}-D")
            return self._run(matrix)
        if matrix.ndim == 3:
            return self._run(matrix)
        if matrix.ndim != 2:
            raise ConfigError(f"onnx {self.kind}: expected rows (2-D) or windows (3-D)")
        out = np.full(len(matrix), np.nan)
        if len(matrix) >= self.seq_len:
            out[self.seq_len - 1 :] = self._run(sliding_windows(matrix, self.seq_len))
        return out

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        n_features = len(self.feature_names)
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.feature_names if c not in X.columns]
            if missing:
                raise ConfigError(
                    f"onnx {self.kind}: X lacks {len(missing)} feature(s) the model was "
                    f"fitted on, e.g. {missing[:3]}"
                )
            return X.loc[:, self.feature_names].to_numpy(dtype=np.float32)
        array = np.asarray(X, dtype=np.float32)
        if array.ndim >= 2 and array.shape[-1] != n_features:
            raise ConfigError(
                f"onnx {self.kind}: X has {array.shape[-1]} feature column(s), "
                f"the model {n_features}"
            )
        return array

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        if len(inputs) == 0:
            return np.empty(0)
        (output,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(inputs)})
        return np.asarray(output, dtype=np.float64).reshape(-1)


def sliding_windows(rows: np.ndarray, seq_len: int) -> np.ndarray:
    """The windows of ``seq_len`` consecutive rows ending at each row from ``seq_len - 1`` on.

    Parameters
    ----------
    rows:
        ``(n, n_features)`` rows, oldest first.
    seq_len:
        Window length.

    Returns
    -------
    numpy.ndarray
        ``(n - seq_len + 1, seq_len, n_features)``; window ``i`` holds rows ``i .. i+seq_len-1``.

    Examples
    --------
    >>> sliding_windows(np.arange(4.0).reshape(4, 1), 3)[:, :, 0].tolist()
    [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]
    """
    windows = np.lib.stride_tricks.sliding_window_view(rows, seq_len, axis=0)
    return np.ascontiguousarray(np.swapaxes(windows, 1, 2))


# -- which model is exported -------------------------------------------------------------------


def exportable_kinds(graph: str | None = None) -> list[str]:
    """The registered model kinds whose class declares ``onnx_export`` (``graph``, if given).

    Parameters
    ----------
    graph : str or None
        Only the kinds exported this way (``"tree"``, ``"network"``...); None for all.

    Returns
    -------
    list of str
        Kind names, the row-wise kinds first, then the sequence kinds, each sorted.

    Examples
    --------
    >>> exportable_kinds("tree")
    ['lgbm', 'xgb']
    """
    classes = load_all_models()
    chosen = [
        (cls.is_sequence, kind)
        for kind, cls in classes.items()
        if cls.onnx_export is not None and (graph is None or cls.onnx_export == graph)
    ]
    return [kind for _, kind in sorted(chosen)]


def _unsupported(what: str) -> ConfigError:
    return ConfigError(f"{what}; supported kinds: {', '.join(exportable_kinds())}, and {_WRAPPERS}")


def _exported_model(model: BaseModel) -> BaseModel:
    """The model whose graph gives ``model``'s numbers: itself, or a wrapper's inner one."""
    if not isinstance(model, BaseModel):
        raise ConfigError(f"onnx export: expected a trademl model, got {type(model).__name__}")
    kind = model.kind
    if model.onnx_export is None:
        why = (
            " (its predictions are not one inner model's: export model.model_ or the lower "
            "and upper models instead, and apply the wrapper's map yourself)"
            if kind in ("calibrated", "cqr")
            else ""
        )
        raise _unsupported(f"onnx export does not support model kind {kind!r}{why}")
    if model.onnx_export == "inner":
        model._check_fitted()
        inner: BaseModel = model.model_  # type: ignore[attr-defined]
        if inner.onnx_export not in ("tree", "network", "residual"):
            raise _unsupported(
                f"onnx export: {kind} wraps a {inner.kind!r} model, which cannot be exported"
            )
        return inner
    return model


# -- trees ---------------------------------------------------------------------------------------


def _tree_graph(model: BaseModel, n_features: int) -> Any:
    """The converted ensemble, reduced to one ``prediction`` output of shape ``(batch,)``."""
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [(INPUT_NAME, FloatTensorType([None, n_features]))]
    best = int(model.best_iteration_)  # type: ignore[attr-defined]
    if model.kind == "lgbm":
        import lightgbm as lgb
        from onnxmltools import convert_lightgbm

        text = model.booster_.model_to_string(num_iteration=best)  # type: ignore[attr-defined]
        cut = lgb.Booster(model_str=text)
        graph = convert_lightgbm(cut, initial_types=types, target_opset=TREE_OPSET, zipmap=False)
    else:
        import xgboost as xgb
        from onnxmltools import convert_xgboost

        native: xgb.Booster = model.booster_  # type: ignore[attr-defined]
        rounds = native[:best] if best < native.num_boosted_rounds() else native.copy()
        rounds.feature_names = [f"f{i}" for i in range(n_features)]
        rounds.feature_types = None
        # The cut booster holds exactly the trees predict uses: no best-round attributes left
        # for the converter to cut again.
        rounds.set_attr(best_iteration=None, best_score=None, best_ntree_limit=None)
        graph = convert_xgboost(rounds, initial_types=types, target_opset=TREE_OPSET)
    return _single_output(graph, classification=model.task == "classification")


def _single_output(graph: Any, *, classification: bool) -> Any:
    """Replace the converter's outputs by ``prediction``: P(class 1) or the flattened value."""
    from onnx import TensorProto, helper

    outputs = [o.name for o in graph.graph.output]
    if classification:
        source = next(name for name in outputs if "prob" in name)
        index = helper.make_tensor("trademl_class_one", TensorProto.INT64, [], [1])
        graph.graph.initializer.append(index)
        node = helper.make_node("Gather", [source, index.name], [OUTPUT_NAME], axis=1)
    else:
        shape = helper.make_tensor("trademl_flat", TensorProto.INT64, [1], [-1])
        graph.graph.initializer.append(shape)
        node = helper.make_node("Reshape", [outputs[0], shape.name], [OUTPUT_NAME])
    graph.graph.node.append(node)
    del graph.graph.output[:]
    graph.graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None]))
    return graph


def _add_baseline(graph: Any, baseline: Any, features: list[str]) -> None:
    """Add the HAR baseline's ``intercept + fill(X[:, columns]) @ coefficients`` to the output."""
    from onnx import TensorProto, helper

    columns = [features.index(name) for name in baseline._volatility_columns()]
    constants = {
        "trademl_har_columns": (TensorProto.INT64, [len(columns)], columns),
        "trademl_har_fill": (
            TensorProto.FLOAT,
            [len(columns)],
            np.asarray(baseline.fill_volatility_, dtype=np.float32).tolist(),
        ),
        "trademl_har_coefficients": (
            TensorProto.FLOAT,
            [len(columns)],
            np.asarray(baseline.coefficients_, dtype=np.float32).tolist(),
        ),
        "trademl_har_intercept": (TensorProto.FLOAT, [], [float(baseline.intercept_)]),
    }
    for name, (dtype, dims, values) in constants.items():
        graph.graph.initializer.append(helper.make_tensor(name, dtype, dims, values))
    # IsNaN and Where need opset 9 of the default domain; converters may declare an older one.
    for opset in graph.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 13)
    # The trees' output becomes an intermediate; the sum takes the output's name.
    for node in graph.graph.node:
        node.output[:] = ["trademl_trees" if o == OUTPUT_NAME else o for o in node.output]
    graph.graph.node.extend(
        [
            helper.make_node(
                "Gather", [INPUT_NAME, "trademl_har_columns"], ["trademl_har_x"], axis=1
            ),
            helper.make_node("IsNaN", ["trademl_har_x"], ["trademl_har_missing"]),
            helper.make_node(
                "Where",
                ["trademl_har_missing", "trademl_har_fill", "trademl_har_x"],
                ["trademl_har_filled"],
            ),
            helper.make_node(
                "MatMul", ["trademl_har_filled", "trademl_har_coefficients"], ["trademl_har_sum"]
            ),
            helper.make_node(
                "Add", ["trademl_har_sum", "trademl_har_intercept"], ["trademl_har_linear"]
            ),
            *_seasonal_nodes(graph, baseline, features),
            helper.make_node("Add", ["trademl_trees", "trademl_har_baseline"], [OUTPUT_NAME]),
        ]
    )


def _seasonal_nodes(graph: Any, baseline: Any, features: list[str]) -> list[Any]:
    """The HAR forecast times its hour-of-week factor (the factor 1 where the bucket is NaN)."""
    from onnx import TensorProto, helper

    factors = baseline.__dict__.get("seasonal_factors_")
    if factors is None:
        return [helper.make_node("Identity", ["trademl_har_linear"], ["trademl_har_baseline"])]
    table = np.append(np.asarray(factors, dtype=np.float32), np.float32(1.0))
    constants = [
        helper.make_tensor(
            "trademl_season_column",
            TensorProto.INT64,
            [],
            [features.index(baseline.seasonal_feature)],
        ),
        helper.make_tensor("trademl_season_table", TensorProto.FLOAT, [len(table)], table.tolist()),
        helper.make_tensor("trademl_season_none", TensorProto.FLOAT, [], [float(len(table) - 1)]),
    ]
    graph.graph.initializer.extend(constants)
    return [
        helper.make_node(
            "Gather", [INPUT_NAME, "trademl_season_column"], ["trademl_season_x"], axis=1
        ),
        helper.make_node("IsNaN", ["trademl_season_x"], ["trademl_season_missing"]),
        helper.make_node(
            "Where",
            ["trademl_season_missing", "trademl_season_none", "trademl_season_x"],
            ["trademl_season_bucket"],
        ),
        helper.make_node(
            "Cast", ["trademl_season_bucket"], ["trademl_season_index"], to=TensorProto.INT64
        ),
        helper.make_node(
            "Gather", ["trademl_season_table", "trademl_season_index"], ["trademl_season_factor"]
        ),
        helper.make_node(
            "Mul", ["trademl_har_linear", "trademl_season_factor"], ["trademl_har_baseline"]
        ),
    ]


def _set_metadata(graph: Any, meta: dict[str, str]) -> None:
    from onnx import helper

    del graph.metadata_props[:]
    helper.set_model_props(graph, {_META_PREFIX + key: value for key, value in meta.items()})


def _add_metadata(path: str, meta: dict[str, str]) -> None:
    import onnx

    graph = onnx.load(path)
    _set_metadata(graph, meta)
    onnx.save(graph, path)


# -- deep kinds ----------------------------------------------------------------------------------


def _deep_module(model: BaseModel) -> tuple[torch.nn.Module, int]:
    """A module mapping raw windows to ``predict``'s numbers, and the window length."""
    network = getattr(model, "network_", None)
    x_scaler = getattr(model, "x_scaler_", None)
    if network is None or x_scaler is None:
        raise ConfigError(
            f"onnx export: the {model.kind} model holds no fitted network_ and x_scaler_"
        )
    classification = model.task == "classification"
    y_scaler = None if classification else getattr(model, "y_scaler_", None)
    y_scaling = (np.zeros(1), np.ones(1)) if y_scaler is None else (y_scaler.mean, y_scaler.scale)
    wrapped = _raw_window_network(
        network,
        (np.asarray(x_scaler.mean, np.float32), np.asarray(x_scaler.scale, np.float32)),
        (np.asarray(y_scaling[0], np.float32), np.asarray(y_scaling[1], np.float32)),
        classification=classification,
    )
    return wrapped, int(model.seq_len)  # type: ignore[attr-defined]


def _raw_window_network(
    network: torch.nn.Module,
    x_scaling: tuple[np.ndarray, np.ndarray],
    y_scaling: tuple[np.ndarray, np.ndarray],
    *,
    classification: bool,
) -> torch.nn.Module:
    """``network`` between the kind's feature scaling and its output map.

    Features become ``(x - mean) / scale`` with non-finite results set to 0 (as the kind's
    scaler does); the first output column is mapped back to target units
    (``out * scale + mean``) or, for classification, through the sigmoid.
    """
    import torch

    class RawWindowNetwork(torch.nn.Module):
        """Scale raw windows, zero their missing values, run the network, map its output."""

        x_mean: torch.Tensor
        x_scale: torch.Tensor
        y_mean: torch.Tensor
        y_scale: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.network = network
            self.register_buffer("x_mean", torch.from_numpy(x_scaling[0].copy()))
            self.register_buffer("x_scale", torch.from_numpy(x_scaling[1].copy()))
            self.register_buffer("y_mean", torch.from_numpy(y_scaling[0][:1].copy()))
            self.register_buffer("y_scale", torch.from_numpy(y_scaling[1][:1].copy()))

        def forward(self, windows: torch.Tensor) -> torch.Tensor:
            scaled = (windows - self.x_mean) / self.x_scale
            scaled = torch.where(torch.isfinite(scaled), scaled, torch.zeros_like(scaled))
            output: torch.Tensor = self.network(scaled)[:, 0]
            if classification:
                return torch.sigmoid(output)
            return output * self.y_scale[0] + self.y_mean[0]

    return RawWindowNetwork().eval()


def _export_torch(module: torch.nn.Module, seq_len: int, n_features: int, path: str) -> None:
    """Trace ``module`` on the CPU (a copy: the fitted network stays where it is) to ``path``."""
    import torch

    cpu_module = copy.deepcopy(module).cpu().eval()
    example = torch.zeros(2, seq_len, n_features, dtype=torch.float32)
    # The fused Transformer kernel used in eval mode has no ONNX form: trace the plain layers.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Known and harmless here: the tracer fixes seq_len and shapes as constants (the
            # graph is for this seq_len only), the recurrent layers' note on batch sizes (no
            # initial state is passed; other batch sizes are tested), the notice that this is
            # the TorchScript exporter (chosen on purpose: the dynamo one needs onnxscript).
            warnings.simplefilter("ignore")
            torch.onnx.export(
                cpu_module,
                (example,),
                path,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=DEEP_OPSET,
                dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


__all__ = [
    "OnnxPredictor",
    "export_onnx",
    "exportable_kinds",
    "sliding_windows",
]
