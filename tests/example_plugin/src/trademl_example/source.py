"""``example_folder:<dir>``: candles from ``<dir>/<SYMBOL>_<timeframe>.csv`` files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trademl.config import Settings
from trademl.data.candles import with_meta
from trademl.data.sources.base import clip_range
from trademl.data.sources.files import read_candle_file
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, NotFoundError


class FolderSource:
    """Candles read from CSV files in one folder."""

    name = "example_folder"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def fetch(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles of ``symbol`` at ``timeframe`` with ``start <= timestamp < end``."""
        name = Timeframe.parse(str(timeframe)).name
        path = self.folder / f"{symbol.upper()}_{name}.csv"
        if not path.exists():
            raise NotFoundError(f"example_folder: no file {path.name} in {self.folder}")
        candles = clip_range(read_candle_file(path), start, end)
        return with_meta(candles, symbol=symbol.upper(), timeframe=name)


def open_folder(settings: Settings, argument: str | None) -> FolderSource:
    """The source factory: ``example_folder:/path/to/folder``."""
    if not argument:
        raise ConfigError("example_folder takes a folder, e.g. example_folder:/data/candles")
    return FolderSource(Path(argument))
