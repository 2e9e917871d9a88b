"""Hyperparameter search with Optuna on the purged walk-forward of a run config.

The objective
    One trial fits the model of the config's first model kind (or, with AutoML, a kind the
    trial picks) on the training rows of every fold of the config's splitter and scores its
    predictions of the fold's test rows. The objective is the **mean of the per-fold scores**;
    each fold's score is reported to Optuna as it comes (``trial.report``), so that a
    :class:`optuna.pruners.MedianPruner` stops a trial whose early folds lie below the median
    of the earlier trials at the same fold. Only one target is tuned: by default the config's
    first label kind at its first horizon.

The metric
    ``direction`` is scored by the **log loss** of the predicted probability of an up move
    (minimised): it rewards calibrated probabilities, where accuracy only counts which side of
    0.5 they fall. Every other label kind (``max_high``, ``min_low``, ``forward_return``) is
    scored by the **out-of-sample R²** against the test fold's mean (maximised). Models are
    built exactly as ``trademl train`` builds them (calibration, conformal wrappers, seed), so
    the tuned score is the score a training run reports for the same fold.

Search spaces
    Each model kind declares its space on its class (``search_space()``; None: the kind is not
    tuned), so a kind registered by a plug-in is tunable as soon as it declares one;
    :data:`SEARCH_SPACES` reads them by kind. A parameter set in the config's ``params`` of
    that kind is held fixed and not searched. With AutoML, parameter names are prefixed by the
    kind (``lgbm.learning_rate``), as each kind has its own space.

AutoML and its budget
    With AutoML each trial picks a kind among the learned kinds (by default every registered
    kind with a non-empty search space: :func:`automl_kinds`) and ``naive`` (the baselines,
    scored first), and for the max-high / min-low targets whether the model learns the residual
    of the HAR volatility baseline. ``time_limit`` is the wall time of the whole call: data,
    search and the scoring of the stack. Boosting rounds and training batches check the
    deadline, so a long trial stops at it (pruned, "stopped at the time budget") instead of
    running on; the search ends early enough to leave the stack the time its members took
    (times :data:`STACK_COST`), and a stack that would not fit is left out, with the reason.
    The stack is returned only when it beats its best member on the same folds.

Storage
    In memory by default; ``storage="sqlite"`` keeps the study in ``TRADEML_HOME/optuna.db``;
    a database URL (``postgresql://...``, also read from ``TRADEML_OPTUNA_STORAGE``) lets
    several worker processes share one study (``load_if_exists``). Give Optuna a database of its
    own: it keeps an ``alembic_version`` table, as MLflow does.

Multiple testing
    Every trial is one more strategy tried on the same data. ``summary.json`` reports the
    number of trials, which the deflated Sharpe ratio needs to discount the best one.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import optuna
import pandas as pd
import yaml
from loguru import logger
from optuna.trial import TrialState

from trademl.atomic import atomic_path
from trademl.budget import BudgetExhaustedError, check_budget, time_budget, time_left
from trademl.config import RunConfig, Settings, get_settings, load_run_config
from trademl.errors import ConfigError, StoreError, TradeMLError
from trademl.har import HAR_SEASONAL, har_columns
from trademl.models.base import MODELS, load_all_models

# The dimensions of a search space, re-exported: ``spaces=`` arguments are written with them.
from trademl.models.space import Dimension as Dimension
from trademl.models.space import SearchSpace
from trademl.models.space import choice as choice
from trademl.models.space import integer as integer
from trademl.models.space import log_uniform as log_uniform
from trademl.models.space import uniform as uniform
from trademl.preparation import Prepared, prepare
from trademl.targets import RESIDUAL_TARGETS, model_factory, target
from trademl.validation.metrics import classification_metrics, regression_metrics
from trademl.validation.runner import evaluate
from trademl.validation.splitters import make_splitter

TUNING_DIR = "tuning"
STACK_SIZE = 3
STACK_SPLITS = 3
# Scoring a stack fits each member (STACK_SPLITS + 1) times per fold, the inner fits on fewer
# rows: about three times the members' own trial time (measured on lgbm/xgb/gru trials).
STACK_COST = 3.0
NAIVE_STRATEGIES = {
    "direction": ("prior",),
    "max_high": ("volatility", "mean"),
    "min_low": ("volatility", "mean"),
    "forward_return": ("zero", "mean"),
}


# -- search spaces -----------------------------------------------------------------------------


class _SearchSpaces(Mapping[str, SearchSpace]):
    """Registered model kind → the search space its class declares (kinds without one left out)."""

    def __getitem__(self, kind: str) -> SearchSpace:
        space = MODELS.get(kind).search_space() if kind in MODELS else None
        if space is None:
            raise KeyError(kind)
        return space

    def __iter__(self) -> Iterator[str]:
        return iter(
            [kind for kind, cls in load_all_models().items() if cls.search_space() is not None]
        )

    def __len__(self) -> int:
        return len(list(iter(self)))


SEARCH_SPACES: Mapping[str, SearchSpace] = _SearchSpaces()
"""Search space of each registered model kind, as its class declares it (read-only).

