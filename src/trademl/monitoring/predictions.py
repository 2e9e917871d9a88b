"""The prediction log: every served prediction as rows of a metadata database, scored once its
labels mature.

Every answer is logged: the model name and version, the symbol and timeframe, the bar
predicted from, each horizon with every output of it (P(up), high, low, intervals...), the
request id and where the candles came from. An answer's rows are stored once
(``prediction_answers``, keyed by a digest of them) and every request that got it adds one row
(``prediction_log``: when, which request, which answer); :meth:`PredictionLog.read` joins them
back into one row per request and horizon. A row's label is *mature* when the bars of its
horizon are in the store; realised metrics read mature rows only, and say what share that is.

>>> log = PredictionLog("sqlite://")
>>> row = LoggedPrediction("r1", "btc", 3, "BTCUSDT", "1h", pd.Timestamp("2024-01-01", tz="UTC"),
...                        "intraday", 6, "request", {"p_up": 0.55, "high_log": 0.01})
>>> log.append([row])
1
>>> log.read("btc")[["model_version", "horizon_bars", "p_up"]].to_dict("records")
[{'model_version': 3, 'horizon_bars': 6, 'p_up': 0.55}]
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from loguru import logger

from trademl.databases import open_engine
from trademl.errors import ConfigError, StoreError
from trademl.features.labels import build_labels
from trademl.monitoring.appender import Appender, reason
from trademl.redact import redact_url

# Hex digits of an answer's key (96 bits of SHA-256: no collision in any log's lifetime).
ANSWER_KEY_LENGTH = 24
_metadata = sa.MetaData()
# Two tables: an answer's rows once (a polled bar is answered thousands of times with the same
# numbers), and one small row per request naming the answer it got. Names are bounded like the
# API's request fields: the log never stores an unbounded string.
prediction_answers = sa.Table(
    "prediction_answers",
    _metadata,
    sa.Column("answer", sa.String(ANSWER_KEY_LENGTH), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("timeframe", sa.String(16), nullable=False),
    sa.Column("bar_timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("horizon", sa.String(64), nullable=False),
    sa.Column("horizon_bars", sa.Integer, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("outputs", sa.Text, nullable=False),
    sa.Index("ix_prediction_answers_series", "model_name", "symbol", "timeframe", "bar_timestamp"),
)
prediction_log = sa.Table(
    "prediction_log",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("answer", sa.String(ANSWER_KEY_LENGTH), nullable=False),
    sa.Index("ix_prediction_log_answer", "answer"),
)
_BOUNDS = {"request_id": 64, "model_name": 256, "symbol": 64, "timeframe": 16, "horizon": 64}
SOURCES = ("request", "store", "stream", "signal", "batch")
# The label kinds the predictor's outputs are scored against, and the output each one scores.
SCORED = {"max_high": "high_log", "min_low": "low_log", "direction": "p_up"}


@dataclass(frozen=True)
class LoggedPrediction:
    """One served prediction of one horizon.

    Attributes
    ----------
    request_id : str
        The request (or stream message) that asked for it.
    model_name, model_version : str, int
        The registered version that answered.
    symbol, timeframe : str
        The series predicted.
    bar_timestamp : pandas.Timestamp
        The (UTC) start of the bar predicted from.
    horizon : str
        The horizon's name; ``horizon_bars`` its length in bars.
    horizon_bars : int
        Bars ahead the labels look.
    source : str
        Where the candles came from: ``request``, ``store``, ``stream``, ``signal`` or
        ``batch``.
    outputs : mapping of str to float
        Every output of the horizon (``p_up``, ``high_log``, ``high``, ``high_lo``...).
    """

    request_id: str
    model_name: str
    model_version: int
    symbol: str
    timeframe: str
    bar_timestamp: pd.Timestamp
    horizon: str
    horizon_bars: int
    source: str
    outputs: Mapping[str, float]

    def row(self) -> dict[str, Any]:
        """Its row's fields (the log adds the time it was logged); refuses what the log would
        have to cut or cannot read."""
        for field, bound in _BOUNDS.items():
            value = getattr(self, field)
            if not isinstance(value, str) or not 0 < len(value) <= bound:
                raise ConfigError(f"prediction log: {field} must be 1 to {bound} characters")
        if self.source not in SOURCES:
            raise ConfigError(f"prediction log: source must be one of {', '.join(SOURCES)}")
        if self.horizon_bars < 1:
            raise ConfigError("prediction log: horizon_bars must be at least 1")
        stamp = pd.Timestamp(self.bar_timestamp)
        if stamp.tzinfo is None:
            raise ConfigError("prediction log: bar_timestamp must carry a time zone (UTC)")
        # NaN is not JSON: an output that could not be computed is stored as null.
        outputs = {str(k): (None if math.isnan(v) else float(v)) for k, v in self.outputs.items()}
        return {
            "request_id": self.request_id,
            "model_name": self.model_name,
            "model_version": int(self.model_version),
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "bar_timestamp": stamp.tz_convert("UTC").to_pydatetime(),
            "horizon": self.horizon,
            "horizon_bars": int(self.horizon_bars),
            "source": self.source,
            "outputs": json.dumps(outputs, sort_keys=True),
        }


def horizon_records(
    values: Mapping[str, float],
    horizons: Mapping[str, int],
    **identity: Any,
) -> list[LoggedPrediction]:
    """One :class:`LoggedPrediction` per horizon from a pipeline's output columns.

    ``values`` are :meth:`trademl.pipeline.PipelineModel.predict_last`'s
    (``{horizon}__{output}``); ``identity`` gives the other fields (request id, model, series,
    bar, source).

    >>> rows = horizon_records({"a__p_up": 0.6, "b__p_up": 0.4}, {"a": 6, "b": 24},
    ...     request_id="r", model_name="m", model_version=1, symbol="X", timeframe="1h",
    ...     bar_timestamp=pd.Timestamp("2024-01-01", tz="UTC"), source="store")
    >>> [(r.horizon, r.horizon_bars, dict(r.outputs)) for r in rows]
    [('a', 6, {'p_up': 0.6}), ('b', 24, {'p_up': 0.4})]
    """
    records = []
    for name, bars in horizons.items():
        prefix = f"{name}__"
        outputs = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
        records.append(
            LoggedPrediction(horizon=name, horizon_bars=int(bars), outputs=outputs, **identity)
        )
    return records


@dataclass(frozen=True)
class PreparedRows:
    """An answer's rows, checked and serialised once, minus what each request adds (its id and
    the time it was logged): a server answering the same bar many times prepares it once, and
    the log stores the rows once under :attr:`key`."""

    rows: tuple[tuple[Any, ...], ...]

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property
    def encoded(self) -> bytes:
        """The rows as compact JSON (times as ISO 8601)."""
        return json.dumps(self.rows, default=_iso, separators=(",", ":")).encode()

    @cached_property
    def key(self) -> str:
        """The answer's key: a digest of its rows, so equal answers share one stored copy."""
        return hashlib.sha256(self.encoded).hexdigest()[:ANSWER_KEY_LENGTH]

    def answer_values(self) -> list[Any]:
        """The flat values of its ``prediction_answers`` rows (key, position, row...)."""
        values: list[Any] = []
        for position, row in enumerate(self.rows):
            values += (self.key, position, *row)
        return values


