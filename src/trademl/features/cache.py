"""The feature cache: parquet files keyed by (data hash, feature-set name, version, definition).

Features are recomputed only when the candles or the set change. The key also carries a hash of
the set's definition, so that editing a YAML without bumping its version cannot serve stale
columns.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trademl import __version__
from trademl.atomic import atomic_path
from trademl.data.candles import COLUMNS, candle_index
from trademl.data.timeframes import Timeframe

if TYPE_CHECKING:
    from trademl.features.sets import FeatureSet

# Bumped whenever indicator values change for the same definition (2: warm-ups extended to
# start invariance, finite-window ATR in candle/amd_phase, exact rolling moments, scale-free
# volume_zscore). Cached frames and registered pipelines of another contract are not used.
FEATURE_CONTRACT = "2"


def data_hash(candles: pd.DataFrame, timeframe: Timeframe) -> str:
    """SHA-256 of the candles' timestamps, values and timeframe."""
    digest = hashlib.sha256(timeframe.name.encode())
    digest.update(candle_index(candles).as_unit("ns").asi8.tobytes())
    digest.update(
        np.ascontiguousarray(candles.loc[:, list(COLUMNS)].to_numpy(dtype=np.float64)).tobytes()
    )
    return digest.hexdigest()


class FeatureCache:
    """Computed feature frames on disk (``TRADEML_HOME/cache/features`` by default)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(self, data: str, feature_set: FeatureSet) -> str:
        """The cache key of a data hash and a feature set."""
        parts = [
            data,
            feature_set.name,
            str(feature_set.version),
            feature_set.fingerprint(),
            __version__,
            FEATURE_CONTRACT,
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        """Where the frame of ``key`` lives."""
        return self.root / f"{key}.parquet"

    def get(self, key: str) -> pd.DataFrame | None:
        """The cached frame, or None."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged entry is recomputed, not trusted
            return None

    def put(self, key: str, frame: pd.DataFrame) -> None:
        """Store ``frame`` atomically."""
        with atomic_path(self.path(key)) as temp:
            frame.to_parquet(temp)