``naive`` has nothing to tune (an empty space); kinds whose class declares none (``stacking``)
are not tunable. The deep spaces name their dimensions generically (``hidden``, ``layers``,
``lr``, ``epochs``); :data:`PARAM_ALIASES` maps them onto the constructor names a kind takes.
"""


def automl_kinds() -> list[str]:
    """The default AutoML candidates: every registered kind with a non-empty search space.

    Returns
    -------
    list of str
        The row-wise kinds first, then the sequence kinds (slower to train), each sorted.
    """
    chosen = [
        (cls.is_sequence, kind) for kind, cls in load_all_models().items() if cls.search_space()
    ]
    return [kind for _, kind in sorted(chosen)]


def _space(kind: str, spaces: Mapping[str, SearchSpace] | None) -> SearchSpace | None:
    """``kind``'s search space: given in ``spaces``, else declared by its class (None if none)."""
    if spaces and kind in spaces:
        return spaces[kind]
    return SEARCH_SPACES.get(kind)


PARAM_ALIASES: dict[str, tuple[str, ...]] = {
    "seq_len": ("seq_len", "sequence_length", "window", "lookback"),
    "hidden": ("hidden", "hidden_size", "hidden_dim", "d_model"),
    "layers": ("layers", "num_layers", "n_layers"),
    "lr": ("lr", "learning_rate"),
    "epochs": ("epochs", "max_epochs", "n_epochs"),
}


def suggest_params(
    trial: optuna.Trial,
    kind: str,
    space: SearchSpace,
    fixed: Mapping[str, Any] | None = None,
    *,
    prefix: str = "",
) -> dict[str, Any]:
    """Sample the parameters of one model of ``kind`` from ``space``.

    Parameters
    ----------
    trial : optuna.Trial
        The running trial.
    kind : str
        A registered model kind; dimensions it does not take (under any alias) are skipped.
    space : mapping of str to Dimension
        The search space.
    fixed : mapping or None
        Parameters held fixed (from the config); they are returned and not searched.
    prefix : str
        Prepended to the names recorded in the study (``"lgbm."`` with AutoML).

    Returns
    -------
    dict
        Constructor parameters of the model: ``fixed`` updated with the sampled values.
    """
    accepted = set(MODELS.get(kind).param_names())
    params = dict(fixed or {})
    for name, dimension in space.items():
        actual = next((a for a in PARAM_ALIASES.get(name, (name,)) if a in accepted), None)
        if actual is None or actual in params:
            continue
        params[actual] = dimension.suggest(trial, f"{prefix}{actual}")
    return params


