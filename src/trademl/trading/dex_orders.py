"""The DEX broker's memory: client order id -> signed transaction, in a small SQLite file.

A row is written before its transaction is broadcast and holds the signed bytes, so a broker
restarted after a crash finds every order by client id and can broadcast a transaction the
chain never saw (the same bytes: the nonce lets it execute at most once). Token amounts are
kept as decimal strings (uint256 does not fit SQLite's integers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path

from trademl.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dex_orders (
    client_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity REAL NOT NULL,
    status TEXT NOT NULL,
    tx_hash TEXT,
    raw_tx TEXT,
    nonce INTEGER,
    cancel_hash TEXT,
    amount_in TEXT,
    amount_out TEXT,
    filled REAL NOT NULL DEFAULT 0,
    average_price REAL,
    fee REAL NOT NULL DEFAULT 0,
    block_time TEXT,
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class DexOrderRow:
    """One order of the DEX broker as stored (amounts in token units, prices in quote per
    base)."""

    client_id: str
    account: str
    symbol: str
    side: str
    quantity: float
    status: str
    created_at: str
    tx_hash: str | None = None
    raw_tx: str | None = None
    nonce: int | None = None
    cancel_hash: str | None = None
    amount_in: str | None = None
    amount_out: str | None = None
    filled: float = 0.0
    average_price: float | None = None
    fee: float = 0.0
    block_time: str | None = None
    reason: str = ""

    def updated(self, **changes: object) -> DexOrderRow:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)  # type: ignore[arg-type]


_COLUMNS = tuple(f.name for f in fields(DexOrderRow))


class DexOrderStore:
    """Rows of :class:`DexOrderRow` in the SQLite file at ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"DEX order map {self.path}: {error}") from error

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as con, con:
            yield con

    def get(self, client_id: str) -> DexOrderRow | None:
        """The row of ``client_id``, or None."""
        with self._connect() as con:
            found = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM dex_orders WHERE client_id = ?", (client_id,)
            ).fetchone()
        return None if found is None else DexOrderRow(*found)

    def insert(self, row: DexOrderRow) -> bool:
        """Store a new row; False (and nothing written) when its client id exists."""
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._connect() as con:
            cursor = con.execute(
                f"INSERT OR IGNORE INTO dex_orders ({', '.join(_COLUMNS)}) VALUES ({marks})",
                tuple(getattr(row, c) for c in _COLUMNS),
            )
            return cursor.rowcount == 1

    def update(self, row: DexOrderRow) -> None:
        """Overwrite the stored row of ``row.client_id``."""
        columns = [c for c in _COLUMNS if c != "client_id"]
        with self._connect() as con:
            con.execute(
                f"UPDATE dex_orders SET {', '.join(f'{c} = ?' for c in columns)} "
                "WHERE client_id = ?",
                (*(getattr(row, c) for c in columns), row.client_id),
            )

    def rows(
        self, account: str, *, symbol: str | None = None, status: str | None = None
    ) -> list[DexOrderRow]:
        """The rows of ``account`` (of one symbol, of one status), oldest first."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM dex_orders WHERE account = ?"
        params: list[object] = [account]
        if symbol is not None:
            query += " AND symbol = ?"
            params.append(symbol)
        if status is not None:
            query += " AND status = ?"
            params.append(status)
        with self._connect() as con:
            found = con.execute(query + " ORDER BY created_at, rowid", params).fetchall()
        return [DexOrderRow(*values) for values in found]
