"""Panel training: one model over many symbols at one timeframe (``data.symbols`` or
``data.universe``).

Each symbol's candles go through the single-symbol preparation unchanged (scale-free features,
labels and baseline inputs on its own bars); the rows are then pooled, indexed by
``(timestamp, symbol)`` and sorted by time, and validated by a
:class:`~trademl.validation.panel.PanelSplitter` on the common timeline, so a test block is a
time range of every symbol and purging follows each row's own label window in time. Results
come per symbol and pooled (a ``symbol`` column, ``pooled`` for all rows), baselines beside the
models in both; the final models are fitted on every symbol's rows and the pipeline serves each
of its symbols.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from loguru import logger

from trademl.atomic import atomic_path
from trademl.config import RunConfig, Settings
from trademl.data.ingest import open_default_store
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError
from trademl.models.base import MODELS
from trademl.preparation import Prepared, prepare
from trademl.run_outputs import (
    RunResult,
    TrainingRecorder,
    finish_run,
    fold_records,
    summary_markdown,
    summary_table,
    wide_predictions,
    write_outputs,
)
from trademl.targets import (
    adaptive_levels,
    evaluate_target,
    fit_final,
    model_name,
    servable,
)
from trademl.validation.panel import PanelSplitter, label_end_times
from trademl.validation.runner import Evaluation
from trademl.validation.selection import choose_sources
from trademl.validation.splitters import make_splitter

POOLED = "pooled"  # the symbol column's value for metrics over every symbol's rows
INDEX_NAMES = ["timestamp", "symbol"]

__all__ = ["POOLED", "PanelPrepared", "prepare_panel", "run_panel"]


@dataclass(frozen=True)
class PanelPrepared:
    """A panel's pooled inputs and each symbol's own.

    Attributes
    ----------
    pooled : Prepared
        Features, baselines and labels of every symbol's usable rows, indexed by
        ``(timestamp, symbol)`` and sorted by time; its ``candles`` are the first symbol's
        (the pipeline's input example) and its ``data_hash`` digests every symbol's.
    members : dict of str to Prepared
        Each symbol's single-symbol preparation, in config order.
    label_ends : dict of int to pandas.DatetimeIndex
        Per horizon (bars), each pooled row's label-window end in its symbol's bars.
    """

    pooled: Prepared
    members: dict[str, Prepared]
    label_ends: dict[int, pd.DatetimeIndex]

    @property
    def symbols(self) -> list[str]:
        """The panel's symbols, in config order."""
        return list(self.members)

    def splitter(self, cfg: RunConfig, bars: int) -> PanelSplitter:
        """The config's splitter for a ``bars`` horizon, on the panel's common timeline."""
        index = self.pooled.X.index
        return PanelSplitter(
            make_splitter(cfg.validation.kind, dict(cfg.validation.params), bars),
            pd.DatetimeIndex(index.get_level_values("timestamp")),
            self.label_ends[bars],
            pd.Index(index.get_level_values("symbol")),
        )


def _member_config(cfg: RunConfig, symbol: str) -> RunConfig:
    data = cfg.data.model_copy(update={"symbol": symbol, "symbols": None, "universe": None})
    return cfg.model_copy(update={"data": data})


def _check_panel(cfg: RunConfig, settings: Settings) -> Timeframe:
    """Refuse what a panel cannot do, and symbols the store lacks at the timeframe."""
    timeframe = Timeframe.parse(cfg.data.timeframe)
    for position, spec in enumerate(cfg.models):
        if MODELS.get(spec.kind).is_sequence:
            raise ConfigError(
                f"models.{position}: {spec.kind} reads windows of consecutive rows, but a panel's "
                "rows interleave symbols; use a tabular kind (lgbm, xgb, naive, stacking of them)"
            )
    if not cfg.data.members:
        raise ConfigError("data.universe: the universe file was not read (run it through run())")
    with open_default_store(settings) as store:
        held = store.list_series()
    for position, symbol in enumerate(cfg.data.members):
        timeframes = sorted({s.timeframe for s in held if s.symbol == symbol})
        if timeframe.name in timeframes:
            continue
        if timeframes:
            raise ConfigError(
                f"data.symbols.{position}: {symbol} is stored at {', '.join(timeframes)}, not at "
                f"the panel's timeframe {timeframe.name}; a panel's symbols share one timeframe "
                "(import or resample it, or leave it out)"
            )
        raise ConfigError(
            f"data.symbols.{position}: {symbol} is not in the store (it holds "
            f"{len({s.symbol for s in held})} symbols); import it first (trademl data import)"
        )
    return timeframe


def prepare_panel(cfg: RunConfig, *, settings: Settings) -> PanelPrepared:
    """Prepare every symbol of the panel as a single-symbol run would, then pool the rows.

    Raises
    ------
    ConfigError
        A sequence model kind, a symbol missing from the store or stored only at another
        timeframe (named with its position), or an invalid model/splitter.
    DataValidationError
        A symbol with too few bars for the warm-up and the longest horizon (named).
    """
    _check_panel(cfg, settings)
    members: dict[str, Prepared] = {}
    for symbol in cfg.data.members:
        try:
            members[symbol] = prepare(_member_config(cfg, symbol), settings=settings)
        except DataValidationError as error:
            raise DataValidationError(f"data.symbols: {symbol}: {error}", rule=error.rule) from None
    first = next(iter(members.values()))

    def pool(part: Callable[[Prepared], pd.DataFrame]) -> pd.DataFrame:
        frame = pd.concat({s: part(p) for s, p in members.items()}, names=["symbol", "timestamp"])
        return frame.swaplevel().sort_index()

    X = pool(lambda p: p.X)
    ends = {}
    for bars in first.horizons.values():
        per_symbol = {
            s: pd.DataFrame(
                {"end": label_end_times(pd.DatetimeIndex(p.candles.index), bars)},
                index=p.candles.index,
            ).loc[p.X.index]
            for s, p in members.items()
        }
        joined = pd.concat(per_symbol, names=["symbol", "timestamp"]).swaplevel()
        ends[bars] = pd.DatetimeIndex(joined["end"].reindex(X.index))
    digest = hashlib.sha256(
        "\n".join(f"{s}:{p.data_hash}" for s, p in members.items()).encode()
    ).hexdigest()
    pooled = Prepared(
        X=X,
        baselines=pool(lambda p: p.baselines).reindex(X.index),
        labels=pool(lambda p: p.labels).reindex(X.index),
        horizons=first.horizons,
        candles=first.candles,
        data_hash=digest,
        fingerprint=first.fingerprint,
        feature_set=first.feature_set,
    )
    logger.info(
        "panel of {} symbols: {:,} pooled rows, data hash {}", len(members), len(X), digest[:12]
    )
    return PanelPrepared(pooled, members, ends)


def run_panel(
    cfg: RunConfig,
    settings: Settings,
    progress: Callable[[float, str], None] | None,
    recorder: TrainingRecorder | None = None,
) -> RunResult:
    """:func:`trademl.workflow.run` for a panel config (called by it; paths resolved, output
    held). Writes the single-symbol outputs with a ``symbol`` column in ``folds.csv`` and
    ``summary.csv`` and a ``symbol`` index level in ``predictions.parquet``."""
    report = progress or (lambda fraction, message: None)
    started = time.perf_counter()
    if recorder is not None:
        recorder.check(cfg)
    report(0.0, "features and labels")
    panel = prepare_panel(cfg, settings=settings)
    pooled = panel.pooled
    # A model's internal hold-out (calibration, early stopping) is separated from its fitting
    # rows by a gap in rows: a horizon of h bars spans up to h rows per symbol here.
    rows_per_bar = len(panel.members)
    records: list[dict[str, Any]] = []
    wides: list[pd.DataFrame] = []
    evaluations: list[tuple[Evaluation, str, str, int]] = []
    served_alpha: dict[str, float] = {}
    stages = 2 + len(pooled.horizons) * len(cfg.labels.kinds)
    for name, bars in pooled.horizons.items():
        splitter = panel.splitter(cfg, bars)
        for kind in cfg.labels.kinds:
            report((1 + len(wides)) / stages, f"validating {kind} at {name} ({bars} bars)")
            evaluation = evaluate_target(
                cfg,
                kind,
                bars,
                pooled.X,
                pooled.baselines,
                pooled.labels,
                splitter,
                gap=bars * rows_per_bar,
            )
            evaluations.append((evaluation, kind, name, bars))
            wides.append(wide_predictions(evaluation, kind, bars))
            served_alpha.update(adaptive_levels(evaluation, kind, name))
    for symbol in (POOLED, *panel.symbols):
        for evaluation, target_kind, name, bars in evaluations:
            part = _by_time(evaluation.predictions, symbol)
            rows = fold_records(
                replace(evaluation, predictions=part),
                target_kind,
                name,
                bars,
                cfg.uncertainty.alpha,
            )
            records.extend({"symbol": symbol, **row} for row in rows)
    folds = pd.DataFrame.from_records(records)
    tables = []
    for symbol in (POOLED, *panel.symbols):
        table = summary_table(
            [_with_attrs(_by_time(w, symbol), w) for w in wides],
            folds[folds["symbol"] == symbol],
            cfg,
            pooled.horizons,
        )
        table.insert(0, "symbol", symbol)
        tables.append(table)
    summary = pd.concat(tables, ignore_index=True)
    summary.attrs["alpha"] = cfg.uncertainty.alpha
    wide = _join(wides)

    # What serves each target, as for one symbol, tested on the pooled rows (in time order):
    # the HAC lag spans a horizon of bars, each bar holding a row per symbol.
    choices = choose_sources(
        wide.sort_index(level="timestamp", sort_remaining=True),
        model_name(cfg.models[0].kind, cfg.models[0].name),
        level=cfg.registry.gate.level,
        min_rows=1,
        servable=partial(servable, list(pooled.X.columns)),
        rows_per_bar=rows_per_bar,
    )
    report((stages - 1) / stages, "fitting the final models")
    final = fit_final(
        cfg,
        pooled.X,
        pooled.labels,
        pooled.horizons,
        gap=max(pooled.horizons.values()) * rows_per_bar,
        interval_alpha=served_alpha,
        choices=choices,
    )
    output = Path(cfg.output)
    write_outputs(
        output,
        cfg,
        # The single-symbol writer sees the rows in time order with a symbol column (what it
        # derives per row, such as rolling coverage, is then pooled over the panel); the
        # predictions file itself keeps the (timestamp, symbol) index, rewritten below.
        wide.reset_index("symbol"),
        folds,
        summary,
        pooled.data_hash,
        pooled.feature_set,
        _span(panel),
    )
    with atomic_path(output / "predictions.parquet") as temp:
        wide.to_parquet(temp)
    _write_panel_files(output, cfg, summary, panel)
    seconds = time.perf_counter() - started
    logger.info("panel run written to {} in {:.1f}s", output, seconds)
    result = RunResult(output, folds, summary, wide, pooled.data_hash, seconds, choices=choices)
    return finish_run(cfg, result, final, pooled, recorder, report)


def _by_time(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """One symbol's rows (or every row, for ``pooled``), indexed by timestamp alone."""
    part = frame if symbol == POOLED else frame[frame.index.get_level_values("symbol") == symbol]
    return part.droplevel("symbol")


def _with_attrs(frame: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    frame.attrs.update(source.attrs)
    return frame


def _join(frames: list[pd.DataFrame]) -> pd.DataFrame:
    joined = pd.concat([f.drop(columns="fold") for f in frames], axis=1).sort_index()
    folds = pd.concat([f["fold"] for f in frames], axis=1).max(axis=1)
    joined.insert(0, "fold", folds.astype("int64"))
    joined.index = joined.index.set_names(INDEX_NAMES)
    return joined


def _span(panel: PanelPrepared) -> pd.DataFrame:
    """Every symbol's candles in time order: run.json's first and last bar and bar count."""
    return pd.concat([p.candles for p in panel.members.values()]).sort_index(kind="stable")


def _write_panel_files(
    output: Path, cfg: RunConfig, summary: pd.DataFrame, panel: PanelPrepared
) -> None:
    """The panel's additions to run.json (symbols and each one's span) and a summary.md with
    the pooled tables first, then each symbol's."""
    meta = json.loads((output / "run.json").read_text())
    meta.update(
        symbol=cfg.data.label,
        symbols=panel.symbols,
        members={
            s: {
                "data_hash": p.data_hash,
                "first_bar": p.candles.index[0].isoformat(),
                "last_bar": p.candles.index[-1].isoformat(),
                "bars": len(p.candles),
                "rows": len(p.X),
            }
            for s, p in panel.members.items()
        },
    )
    with atomic_path(output / "run.json") as temp:
        Path(temp).write_text(json.dumps(meta, indent=2))
    sections = []
    for symbol in (POOLED, *panel.symbols):
        part = summary[summary["symbol"] == symbol].drop(columns="symbol")
        text = summary_markdown(part, cfg).split("\n", 1)[1]
        title = (
            f"# {cfg.data.label} {cfg.data.timeframe}, pooled over {', '.join(panel.symbols)}"
            if symbol == POOLED
            else f"# {symbol} {cfg.data.timeframe} (panel model)"
        )
        sections.append(f"{title}: out-of-sample results\n{text}")
    with atomic_path(output / "summary.md") as temp:
        Path(temp).write_text("\n".join(sections))