# -- result ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneResult:
    """What a tuning run found (also written under ``{output}/tuning``).

    Attributes
    ----------
    study : optuna.Study
        The study (every worker's trials when its storage is shared).
    trials : pandas.DataFrame
        One row per trial: number, kind, params (JSON), value, state, seconds, worker.
    target : str
        The tuned label column, ``{kind}_{bars}``.
    metric : str
        ``log_loss`` (minimised) or ``r2`` (maximised).
    direction : str
        ``minimize`` or ``maximize``.
    best_value : float
        The best mean out-of-sample score.
    best_kind : str
        The model kind of the best trial.
    best_params : dict
        The constructor parameters of the best trial (fixed ones included).
    n_trials, n_complete, n_pruned : int
        Trials in the study, completed, and pruned.
    best_residual : bool
        Whether the best trial learned the residual of the HAR baseline.
    stacked_score : float or None
        AutoML: the mean out-of-sample score of a ``stacking`` model of the best few trials
        (None when it was not scored: see ``stack_note``).
    stacked_models : list of dict
        AutoML: the base models of that stacking model.
    stack_chosen : bool
        AutoML: the stack beat its best member on the same folds, so ``best.yaml`` holds it.
    stack_note : str
        AutoML: the comparison of the stack with its best member, or why it was not scored.
    time_limit : float or None
        The wall-time budget of the call.
    output : pathlib.Path
        The folder holding ``trials.csv``, ``best.yaml`` and ``summary.json``.
    seconds : float
        Wall time of this call.
    """

    study: optuna.Study
    trials: pd.DataFrame
    target: str
    metric: str
    direction: str
    best_value: float
    best_kind: str
    best_params: dict[str, Any]
    n_trials: int
    n_complete: int
    n_pruned: int
    stacked_score: float | None
    stacked_models: list[dict[str, Any]]
    output: Path
    seconds: float
    best_residual: bool = False
    stack_chosen: bool = False
    stack_note: str = ""
    time_limit: float | None = None


# -- scoring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    """One target on the config's folds: everything a trial needs."""

    cfg: RunConfig
    X: pd.DataFrame
    y: pd.Series
    keep: np.ndarray | None
    task: str
    bars: int
    splits: list[tuple[np.ndarray, np.ndarray]]
    metric: str
    label_kind: str
    har: list[str] | None  # the HAR columns in X, for range targets: residual learning's start

    def fold_scores(self, kind: str, params: dict[str, Any], residual: bool = False) -> Any:
        """Yield the out-of-sample score of a ``kind`` model on each fold in turn.

        Each fold first checks the time budget (:class:`~trademl.budget.BudgetExhaustedError`).
        """
        on = self.har if residual and kind != "naive" else None
        factory = model_factory(kind, params, self.task, self.cfg, self.bars, residual_features=on)
        for number, split in enumerate(self.splits):
            check_budget(f"{kind} on fold {number}")
            evaluation = evaluate(
                {kind: factory},
                {kind: self.X},
                self.y,
                iter([split]),
                task=self.task,
                keep=self.keep,
                description=f"fold {number}",
                n_folds=1,
            )
            part = evaluation.predictions
            truth, predicted = part["target"].to_numpy(), part[kind].to_numpy()
            if self.task == "classification":
                yield classification_metrics(truth, predicted)[self.metric]
            else:
                yield regression_metrics(truth, predicted)[self.metric]

    def mean_score(self, kind: str, params: dict[str, Any], residual: bool = False) -> float:
        """The mean of the per-fold scores (no pruning)."""
        return float(np.mean(list(self.fold_scores(kind, params, residual))))

    def naive_strategies(self) -> tuple[str, ...]:
        """The baselines of this target (the HAR one only where its columns are in X)."""
        return tuple(
            s
            for s in NAIVE_STRATEGIES[self.label_kind]
            if s != "volatility" or self.har is not None
        )

    def naive_params(self, strategy: str) -> dict[str, Any]:
        """Constructor parameters of the naive baseline ``strategy``."""
        extra: dict[str, Any] = {}
        if strategy == "volatility":
            extra["volatility_features"] = self.har
            if HAR_SEASONAL in self.X.columns:
                extra["seasonal_feature"] = HAR_SEASONAL
        return {"strategy": strategy, **extra}


def _problem(cfg: RunConfig, prepared: Prepared, target_name: str | None) -> _Problem:
    label_kind, horizon = _parse_target(cfg, prepared, target_name)
    bars = prepared.horizons[horizon]
    task, y, keep = target(prepared.labels, label_kind, bars)
    splitter = make_splitter(cfg.validation.kind, dict(cfg.validation.params), bars)
    splits = list(splitter.split(prepared.X, y))
    metric = "log_loss" if task == "classification" else "r2"
    columns = har_columns(bars)
    har = columns if label_kind in RESIDUAL_TARGETS and set(columns) <= set(prepared.X) else None
    return _Problem(cfg, prepared.X, y, keep, task, bars, splits, metric, label_kind, har)


