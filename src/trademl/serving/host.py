"""The models a server answers with: for every registered model the version carrying the first
alias of ``TRADEML_SERVE_ALIASES`` (``champion`` by default), swapped for another version
without downtime when an alias moves in the registry.

Loading a version unpickles it, which runs code: the server loads only versions someone
promoted (an allowed alias; the latest unpromoted one only with
``TRADEML_SERVE_LATEST_UNPROMOTED=true``), and only once the artifact's SHA-256, recorded at
registration, matches (see :func:`trademl.tracking.registry.verify_pipeline_artifact`).
Whoever can write to the tracking server can still move an alias: it is a trust boundary."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from trademl.config import Settings
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, ModelNotFoundError, NotFoundError, TradeMLError
from trademl.pipeline import PipelineModel
from trademl.tracking.pipeline import load_pipeline
from trademl.tracking.registry import list_models


@dataclass(frozen=True)
class Served:
    """A loaded model version."""

    name: str
    version: int
    alias: str | None
    pipeline: PipelineModel
    loaded_at: datetime

    @property
    def latest_unpromoted(self) -> bool:
        """True when no allowed alias is set and the latest version serves instead (only with
        ``serve_latest_unpromoted``)."""
        return self.alias is None

    def describe(self) -> dict[str, Any]:
        """The fields of :class:`~trademl.serving.schemas.ServedModel`."""
        pipeline = self.pipeline
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "latest_unpromoted": self.latest_unpromoted,
            "symbol": pipeline.symbol,
            "timeframe": pipeline.timeframe,
            "horizons": dict(pipeline.horizons),
            "feature_set": pipeline.feature_set.name,
            "warmup_bars": pipeline.warmup_bars,
            "loaded_at": self.loaded_at,
        }


class ModelHost:
    """Loaded pipelines by registered name, refreshed from the registry.

    Readers take :attr:`served` (a dict replaced whole, never mutated), so a request sees one
    consistent set of models while a refresh loads new versions beside the old ones.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.served: dict[str, Served] = {}
        self.load_errors: dict[str, str] = {}
        self._refreshing = threading.Lock()
        # A panel model's per-symbol views, made once per served version and symbol.
        self._views: dict[tuple[int, str], tuple[Served, Served]] = {}

    def refresh(self, only: str | None = None) -> list[str]:
        """Load what the registry says should serve; return the names whose version changed.

        A model that fails to load keeps its previous version (if any) and its error is kept
        in :attr:`load_errors`; with ``only`` just that model is looked at.
        """
        with self._refreshing:
            rows = list_models(self.settings)
            if only is not None:
                rows = [row for row in rows if row["name"] == only]
            served = dict(self.served)
            errors = dict(self.load_errors) if only else {}
            changed = []
            if only is None:
                for gone in set(served) - {row["name"] for row in rows}:
                    del served[gone]
                    changed.append(gone)
            for row in rows:
                name = row["name"]
                version, alias = self._choose(row)
                if version is None:
                    if served.pop(name, None) is not None:
                        changed.append(name)
                    errors[name] = (
                        f"no version of {name!r} carries an alias this server loads "
                        f"({', '.join(self.settings.serve_aliases) or 'none'}): promote one"
                    )
                    continue
                current = served.get(name)
                if current is not None and current.version == version:
                    if current.alias != alias:
                        served[name] = Served(
                            name, version, alias, current.pipeline, current.loaded_at
                        )
                    continue
                try:
                    pipeline, _ = load_pipeline(name, version, self.settings)
                except TradeMLError as error:
                    errors[name] = str(error)
                    logger.warning("model {} version {} not loaded: {}", name, version, error)
                    continue
                errors.pop(name, None)
                served[name] = Served(name, version, alias, pipeline, datetime.now(UTC))
                changed.append(name)
                logger.info(
                    "serving {} version {} ({})", name, version, alias or "latest, unpromoted"
                )
            self.served = served
            self.load_errors = errors
        if changed:
            # Loaded models live as long as the process: keep the collector from walking them.
            gc.freeze()
        return changed

    def _choose(self, row: dict[str, Any]) -> tuple[int | None, str | None]:
        """The version to serve and the alias that makes it so (None: the latest, unpromoted)."""
        aliases: dict[str, int] = row.get("aliases") or {}
        for alias in self.settings.serve_aliases:
            if alias in aliases:
                return int(aliases[alias]), alias
        if self.settings.serve_latest_unpromoted and row.get("latest") is not None:
            return int(row["latest"]), None
        return None, None

    def get(self, name: str) -> Served:
        """The served version of the registered model ``name``."""
        served = self.served.get(name)
        if served is None:
            known = ", ".join(sorted(self.served)) or "none"
            raise ModelNotFoundError(f"model {name!r} is not served here (served: {known})")
        return served

    def find(self, symbol: str, timeframe: str, model: str | None = None) -> Served:
        """The model serving ``symbol`` at ``timeframe`` (``model`` names one when several do).

        Raises
        ------
        UnknownTimeframeError
            ``timeframe`` does not parse (a 422).
        NotFoundError
            No served model predicts ``symbol`` at that timeframe (a 404).
        """
        tf = Timeframe.parse(timeframe).name
        served = list(self.served.values())
        if model is not None:
            chosen = self.get(model)
            pipeline = chosen.pipeline
            if symbol not in pipeline.served_symbols or pipeline.timeframe != tf:
                raise ConfigError(
                    f"model {model!r} predicts {', '.join(pipeline.served_symbols)} "
                    f"{pipeline.timeframe}, not {symbol} {tf}"
                )
            return self._view(chosen, symbol)
        matches = [
            s for s in served if symbol in s.pipeline.served_symbols and s.pipeline.timeframe == tf
        ]
        if not matches:
            pairs = sorted(
                f"{name} {s.pipeline.timeframe}"
                for s in served
                for name in s.pipeline.served_symbols
            )
            what = (
                f"symbol {symbol!r}"
                if all(symbol not in s.pipeline.served_symbols for s in served)
                else f"{symbol} at timeframe {tf}"
            )
            raise NotFoundError(
                f"no model serves {what}; served: {', '.join(pairs) or 'none (no model loaded)'}"
            )
        # Champions before unpromoted versions, then by name: the same choice every time.
        return self._view(min(matches, key=lambda s: (s.alias is None, s.name)), symbol)

    def _view(self, served: Served, symbol: str) -> Served:
        """``served`` predicting for ``symbol``: itself, or for a panel model's other symbols
        a view sharing its fitted models (the same object every time, for the caches)."""
        if served.pipeline.symbol == symbol:
            return served
        key = (id(served), symbol)
        cached = self._views.get(key)
        if cached is not None and cached[0] is served:
            return cached[1]
        view = Served(
            served.name,
            served.version,
            served.alias,
            served.pipeline.for_symbol(symbol),
            served.loaded_at,
        )
        if len(self._views) > 4096:  # versions come and go: forget old views
            self._views.clear()
        self._views[key] = (served, view)
        return view