def _iso(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} in the prediction log")


ANSWER_COLUMNS = [c.name for c in prediction_answers.columns]
REQUEST_COLUMNS = [c.name for c in prediction_log.columns if c.name != "id"]
# What :meth:`PredictionLog.read` returns besides one column per output.
READ_COLUMNS = [
    "id",
    "logged_at",
    "request_id",
    *(c for c in ANSWER_COLUMNS if c not in ("answer", "position", "outputs")),
]
# Answers known to be stored, per process: a polled bar's rows are inserted once.
_KNOWN_ANSWERS = 4096


class PredictionLog:
    """The prediction log in a SQL database (``sqlite:///...``, ``postgresql://...``).

    Appends are one transaction each: a prediction is logged whole or not at all, and what was
    committed survives a restart. A database that cannot be reached when the log is opened is
    tried again by every append, which fails with a StoreError meanwhile (a server starts, and
    refuses to answer what it cannot log).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url)
        self._appender = Appender(self._engine, prediction_log.name, REQUEST_COLUMNS)
        self._answers = Appender(
            self._engine, prediction_answers.name, ANSWER_COLUMNS, skip_duplicates=True
        )
        self._known: OrderedDict[str, None] = OrderedDict()
        sqlite = self._engine.dialect.name == "sqlite"
        # SQLite stores times as text in SQLAlchemy's layout (read back as naive UTC); a server
        # database takes aware datetimes.
        self._stamp: Any = _sqlite_stamp if sqlite else (lambda value: value)
        self._created = False
        try:
            self._create()
        except StoreError as error:
            logger.warning("{}; appends fail until it can be written", error)

    def _create(self) -> None:
        if self._created:
            return
        try:
            _metadata.create_all(self._engine, checkfirst=True)
        except sa.exc.DBAPIError as error:
            # Another process (a second server worker) may have created it meanwhile.
            try:
                exists = sa.inspect(self._engine).has_table(prediction_log.name)
            except sa.exc.DBAPIError:
                exists = False
            if not exists:
                raise StoreError(
                    f"prediction log: cannot write to {redact_url(self.url)}: {reason(error)}"
                ) from None
        self._check_layout()
        self._created = True

    def _check_layout(self) -> None:
        try:
            columns = {c["name"] for c in sa.inspect(self._engine).get_columns(prediction_log.name)}
        except sa.exc.DBAPIError as error:
            raise StoreError(
                f"prediction log: cannot read {redact_url(self.url)}: {reason(error)}"
            ) from None
        if "answer" not in columns:
            raise StoreError(
                f"prediction log: the table {prediction_log.name} in {redact_url(self.url)} has "
                "an earlier layout (one row per prediction, without answers); rename or drop it "
                "to start a new log"
            )

    def append(self, predictions: Iterable[LoggedPrediction]) -> int:
        """Write ``predictions`` in one transaction; returns how many rows were written."""
        batch = [(p.request_id, self.prepare([p])) for p in predictions]
        return self.append_prepared(batch)

    def prepare(self, predictions: Iterable[LoggedPrediction]) -> PreparedRows:
        """Check and serialise ``predictions`` for :meth:`append_prepared` (the request id is
        given there)."""
        prepared = []
        for prediction in predictions:
            row = prediction.row()
            row["bar_timestamp"] = self._stamp(row["bar_timestamp"])
            prepared.append(tuple(row[c] for c in ANSWER_COLUMNS[2:]))
        return PreparedRows(tuple(prepared))

    def append_prepared(self, batch: Sequence[tuple[str, PreparedRows]]) -> int:
        """Write every (request id, prepared rows) of ``batch``: the answers not yet stored,
        then one row per request in one transaction (multi-row INSERTs on a connection kept
        open: the hot path of a server logging every answer; see
        :mod:`trademl.monitoring.appender`). Returns the predictions logged.

        An answer stored without the requests that name it (a failure between the two) is
        never read: the log reads requests and joins their answers.

        Raises
        ------
        ConfigError
            A request id is not 1 to 64 characters, or the database refused a value.
        StoreError
            The database cannot be written; nothing of ``batch`` is.
        """
        for request_id, _ in batch:
            check_request_id(request_id)
        now = self._stamp(datetime.now(UTC))
        requests: list[Any] = []
        answers: dict[str, PreparedRows] = {}
        count = 0
        for request_id, prepared in batch:
            if prepared.rows:
                requests += (now, request_id, prepared.key)
                answers.setdefault(prepared.key, prepared)
                count += len(prepared.rows)
        if not requests:
            return 0
        self._create()
        try:
            new = [a for key, a in answers.items() if key not in self._known]
            if new:
                self._answers.write([v for a in new for v in a.answer_values()])
            self._appender.write(requests)
        except (ConfigError, StoreError) as error:
            raise type(error)(f"prediction log: {error}") from None
        for prepared in new:
            self.remember(prepared.key)
        return count

    def remember(self, key: str) -> None:
        """Note that the answer ``key`` is stored (its rows are not inserted again)."""
        self._known[key] = None
        self._known.move_to_end(key)
        while len(self._known) > _KNOWN_ANSWERS:
            self._known.popitem(last=False)

    def read(
        self,
        model_name: str,
        *,
        symbol: str | None = None,
        timeframe: str | None = None,
        version: int | None = None,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """The logged predictions of a model (``start <= bar_timestamp < end``), one row per
        request and horizon, oldest bar first, one column per output."""
        log, answers = prediction_log, prediction_answers
        query = (
            sa.select(
                log.c.id,
                log.c.logged_at,
                log.c.request_id,
                *(answers.c[c] for c in READ_COLUMNS[3:]),
                answers.c.outputs,
            )
            .join(answers, answers.c.answer == log.c.answer)
            .where(answers.c.model_name == model_name)
        )
        for column, value in (
            (answers.c.symbol, symbol),
            (answers.c.timeframe, timeframe),
            (answers.c.model_version, version),
        ):
            if value is not None:
                query = query.where(column == value)
        if start is not None:
            query = query.where(answers.c.bar_timestamp >= pd.Timestamp(start).to_pydatetime())
        if end is not None:
            query = query.where(answers.c.bar_timestamp < pd.Timestamp(end).to_pydatetime())
        query = query.order_by(answers.c.bar_timestamp, log.c.id, answers.c.position)
        self._create()
        with self._engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(query)]
        return _frame(rows)

    def close(self) -> None:
        """Release the database connections."""
        self._appender.close()
        self._answers.close()
        self._engine.dispose()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sqlite_stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def check_request_id(request_id: object) -> None:
    """Raise a ConfigError unless ``request_id`` is a string of 1 to 64 characters."""
    if not isinstance(request_id, str) or not 0 < len(request_id) <= _BOUNDS["request_id"]:
        raise ConfigError("prediction log: request_id must be 1 to 64 characters")


@contextmanager
def opened(url: str) -> Iterator[PredictionLog]:
    """A :class:`PredictionLog` closed on exit."""
    log = PredictionLog(url)
    try:
        yield log
    finally:
        log.close()


def _frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    columns = READ_COLUMNS
    if not rows:
        return pd.DataFrame(columns=columns)
    outputs = pd.DataFrame([json.loads(r.pop("outputs")) for r in rows], dtype=np.float64)
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("logged_at", "bar_timestamp"):
        # SQLite hands back naive datetimes; the log only ever writes UTC.
        stamps = pd.DatetimeIndex(pd.to_datetime(frame[column]))
        frame[column] = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    return pd.concat([frame, outputs], axis=1)


@dataclass(frozen=True)
class ScoredLog:
    """Logged predictions beside what happened.

    Attributes
    ----------
    rows : pandas.DataFrame
        The log's rows with ``mature`` (the horizon's bars are all in the candles) and, on
        mature rows, the realised labels ``realised_max_high``, ``realised_min_low`` and
        ``realised_direction`` (log ratios; direction 1 up, 0 flat, -1 down).
    mature_share : float
        Mature rows over all rows (NaN for an empty log).
    """

    rows: pd.DataFrame
    mature_share: float

    @property
    def mature(self) -> pd.DataFrame:
        """Only the rows whose labels have matured."""
        return self.rows[self.rows["mature"]]


def score(log: pd.DataFrame, candles: pd.DataFrame) -> ScoredLog:
    """Join every logged prediction with its realised labels, computed from ``candles`` by
    the same label code as training.

    A row is mature when its bar is in ``candles`` and the ``horizon_bars`` bars after it are
    too; its labels are NaN otherwise. A gap in the candles makes the rows whose horizon spans
    it immature until the bars arrive.
    """
    rows = log.copy()
    rows["mature"] = False
    for kind in SCORED:
        rows[f"realised_{kind}"] = np.nan
    if rows.empty:
        return ScoredLog(rows, math.nan)
    for bars in sorted(set(rows["horizon_bars"].astype(int))):
        labels = build_labels(candles, [{"kind": kind, "horizon": bars} for kind in SCORED])
        here = rows["horizon_bars"].astype(int) == bars
        at = pd.DatetimeIndex(rows.loc[here, "bar_timestamp"])
        known = at.isin(labels.index)
        complete = pd.Series(False, index=at)
        complete[known] = labels[f"complete_{bars}"].reindex(at[known]).to_numpy(dtype=bool)
        rows.loc[here, "mature"] = complete.to_numpy()
        for kind in SCORED:
            values = labels[f"{kind}_{bars}"].reindex(at).to_numpy(dtype=np.float64)
            rows.loc[here, f"realised_{kind}"] = np.where(complete.to_numpy(), values, np.nan)
    return ScoredLog(rows, float(rows["mature"].mean()))
