"""A fake Binance public-data archive: real rows published as zips with CHECKSUM files."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass

import pandas as pd
from tests.support.httpserver import LocalServer, Reply

HOUR_MS = 3_600_000
ROOT = "/data/spot"


def kline_csv(rows: pd.DataFrame, *, unit: str = "ms", header: bool = False) -> bytes:
    """Binance's 12-column kline CSV of ``rows`` (open times in ms or µs)."""
    scale = 1_000 if unit == "us" else 1
    lines = ["open_time,open,high,low,close,volume,close_time,quote_volume,count,"
             "taker_buy_volume,taker_buy_quote_volume,ignore"] if header else []  # fmt: skip
    for stamp, row in zip(rows.index, rows.to_dict("records"), strict=True):
        open_ms = stamp.value // 1_000_000
        quote = float(row["close"]) * float(row["volume"])
        lines.append(
            f"{open_ms * scale},{row['open']},{row['high']},{row['low']},{row['close']},"
            f"{row['volume']},{(open_ms + HOUR_MS) * scale - 1},{quote:.8f},1000,"
            f"{float(row['volume']) / 2:.8f},{quote / 2:.8f},0"
        )
    return ("\n".join(lines) + "\n").encode()


def kline_zip(name: str, rows: pd.DataFrame, *, unit: str = "ms", header: bool = False) -> bytes:
    """A zip holding ``<name>.csv`` like the archive's."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.csv", kline_csv(rows, unit=unit, header=header))
    return buffer.getvalue()


@dataclass
class Archive:
    """A fake data.binance.vision: publishes zips of real rows with their CHECKSUM files."""

    server: LocalServer
    rows: pd.DataFrame

    def publish(
        self,
        period: str,
        label: str,
        *,
        unit: str = "ms",
        header: bool = False,
        checksum_of: bytes | None = None,
    ) -> None:
        """Serve the zip of one month or day and its CHECKSUM (of ``checksum_of`` if given)."""
        name = f"BTCUSDT-1h-{label}"
        start = pd.Timestamp(label, tz="UTC")
        stop = start + (pd.DateOffset(months=1) if period == "monthly" else pd.Timedelta(days=1))
        rows = self.rows[(self.rows.index >= start) & (self.rows.index < stop)]
        body = kline_zip(name, rows, unit=unit, header=header)
        digest = hashlib.sha256(body if checksum_of is None else checksum_of).hexdigest()
        path = f"{ROOT}/{period}/klines/BTCUSDT/1h/{name}.zip"
        self.server.routes[path] = Reply(body=body)
        self.server.routes[f"{path}.CHECKSUM"] = Reply(body=f"{digest}  {name}.zip\n".encode())

    def archive_requests(self) -> list[str]:
        """Paths asked of the archive so far, in order."""
        return [path for path in self.server.requests if path.startswith(ROOT)]