def _parse_target(cfg: RunConfig, prepared: Prepared, name: str | None) -> tuple[str, str]:
    """``(label kind, horizon name)`` of ``name`` (``kind`` or ``kind:horizon``)."""
    if name is None:
        return cfg.labels.kinds[0], next(iter(prepared.horizons))
    kind, _, horizon = name.partition(":")
    if kind not in cfg.labels.kinds:
        raise ConfigError(
            f"tune target {name!r}: label kind {kind!r} is not among the config's "
            f"labels.kinds ({', '.join(cfg.labels.kinds)})"
        )
    horizon = horizon or next(iter(prepared.horizons))
    if horizon not in prepared.horizons:
        raise ConfigError(
            f"tune target {name!r}: horizon {horizon!r} is not among the config's "
            f"labels.horizons ({', '.join(prepared.horizons)})"
        )
    return kind, horizon


# -- storage -----------------------------------------------------------------------------------


def resolve_storage(storage: str | None, settings: Settings) -> str | None:
    """The Optuna storage URL in effect, or None for an in-memory study.

    Parameters
    ----------
    storage : str or None
        ``None`` (use ``settings.optuna_storage``, else memory), ``"memory"``, ``"sqlite"``
        (``optuna.db`` under the trademl home) or a database URL; ``postgresql://`` URLs get
        the psycopg 3 driver.
    settings : Settings
        Where the home and the configured storage are read.

    Returns
    -------
    str or None
        A SQLAlchemy URL, or None.
    """
    chosen = storage if storage is not None else settings.optuna_storage
    if chosen is None or chosen == "memory":
        return None
    if chosen == "sqlite":
        settings.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(settings.home / 'optuna.db').as_posix()}"
    if chosen.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + chosen.split("://", 1)[1]
    return chosen


def open_storage(url: str | None, *, attempts: int = 5) -> optuna.storages.BaseStorage | None:
    """The Optuna storage at ``url`` (None: in memory), creating its tables if needed.

    Workers started together on a fresh database race to create Optuna's tables; the loser
    fails on a duplicate table or type, and finds the tables there when it tries again.

    Parameters
    ----------
    url : str or None
        A SQLAlchemy URL from :func:`resolve_storage`, or None.
    attempts : int
        Tries before the database error is raised.

    Returns
    -------
    optuna.storages.BaseStorage or None
        An :class:`~optuna.storages.RDBStorage`, or None for memory.

    Raises
    ------
    StoreError
        The database cannot be reached or set up.
    """
    if url is None:
        return None
    import sqlalchemy.exc

    for attempt in range(1, attempts + 1):
        try:
            return optuna.storages.RDBStorage(url)
        except sqlalchemy.exc.DBAPIError as error:
            if attempt == attempts or isinstance(error, sqlalchemy.exc.OperationalError):
                raise StoreError(_redacted(f"Optuna storage {url}: {error}")) from error
            logger.debug("Optuna storage set-up raced another worker ({}); retrying", error)
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _redacted(url: str) -> str:
    from trademl.redact import redact

    return redact(url)


def close_storage(study: optuna.Study) -> None:
    """Close the database connections a study's storage holds (a no-op in memory).

    Parameters
    ----------
    study : optuna.Study
        A study; it reconnects if used again.
    """
    storage: Any = study._storage
    storage = getattr(storage, "_backend", storage)  # the cache wrapper around RDBStorage
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.remove_session()
        storage.engine.dispose()


# -- tuning ------------------------------------------------------------------------------------


