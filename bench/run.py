"""Market-data benchmark: import N one-minute bars into DuckDB and PostgreSQL through trademl,
and read a one-month range back, beside plain pandas ``read_csv`` + DuckDB insert / psycopg COPY
doing the same work in the same run. Reported as throughput, latency and our overhead ratio.

The input is built from the real BTCUSDT 5-minute bars of ../shared/data, relabelled as
consecutive minutes and tiled up to N rows (every bar a real bar; only the clock is new).

    .venv/bin/python bench/run.py               # 10 million bars (a few minutes)
    .venv/bin/python bench/run.py --rows 1e6    # quicker
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv

from trademl.data.candles import COLUMNS
from trademl.data.ingest import import_path
from trademl.data.stores import open_store

DATA = Path(
    os.environ.get(
        "TRADEML_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)
PG_ADMIN = os.environ.get("TRADEML_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = "trademl_bench"
MONTH = (pd.Timestamp("2001-03-01", tz="UTC"), pd.Timestamp("2001-04-01", tz="UTC"))


def build_input(rows: int, folder: Path) -> Path:
    """Write BENCH_1m.csv: real 5m bars relabelled as consecutive minutes from 2000-01-01."""
    path = folder / "BENCH_1m.csv"
    real = pd.read_csv(DATA / "crypto" / "BTCUSDT_5m.csv.gz")
    reps = -(-rows // len(real))
    values = {c: np.tile(real[c].to_numpy(), reps)[:rows] for c in COLUMNS}
    stamps = pd.date_range("2000-01-01", periods=rows, freq="1min", tz="UTC")
    text = pa.array(stamps.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object), pa.string())
    pa_csv.write_csv(pa.table({"timestamp": text, **values}), path)
    return path


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def read_latency(read: Callable[[], pd.DataFrame], repeats: int = 15) -> tuple[float, int]:
    rows = len(read())
    samples = [timed(read) for _ in range(repeats)]
    return statistics.median(samples), rows


# -- plain peers ---------------------------------------------------------------------------


def plain_frame(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, engine="pyarrow")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame.insert(0, "timeframe", "1m")
    frame.insert(0, "symbol", "BENCH")
    return frame


_TABLE = (
    "CREATE TABLE plain (symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, "
    "open DOUBLE PRECISION, high DOUBLE PRECISION, low DOUBLE PRECISION, close DOUBLE PRECISION, "
    "volume DOUBLE PRECISION, PRIMARY KEY (symbol, timeframe, ts))"
)
_RANGE = (
    "SELECT ts, open, high, low, close, volume FROM plain "
    "WHERE symbol = 'BENCH' AND timeframe = '1m' AND ts >= %s AND ts < %s ORDER BY ts"
)


def plain_duckdb(path: Path, db: Path) -> tuple[float, Callable[[], pd.DataFrame]]:
    con = duckdb.connect(str(db))
    con.execute(_TABLE).fetchall()

    def load() -> None:
        frame = plain_frame(path)  # noqa: F841 - referenced by name in the SQL below
        con.execute("INSERT INTO plain SELECT * FROM frame").fetchall()

    seconds = timed(load)
    sql = _RANGE.replace("%s", "?")
    return seconds, lambda: con.execute(
        sql, [MONTH[0].to_pydatetime(), MONTH[1].to_pydatetime()]
    ).df()


def plain_postgres(path: Path, url: str) -> tuple[float, Callable[[], pd.DataFrame]]:
    con = psycopg.connect(url, autocommit=False)
    con.execute(_TABLE)
    con.commit()

    def load() -> None:
        frame = plain_frame(path)
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, header=False)
        with con.cursor() as cur, cur.copy("COPY plain FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
        con.commit()

    seconds = timed(load)

    def read() -> pd.DataFrame:
        with con.cursor() as cur:
            cur.execute(_RANGE, MONTH)
            rows = cur.fetchall()
        return pd.DataFrame(
            rows, columns=["ts", "open", "high", "low", "close", "volume"]
        ).set_index("ts")

    return seconds, read


# -- trademl ---------------------------------------------------------------------------------


def ours(path: Path, url: str) -> tuple[float, Callable[[], pd.DataFrame]]:
    store = open_store(url)
    seconds = timed(lambda: import_path(path, store))
    return seconds, lambda: store.read("BENCH", "1m", *MONTH)


def recreate_postgres() -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {PG_DB}")
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{PG_DB}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=float, default=10e6)
    parser.add_argument("--backends", default="duckdb,postgresql")
    parser.add_argument("--out", type=Path, default=Path("bench/results/market_data.json"))
    args = parser.parse_args()
    rows = int(args.rows)
    results = []
    with tempfile.TemporaryDirectory(prefix="trademl-bench-") as tmp:
        folder = Path(tmp)
        print(f"building {rows:,} bars ...", file=sys.stderr)
        path = build_input(rows, folder)
        print(f"input: {path.stat().st_size / 1e6:,.0f} MB CSV", file=sys.stderr)
        for backend in args.backends.split(","):
            if backend == "duckdb":
                peer_s, peer_read = plain_duckdb(path, folder / "plain.duckdb")
                our_s, our_read = ours(path, f"duckdb:///{folder / 'ours.duckdb'}")
            else:
                url = recreate_postgres()
                peer_s, peer_read = plain_postgres(path, url)
                our_s, our_read = ours(path, url)
            peer_latency, peer_rows = read_latency(peer_read)
            our_latency, our_rows = read_latency(our_read)
            assert peer_rows == our_rows, (peer_rows, our_rows)
            results.append(
                {
                    "backend": backend,
                    "rows": rows,
                    "import_s": {"trademl": our_s, "plain": peer_s},
                    "import_bars_per_s": {"trademl": rows / our_s, "plain": rows / peer_s},
                    "import_overhead_ratio": our_s / peer_s,
                    "month_read_rows": our_rows,
                    "month_read_ms": {"trademl": our_latency * 1e3, "plain": peer_latency * 1e3},
                    "read_overhead_ratio": our_latency / peer_latency,
                }
            )
            print(f"{backend}: done", file=sys.stderr)
    print(
        f"\n{'backend':<11}{'import bars/s (ours | plain)':>32}{'ratio':>8}{'month read ms (ours | plain)':>32}{'ratio':>8}"
    )
    for r in results:
        ib, rm = r["import_bars_per_s"], r["month_read_ms"]
        print(
            f"{r['backend']:<11}{ib['trademl']:>16,.0f} | {ib['plain']:>12,.0f}{r['import_overhead_ratio']:>8.2f}"
            f"{rm['trademl']:>17.1f} | {rm['plain']:>12.1f}{r['read_overhead_ratio']:>8.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
