"""Writing feature and label frames to files, atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trademl.atomic import atomic_path
from trademl.errors import ConfigError

FRAME_SUFFIXES = (".parquet", ".csv", ".csv.gz")


def write_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (index included) to .parquet, .csv or .csv.gz via a temp file + rename."""
    target = Path(path)
    lower = target.name.lower()
    if not lower.endswith(FRAME_SUFFIXES):
        raise ConfigError(f"output {target} must end in {', '.join(FRAME_SUFFIXES)}")
    with atomic_path(target) as temp:
        if lower.endswith(".parquet"):
            frame.to_parquet(temp)
        else:
            frame.to_csv(temp, compression="gzip" if lower.endswith(".gz") else None)
    return target