def tune(
    config: RunConfig | str | Path | dict[str, Any],
    *,
    trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    target: str | None = None,
    time_limit: float | None = None,
    automl: bool | None = None,
    n_jobs: int | None = None,
    kinds: Sequence[str] | None = None,
    spaces: Mapping[str, SearchSpace] | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    settings: Settings | None = None,
    recorder: TuningRecorder | None = None,
) -> TuneResult:
    """Search hyperparameters on the config's purged walk-forward and write the results.

    Parameters
    ----------
    config : RunConfig, path or dict
        The run config: data, features, labels, the model (its first model kind is tuned;
        its params are held fixed), the splitter, uncertainty and the output folder.
    trials : int or None
        Trials this call runs (None: until ``time_limit``). This and every argument below
        that is None (or not given) falls back to the config's ``tuning`` section.
    storage : str or None
        ``None``, ``"memory"``, ``"sqlite"`` or a database URL; see :func:`resolve_storage`.
    study_name : str or None
        The study's name; workers sharing a storage and a name share the study. Default
        ``tune-{symbol}-{timeframe}-{target}``.
    target : str or None
        ``kind`` or ``kind:horizon`` (a horizon as written in the config); default the
        config's first label kind at its first horizon.
    time_limit : float or None
        Seconds after which no new trial starts (Optuna's ``timeout``).
    automl : bool or None
        Each trial picks a model kind among ``kinds`` first, then its parameters; afterwards a
        ``stacking`` model of the best :data:`STACK_SIZE` distinct trials is scored too.
    n_jobs : int or None
        Trials run at once in threads of this process.
    kinds : sequence of str or None
        AutoML candidate kinds; default :func:`automl_kinds`. Kinds not registered or without
        a search space are skipped.
    spaces : mapping or None
        Search spaces replacing those the kinds declare (:data:`SEARCH_SPACES`), per kind.
    pruner : optuna.pruners.BasePruner or None
        Default a :class:`~optuna.pruners.MedianPruner` over the folds.
    settings : Settings or None
        Where the store and the home are; the process settings by default.
    recorder : TuningRecorder or None
        Records the study (the tracking layer's MLflow recorder); None records nothing.

    Returns
    -------
    TuneResult
        Every trial, the best one, and the stacked score with AutoML.

    Raises
    ------
    ConfigError
        Neither ``trials`` nor ``time_limit`` given, an unknown target, no registered kind to
        tune, or no trial completed.
    """
    started = time.perf_counter()
    cfg = config if isinstance(config, RunConfig) else load_run_config(config)
    # Arguments override the config's tuning section.
    section = cfg.tuning
    trials = section.trials if trials is None else trials
    time_limit = section.time_limit if time_limit is None else time_limit
    if trials is None and time_limit is None:
        raise ConfigError(
            "tune: give a number of trials, a time limit, or both (tuning.trials or "
            "tuning.time_limit in the config, or the arguments)"
        )
    with time_budget(time_limit):
        return _tune(
            cfg,
            trials=trials,
            storage=storage,
            study_name=section.study_name if study_name is None else study_name,
            target=section.target if target is None else target,
            time_limit=time_limit,
            automl=section.automl if automl is None else automl,
            n_jobs=section.n_jobs if n_jobs is None else n_jobs,
            kinds=section.kinds if kinds is None else kinds,
            spaces=spaces,
            pruner=pruner,
            settings=settings,
            started=started,
            recorder=recorder,
        )


def _tune(
    cfg: RunConfig,
    *,
    trials: int | None,
    storage: str | None,
    study_name: str | None,
    target: str | None,
    time_limit: float | None,
    automl: bool,
    n_jobs: int,
    kinds: Sequence[str] | None,
    spaces: Mapping[str, SearchSpace] | None,
    pruner: optuna.pruners.BasePruner | None,
    settings: Settings | None,
    started: float,
    recorder: TuningRecorder | None,
) -> TuneResult:
    settings = settings or get_settings()
    wanted = list(kinds or automl_kinds()) if automl else [cfg.models[0].kind]
    searched: dict[str, SearchSpace] = {}
    for kind in wanted:
        space = _space(kind, spaces)
        if space is not None:
            searched[kind] = space
    if automl:
        candidates = [k for k in wanted if k in searched]
        skipped = [k for k in wanted if k not in candidates]
        if skipped:
            logger.info("automl: skipping kinds not registered or without a space: {}", skipped)
    else:
        candidates = [cfg.models[0].kind]
        if candidates[0] not in searched:
            known = sorted({*SEARCH_SPACES, *(spaces or {})})
            raise ConfigError(
                f"tune: no search space for model kind {candidates[0]!r}; known: {', '.join(known)}"
            )
    if not candidates:
        raise ConfigError(f"tune: none of the kinds {wanted} is registered with a search space")
    fixed = {kind: _fixed_params(cfg, kind) for kind in candidates}

    prepared = prepare(cfg, settings=settings)
    problem = _problem(cfg, prepared, target)
    label_column = target_or_default(cfg, prepared, target)
    direction: Literal["minimize", "maximize"] = (
        "minimize" if problem.metric == "log_loss" else "maximize"
    )
    if automl and "naive" not in candidates:
        candidates.append("naive")  # the baselines are trials too: the search must beat them
    url = resolve_storage(storage, settings)
    name = study_name or f"tune-{cfg.data.symbol}-{cfg.data.timeframe}-{label_column}"
    study = optuna.create_study(
        storage=open_storage(url),
        study_name=name,
        direction=direction,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    )
    try:
        if len(study.trials) > 0 and url is not None:
            # A worker joining a shared study: a different seed than the workers before it.
            study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.trials))
        elif automl:
            for strategy in problem.naive_strategies():
                study.enqueue_trial({"kind": "naive", "naive.strategy": strategy})
        worker = f"{socket.gethostname()}:{os.getpid()}"
        logger.info(
            "tuning {} on {} ({}, {} folds), study {!r}{}",
            ", ".join(candidates),
            label_column,
            problem.metric,
            len(problem.splits),
            name,
            f", {time_limit:g}s in all" if time_limit is not None else "",
        )
        residual = cfg.models[0].residual and problem.har is not None
        search = _SearchBudget(automl, direction)
        study.optimize(
            _objective(problem, candidates, searched, fixed, automl, worker, residual, search),
            n_trials=trials,
            timeout=None if time_limit is None else max(0.0, time_left()),
            n_jobs=n_jobs,
            catch=(TradeMLError,),
            callbacks=[search.stop_when_spent],
        )
        result = _collect(study, cfg, problem, label_column, direction, automl, started, time_limit)
    finally:
        close_storage(study)
    if recorder is not None:
        recorder.record_tuning(result, cfg)
    return result


