"""``run(config)``: the one library entry point of a training run — candles from the store (or
given), causal features and labels, purged out-of-sample validation of every model beside the
naive baselines, metrics, and the final pipeline model, all written under ``output``.

The core knows nothing of MLflow: a ``recorder`` (the tracking layer's, which the CLI, the job
tasks and :func:`trademl.train` pass when tracking is on) records the finished run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from loguru import logger

from trademl.config import RunConfig, Settings, get_settings, load_run_config
from trademl.errors import ConfigError
from trademl.panel import run_panel
from trademl.paths import PathPolicy, output_lock, resolve_run_paths
from trademl.preparation import prepare
from trademl.run_outputs import (
    RunResult,
    TrainingRecorder,
    finish_run,
    fold_records,
    join_predictions,
    summary_table,
    wide_predictions,
    write_outputs,
)
from trademl.targets import adaptive_levels, evaluate_target, fit_final, model_name, servable
from trademl.validation.selection import choose_sources
from trademl.validation.splitters import make_splitter

__all__ = ["RunResult", "TrainingRecorder", "run"]


def run(
    config: RunConfig | str | Path | dict[str, Any],
    *,
    settings: Settings | None = None,
    progress: Callable[[float, str], None] | None = None,
    paths: PathPolicy | None = None,
    recorder: TrainingRecorder | None = None,
    candles: pd.DataFrame | None = None,
) -> RunResult:
    """Train and validate as ``config`` says; see :class:`trademl.config.RunConfig`.

    Parameters
    ----------
    config : RunConfig, str, Path or dict
        The run config, or a YAML file or mapping of one.
    settings : Settings or None
        Where the store, the feature cache and the home are; the process settings by default.
    progress : callable or None
        ``progress(fraction, message)`` is called before each stage (data, each target's
        validation, the final fit, recording); an exception it raises (a job being cancelled)
        stops the run there, nothing half-written.
    paths : PathPolicy or None
        Where the config's feature-set file and ``output`` may be (a job's policy keeps them
        under ``TRADEML_HOME``); anything the user can reach by default.
    recorder : TrainingRecorder or None
        Records the finished run (MLflow run, registered version); None records nothing.
    candles : pandas.DataFrame or None
        The candles to train on (one symbol, at ``data.timeframe``); by default they are read
        from the store. ``data.start`` and ``data.end`` cut either.

    Returns
    -------
    RunResult
        What the run wrote under ``output`` (metrics, predictions, ``pipeline.pkl``) and,
        with a recorder, where it was recorded.

    Notes
    -----
    The output folder is held for the whole run: a second run naming it meanwhile fails at
    once.
    """
    cfg = config if isinstance(config, RunConfig) else load_run_config(config)
    cfg = resolve_run_paths(cfg, paths or PathPolicy.local())
    with output_lock(Path(cfg.output)):
        return _run(cfg, settings or get_settings(), progress, recorder, candles)


def _run(
    cfg: RunConfig,
    settings: Settings,
    progress: Callable[[float, str], None] | None,
    recorder: TrainingRecorder | None,
    candles: pd.DataFrame | None,
) -> RunResult:
    if cfg.data.panel:  # one model over many symbols' pooled rows
        if candles is not None:
            raise ConfigError(
                "candles: a panel run reads its symbols from the store; pass candles with a "
                "single-symbol config (data.symbol)"
            )
        return run_panel(cfg, settings, progress, recorder)
    report = progress or (lambda fraction, message: None)
    started = time.perf_counter()
    if recorder is not None:
        recorder.check(cfg)  # an unreachable backend fails before training
    report(0.0, "features and labels")
    prepared = prepare(cfg, settings=settings, candles=candles)
    X, base_X, labels, horizons = prepared.X, prepared.baselines, prepared.labels, prepared.horizons

    records: list[dict[str, Any]] = []
    predictions: list[pd.DataFrame] = []
    served_alpha: dict[str, float] = {}
    # Stages: data, one per (horizon, target), the final fit; tracking ends it.
    stages = 2 + len(horizons) * len(cfg.labels.kinds)
    for name, bars in horizons.items():
        splitter = make_splitter(cfg.validation.kind, dict(cfg.validation.params), bars)
        for kind in cfg.labels.kinds:
            report((1 + len(predictions)) / stages, f"validating {kind} at {name} ({bars} bars)")
            evaluation = evaluate_target(cfg, kind, bars, X, base_X, labels, splitter)
            records.extend(fold_records(evaluation, kind, name, bars, cfg.uncertainty.alpha))
            predictions.append(wide_predictions(evaluation, kind, bars))
            served_alpha.update(adaptive_levels(evaluation, kind, name))
    folds = pd.DataFrame.from_records(records)
    summary = summary_table(predictions, folds, cfg, horizons)
    wide = join_predictions(predictions)
    # Per served target: the primary model where it beat every baseline at the gate's level,
    # else the best baseline the served pipeline can compute; the final fit serves that. (The
    # gate's margin and min_rows judge promotion, not what a run serves.)
    choices = choose_sources(
        wide,
        model_name(cfg.models[0].kind, cfg.models[0].name),
        level=cfg.registry.gate.level,
        min_rows=1,
        servable=partial(servable, list(X.columns)),
    )

    output = Path(cfg.output)
    report((stages - 1) / stages, "fitting the final models")
    final = fit_final(cfg, X, labels, horizons, interval_alpha=served_alpha, choices=choices)
    write_outputs(
        output,
        cfg,
        wide,
        folds,
        summary,
        prepared.data_hash,
        prepared.feature_set,
        prepared.candles,
    )
    seconds = time.perf_counter() - started
    logger.info("run written to {} in {:.1f}s", output, seconds)
    result = RunResult(output, folds, summary, wide, prepared.data_hash, seconds, choices=choices)
    return finish_run(cfg, result, final, prepared, recorder, report)