class TuningRecorder(Protocol):
    """What records a tuning study outside the core (the tracking layer's MLflow recorder)."""

    def record_tuning(self, result: TuneResult, cfg: RunConfig) -> None:
        """Record a finished study."""


class _SearchBudget:
    """When the search must end: early enough to leave the stack the time it will need."""

    def __init__(self, automl: bool, direction: str) -> None:
        self.automl = automl
        self.direction = direction

    def reserve(self, study: optuna.Study) -> float:
        """Seconds to keep for scoring the stack of the best trials so far."""
        if not self.automl:
            return 0.0
        top = _top_distinct(study, self.direction, STACK_SIZE)
        return STACK_COST * sum(_seconds(t) for t in top) if len(top) >= 2 else 0.0

    def seconds_left(self, study: optuna.Study) -> float:
        """Seconds the search may still use (``inf`` without a time limit)."""
        return time_left() - self.reserve(study)

    def stop_when_spent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """An Optuna callback: stop the study once the search's share of the budget is spent."""
        if self.seconds_left(study) <= 0:
            study.stop()


def _seconds(trial: optuna.trial.FrozenTrial) -> float:
    if trial.datetime_complete is None or trial.datetime_start is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def target_or_default(cfg: RunConfig, prepared: Prepared, name: str | None) -> str:
    """The label column ``{kind}_{bars}`` that :func:`tune` scores for ``name``.

    Parameters
    ----------
    cfg : RunConfig
        The run config.
    prepared : Prepared
        Its prepared inputs (for the horizons in bars).
    name : str or None
        ``kind``, ``kind:horizon`` or None (the first label kind at the first horizon).

    Returns
    -------
    str
        The label column name.
    """
    kind, horizon = _parse_target(cfg, prepared, name)
    return f"{kind}_{prepared.horizons[horizon]}"


def _fixed_params(cfg: RunConfig, kind: str) -> dict[str, Any]:
    """The params of the config's first model of ``kind``: held fixed while tuning."""
    return next((dict(m.params) for m in cfg.models if m.kind == kind), {})


def _objective(
    problem: _Problem,
    kinds: list[str],
    spaces: Mapping[str, SearchSpace],
    fixed: dict[str, dict[str, Any]],
    automl: bool,
    worker: str,
    residual: bool,
    search: _SearchBudget,
) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        kind = str(trial.suggest_categorical("kind", kinds) if automl else kinds[0])
        prefix = f"{kind}." if automl else ""
        on_baseline = residual
        if kind == "naive":
            strategy = trial.suggest_categorical("naive.strategy", problem.naive_strategies())
            params = problem.naive_params(str(strategy))
            on_baseline = False
        else:
            params = suggest_params(trial, kind, spaces[kind], fixed[kind], prefix=prefix)
            if automl and problem.har is not None:
                on_baseline = bool(trial.suggest_categorical(f"{prefix}residual", [True, False]))
        trial.set_user_attr("kind", kind)
        trial.set_user_attr("params", params)
        trial.set_user_attr("residual", on_baseline)
        trial.set_user_attr("worker", worker)
        if kind == "naive":
            done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if any(t.user_attrs.get("params") == params for t in done):
                raise optuna.TrialPruned(f"the {params['strategy']} baseline was already scored")
        scores = []
        try:
            with time_budget(search.seconds_left(trial.study)):
                for step, score in enumerate(problem.fold_scores(kind, params, on_baseline)):
                    scores.append(score)
                    trial.report(score, step)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"fold {step}: {problem.metric} {score:.5f}")
        except BudgetExhaustedError as error:
            trial.set_user_attr("stopped", str(error))
            raise optuna.TrialPruned(f"after {len(scores)} folds: {error}") from None
        return float(np.mean(scores))

    return objective


# -- results and outputs -----------------------------------------------------------------------


def _trial_table(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for trial in study.trials:
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete is not None and trial.datetime_start is not None
            else math.nan
        )
        rows.append(
            {
                "number": trial.number,
                "kind": trial.user_attrs.get("kind", ""),
                "params": json.dumps(trial.user_attrs.get("params", {}), sort_keys=True),
                "value": trial.value if trial.value is not None else math.nan,
                "state": trial.state.name,
                "seconds": seconds,
                "folds_reported": len(trial.intermediate_values),
                "worker": trial.user_attrs.get("worker", ""),
            }
        )
    columns = ["number", "kind", "params", "value", "state", "seconds", "folds_reported", "worker"]
    return pd.DataFrame.from_records(rows, columns=columns)


def _top_distinct(study: optuna.Study, direction: str, size: int) -> list[optuna.trial.FrozenTrial]:
    """The best ``size`` completed trials whose (kind, params) differ."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    complete.sort(key=lambda t: float(t.value or 0.0), reverse=direction == "maximize")
    chosen: list[optuna.trial.FrozenTrial] = []
    seen: set[str] = set()
    for trial in complete:
        key = json.dumps(
            [trial.user_attrs.get("kind"), trial.user_attrs.get("params")], sort_keys=True
        )
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == size:
            break
    return chosen


def _collect(
    study: optuna.Study,
    cfg: RunConfig,
    problem: _Problem,
    label_column: str,
    direction: str,
    automl: bool,
    started: float,
    time_limit: float | None = None,
) -> TuneResult:
    table = _trial_table(study)
    complete = table[table["state"] == "COMPLETE"]
    if complete.empty:
        raise ConfigError(
            f"tune: no trial completed among {len(table)} (states: "
            f"{', '.join(f'{s}={n}' for s, n in table['state'].value_counts().items())}); "
            "see the log for the failures"
            + (f" — the time limit of {time_limit:g}s may be too short" if time_limit else "")
        )
    best = study.best_trial
    best_value = float(best.value if best.value is not None else math.nan)
    stacked_score: float | None = None
    stacked_models: list[dict[str, Any]] = []
    chosen, note = False, ""
    if automl:
        stacked_models, note = _stack_members(study, direction, problem)
        if len(stacked_models) >= 2:
            stacked_score, note = _score_stack(problem, stacked_models, best, best_value, direction)
            chosen = stacked_score is not None and _better(stacked_score, best_value, direction)
        logger.info("automl: {}", note)
    output = Path(cfg.output) / TUNING_DIR
    result = TuneResult(
        study=study,
        trials=table,
        target=label_column,
        metric=problem.metric,
        direction=direction,
        best_value=best_value,
        best_kind=str(best.user_attrs["kind"]),
        best_params=dict(best.user_attrs["params"]),
        n_trials=len(table),
        n_complete=len(complete),
        n_pruned=int((table["state"] == "PRUNED").sum()),
        stacked_score=stacked_score,
        stacked_models=stacked_models,
        output=output,
        seconds=time.perf_counter() - started,
        best_residual=bool(best.user_attrs.get("residual", False)),
        stack_chosen=chosen,
        stack_note=note,
        time_limit=time_limit,
    )
    _write(result, cfg)
    return result


def _better(candidate: float, reference: float, direction: str) -> bool:
    return candidate < reference if direction == "minimize" else candidate > reference


def _member(trial: optuna.trial.FrozenTrial, problem: _Problem) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": trial.user_attrs["kind"],
        "params": dict(trial.user_attrs["params"]),
    }
    if trial.user_attrs.get("residual") and problem.har is not None:
        entry["on_baseline"] = list(problem.har)
    return entry


def _stack_members(
    study: optuna.Study, direction: str, problem: _Problem
) -> tuple[list[dict[str, Any]], str]:
    """The best distinct trials whose stack fits the time left (dropping the slowest first)."""
    top = _top_distinct(study, direction, STACK_SIZE)
    if len(top) < 2:
        return [], f"no stack: {len(top)} distinct completed trial(s), a stack needs 2"
    while len(top) >= 2 and STACK_COST * sum(_seconds(t) for t in top) > time_left():
        top.remove(max(top[1:], key=_seconds))  # the best member always stays
    if len(top) < 2:
        return [], (
            f"no stack: the stack of the best trials would need about "
            f"{STACK_COST * sum(_seconds(t) for t in _top_distinct(study, direction, 2)):.0f}s, "
            f"{max(0.0, time_left()):.0f}s of the time limit are left"
        )
    return [_member(t, problem) for t in top], ""


def _score_stack(
    problem: _Problem,
    members: list[dict[str, Any]],
    best: optuna.trial.FrozenTrial,
    best_value: float,
    direction: str,
) -> tuple[float | None, str]:
    stacking = {"base_models": members, "n_splits": STACK_SPLITS}
    member = f"its best member ({best.user_attrs['kind']}, trial {best.number})"
    try:
        score = problem.mean_score("stacking", stacking)
    except BudgetExhaustedError as error:
        return None, f"no stack: {error}; {member} is returned"
    except TradeMLError as error:
        logger.warning("automl: the stacked model of the best trials failed: {}", error)
        return None, f"no stack: it failed ({error}); {member} is returned"
    verdict = (
        "the stack is returned"
        if _better(score, best_value, direction)
        else f"{member.removeprefix('its ')} is returned"
    )
    return score, (
        f"stack of {len(members)} {problem.metric} {score:.5f} vs {member} {best_value:.5f} "
        f"on the same folds: {verdict}"
    )


def best_config(result: TuneResult, cfg: RunConfig) -> dict[str, Any]:
    """A run config (as a dict) whose model is the search's answer, runnable by ``train``.

    With AutoML that is the ``stacking`` model of the best trials when it beat its best
    member out of sample on the same folds, else the best trial alone.

    Parameters
    ----------
    result : TuneResult
        The tuning result.
    cfg : RunConfig
        The tuned config; everything but ``models`` is kept.

    Returns
    -------
    dict
        The config, valid for :func:`trademl.config.load_run_config`.
    """
    if result.stack_chosen:
        # The members carry their own on_baseline: the stack itself is not wrapped again.
        params = {"base_models": result.stacked_models, "n_splits": STACK_SPLITS}
        models: list[dict[str, Any]] = [{"kind": "stacking", "params": params, "residual": False}]
    else:
        models = [
            {
                "kind": result.best_kind,
                "params": result.best_params,
                "residual": result.best_residual,
            }
        ]
    data = cfg.model_dump(mode="json")
    data["models"] = models
    return data


def _write(result: TuneResult, cfg: RunConfig) -> None:
    result.output.mkdir(parents=True, exist_ok=True)
    with atomic_path(result.output / "trials.csv") as temp:
        result.trials.to_csv(temp, index=False)
    with atomic_path(result.output / "best.yaml") as temp:
        Path(temp).write_text(yaml.safe_dump(best_config(result, cfg), sort_keys=False))
    summary = {
        "study": result.study.study_name,
        "target": result.target,
        "metric": result.metric,
        "direction": result.direction,
        "n_trials": result.n_trials,
        "n_complete": result.n_complete,
        "n_pruned": result.n_pruned,
        "best_value": result.best_value,
        "best_kind": result.best_kind,
        "best_params": result.best_params,
        "stacked_score": result.stacked_score,
        "stacked_models": result.stacked_models,
        "best_residual": result.best_residual,
        "stack_chosen": result.stack_chosen,
        "stack_note": result.stack_note,
        "time_limit": result.time_limit,
        "seconds": result.seconds,
    }
    with atomic_path(result.output / "summary.json") as temp:
        Path(temp).write_text(json.dumps(summary, indent=2, default=str))
