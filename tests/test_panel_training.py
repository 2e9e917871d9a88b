"""Panel training (issue 16 item 4): one model over several symbols of the shared data, split
on their common timeline, results per symbol and pooled, served per symbol, backtested in one
kernel call; and the panel's bad inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.api import train as run
from trademl.backtest.engine import run_backtest
from trademl.backtest.outcome import traded_span
from trademl.backtest.runner import backtest
from trademl.backtest.strategies import strategy_signals
from trademl.config import Settings, load_run_config
from trademl.data.ingest import open_default_store, read_series
from trademl.errors import ConfigError, NotFoundError
from trademl.features import build_features, load_feature_set
from trademl.features.cache import FEATURE_CONTRACT
from trademl.paths import PathPolicy, resolve_run_paths
from trademl.pipeline import PipelineModel, load_run_pipeline, warmup_bars
from trademl.serving.host import ModelHost, Served
from trademl.validation.panel import PanelSplitter, label_end_times
from trademl.validation.splitters import PurgedKFold, WalkForward

CRYPTO = ("BTCUSDT", "ETHUSDT", "XRPUSDT")


def _index(data_dir: Path, name: str, start: str, end: str) -> pd.DatetimeIndex:
    frame = pd.read_csv(data_dir / name, usecols=["timestamp"])
    index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True))
    return index[(index >= start) & (index < end)]


def _panel(indexes: dict[str, pd.DatetimeIndex], base: object, horizon: int) -> PanelSplitter:
    """Rows of every symbol sorted by (time, symbol), each with its own label end."""
    parts = [
        pd.DataFrame({"end": label_end_times(ix, horizon), "symbol": s}, index=ix)
        for s, ix in indexes.items()
    ]
    rows = pd.concat(parts).rename_axis("timestamp").reset_index()
    rows = rows.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)
    return PanelSplitter(
        base,  # type: ignore[arg-type]
        pd.DatetimeIndex(rows["timestamp"]),
        pd.DatetimeIndex(rows["end"]),
        pd.Index(rows["symbol"]),
    )


@pytest.mark.parametrize(
    "base",
    [
        WalkForward(test_size=300, horizon_bars=6, n_splits=3, min_train_size=500, embargo_bars=4),
        PurgedKFold(n_splits=4, horizon_bars=6, embargo_bars=4),
    ],
    ids=["walk_forward", "purged_kfold"],
)
def test_no_training_label_window_meets_a_test_block_for_any_symbol(
    data_dir: Path, base: object
) -> None:
    # Three crypto series and a stock whose label windows span nights and weekends.
    indexes = {
        s: _index(data_dir, f"crypto/{s}_1h.csv", "2020-06-01", "2020-08-01") for s in CRYPTO
    }
    indexes["SPY"] = _index(data_dir, "equities/SPY_1h.csv", "2020-06-01", "2020-08-01")
    panel = _panel(indexes, base, 6)
    n = len(panel.times)
    folds = list(panel.split(n))
    assert len(folds) == panel.get_n_splits(n) >= 3
    times, ends = panel.times.asi8, panel.label_ends.asi8
    stock_purged = 0
    for train, test in folds:
        assert len(np.intersect1d(train, test)) == 0
        # Test blocks are time ranges: every symbol's rows inside one are test rows.
        test_times = np.unique(times[test])
        assert set(np.flatnonzero(np.isin(times, test_times))) == set(test)
        reach = ends[test].max()
        for symbol in indexes:
            own = train[panel.symbols[train] == symbol]
            start, stop = times[test].min(), reach
            # Label windows [t, end] of training rows never meet [first test bar, last test
            # label end], in time, whichever symbol.
            meets = (ends[own] >= start) & (times[own] <= stop)
            assert not meets.any(), symbol
        # The stock's Friday-evening rows reach Monday: purged though their bar is further
        # from the block than the horizon in timeline bars.
        timeline = panel.timeline.asi8
        at = np.searchsorted(timeline, times)
        first = int(np.searchsorted(timeline, times[test].min()))
        spy = (panel.symbols == "SPY") & (at < first - 6 - base.embargo_bars)  # type: ignore[attr-defined]
        stock_purged += int((spy & (ends >= times[test].min())).sum())
    assert stock_purged > 0


def test_each_symbol_gets_the_single_symbol_splitters_folds(data_dir: Path) -> None:
    indexes = {
        s: _index(data_dir, f"crypto/{s}_1h.csv", "2023-01-01", "2023-03-01") for s in CRYPTO
    }
    assert all(ix.equals(indexes["BTCUSDT"]) for ix in indexes.values())
    base = WalkForward(test_size=200, horizon_bars=6, n_splits=2, min_train_size=600)
    panel = _panel(indexes, base, 6)
    single = list(base.split(indexes["BTCUSDT"]))
    for (train, test), (own_train, own_test) in zip(panel.split(panel.times), single, strict=True):
        for symbol, index in indexes.items():
            mine = panel.symbols == symbol
            assert panel.times[test[mine[test]]].equals(index[own_test])
            assert panel.times[train[mine[train]]].equals(index[own_train])


def test_a_timeline_too_short_for_the_folds_says_by_how_much(data_dir: Path) -> None:
    indexes = {
        s: _index(data_dir, f"crypto/{s}_1h.csv", "2023-01-01", "2023-01-11") for s in CRYPTO
    }
    panel = _panel(indexes, WalkForward(test_size=200, horizon_bars=6, min_train_size=600), 6)
    with pytest.raises(ConfigError, match=r"3 symbols has 240 bars .*needs at least 806 rows"):
        panel.get_n_splits(panel.times)


# -- config -------------------------------------------------------------------------------------


def _config(output: Path, **data: object) -> dict:
    return {
        "data": {"timeframe": "1h", "start": "2023-01-01", "end": "2023-05-01", **data},
        "features": "minimal",
        "labels": {"kinds": ["direction", "max_high", "min_low"], "horizons": ["intraday"]},
        "models": [{"kind": "lgbm", "params": {"n_estimators": 20}}],
        "validation": {
            "kind": "walk_forward",
            "params": {"test_size": 400, "n_splits": 2, "min_train_size": 1500},
        },
        "output": str(output),
    }


def test_config_takes_one_source_of_symbols_and_one_timeframe(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of symbol, symbols or universe"):
        load_run_config(_config(tmp_path, symbol="BTCUSDT", symbols=["ETHUSDT"]))
    with pytest.raises(ConfigError, match=r"symbols\.1: ETHUSDT is at timeframe 15m"):
        load_run_config(
            _config(tmp_path, symbols=["BTCUSDT", {"symbol": "ETHUSDT", "timeframe": "15m"}])
        )
    with pytest.raises(ConfigError, match=r"symbols\.2: BTCUSDT is listed twice"):
        load_run_config(_config(tmp_path, symbols=["BTCUSDT", "ETHUSDT", "BTCUSDT"]))
    single = load_run_config(_config(tmp_path, symbol="BTCUSDT")).data
    assert not single.panel and single.members == ("BTCUSDT",) and single.label == "BTCUSDT"


def test_a_universe_file_becomes_the_symbol_list_under_the_path_policy(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "universe.txt").write_text("# majors\nBTCUSDT\nETHUSDT  # second\n\nXRPUSDT\n")
    (configs / "mixed.yaml").write_text("- BTCUSDT\n- {symbol: ETHUSDT, timeframe: 1d}\n")
    policy = PathPolicy.service(tmp_path)  # a job's: reads under configs/, writes under runs/

    def resolved(universe: str) -> object:
        return resolve_run_paths(
            load_run_config(_config(Path("runs/x"), universe=universe)), policy
        )

    cfg = resolved("configs/universe.txt")
    assert cfg.data.symbols == CRYPTO and cfg.data.universe is None and cfg.data.panel  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"data\.universe .*ETHUSDT is at timeframe 1d"):
        resolved("configs/mixed.yaml")
    with pytest.raises(ConfigError, match=r"data\.universe: '/etc/hostname' is outside"):
        resolved("/etc/hostname")


# -- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def panel_store(cli, data_dir: Path) -> None:
    for symbol in CRYPTO:
        assert cli("data", "import", data_dir / "crypto" / f"{symbol}_1h.csv").code == 0
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_15m.csv").code == 0


def test_panel_bad_inputs_name_the_symbol_and_the_numbers(panel_store, home, tmp_path) -> None:
    settings = Settings(home=home, tracking=False)
    with pytest.raises(ConfigError, match=r"data.symbols.1: SOLUSDT is not in the store"):
        run(_config(tmp_path / "a", symbols=["BTCUSDT", "SOLUSDT"]), settings=settings)
    # ETHUSDT is stored at 1h only: a 15m panel of it and BTCUSDT is a mixed one.
    with pytest.raises(ConfigError, match=r"data.symbols.1: ETHUSDT is stored at 1h, not .* 15m"):
        run(
            {
                **_config(tmp_path / "b", symbols=["BTCUSDT", "ETHUSDT"]),
                "data": {
                    "symbols": ["BTCUSDT", "ETHUSDT"],
                    "timeframe": "15m",
                    "start": "2023-01-01",
                    "end": "2023-05-01",
                },
            },
            settings=settings,
        )
    with pytest.raises(ConfigError, match=r"common timeline of 3 symbols has \d+ bars"):
        run(_config(tmp_path / "c", symbols=list(CRYPTO), end="2023-03-01"), settings=settings)


@pytest.mark.slow
def test_panel_run_reports_per_symbol_and_pooled_serves_and_backtests(
    panel_store, home: Path, tmp_path: Path
) -> None:
    settings = Settings(home=home, tracking=False)
    result = run(_config(tmp_path / "run", symbols=list(CRYPTO)), settings=settings)

    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert predictions.index.names == ["timestamp", "symbol"]
    assert set(predictions.index.get_level_values("symbol")) == set(CRYPTO)
    per_symbol = predictions.groupby(level="symbol").size()
    assert (per_symbol == 2 * 400).all()  # every symbol holds every test bar
    summary = result.summary
    for symbol in ("pooled", *CRYPTO):
        rows = summary[summary["symbol"] == symbol]
        assert {"lgbm", "naive_volatility", "naive_mean", "naive_prior"} <= set(rows["model"])
    pooled = summary[(summary["symbol"] == "pooled") & (summary["target"] == "max_high")]
    assert set(pooled["n"]) == {3 * 2 * 400}
    assert set(result.folds["symbol"]) == {"pooled", *CRYPTO}
    # What serves each target is tested on the pooled rows, the HAC lag spanning the horizon's
    # bars of every symbol; the final predictor serves exactly that.
    assert set(result.choices) == {"direction_6", "max_high_6", "min_low_6"}
    for choice in result.choices.values():
        assert all(c.result is None or c.result.lag >= 6 * len(CRYPTO) for c in choice.comparisons)

    # The pipeline serves each symbol; its served last bar equals the final models on the
    # features validated over the whole history.
    final = load_run_pipeline(tmp_path / "run").predictor
    assert final.served_by("intraday") == {
        kind: result.choices[f"{kind}_6"].source for kind in ("direction", "max_high", "min_low")
    }
    feature_set = load_feature_set(str(tmp_path / "run" / "feature_set.yaml"))
    with open_default_store(settings) as store:
        sample = read_series(store, CRYPTO[0], "1h", pd.Timestamp("2023-04-01", tz="UTC"))
    columns = list(build_features(sample, feature_set).columns)  # what prepare() fits on
    pipeline = PipelineModel(
        symbol=CRYPTO[0],
        timeframe="1h",
        horizons={"intraday": 6},
        feature_set=feature_set,
        label_spec={},
        predictor=final,
        feature_columns=columns,
        warmup_bars=warmup_bars(feature_set, "1h"),
        metadata={"feature_contract": FEATURE_CONTRACT},
        symbols=CRYPTO,
    )
    host = ModelHost(settings)
    host.served = {"panel": Served("panel", 1, "champion", pipeline, datetime.now(UTC))}
    with open_default_store(settings) as store:
        for symbol in CRYPTO:
            candles = read_series(store, symbol, "1h", pd.Timestamp("2023-01-01", tz="UTC"))
            candles = candles.loc[:"2023-06-01"]
            served = host.find(symbol, "1h")
            assert served.pipeline.symbol == symbol and host.find(symbol, "1h") is served
            last = served.pipeline.predict_last(candles)
            features = build_features(candles, feature_set)
            expected = final.predict(
                features[pipeline.feature_columns].iloc[-1:], candles["close"].iloc[-1:]
            )
            for column, value in expected.iloc[0].items():
                assert last.values[str(column)] == pytest.approx(value, rel=1e-9, abs=1e-12)
    with pytest.raises(NotFoundError, match="no model serves symbol 'SOLUSDT'"):
        host.find("SOLUSDT", "1h")
    with pytest.raises(ConfigError, match="predicts BTCUSDT, ETHUSDT, XRPUSDT 1h"):
        host.find("SOLUSDT", "1h", model="panel")

    # The panel's backtest: one kernel call; each symbol's account as its own backtest.
    done = backtest(
        {
            "run": str(tmp_path / "run"),
            "output": str(tmp_path / "bt"),
            "strategy": {"kind": "maxmin"},
        },
        settings=settings,
    )
    table = pd.read_csv(tmp_path / "bt" / "metrics_by_symbol.csv", index_col="symbol")
    assert set(table.index) == {*CRYPTO, "portfolio"}
    assert set(done.trades["asset"]) <= set(CRYPTO) and len(done.trades) > 0
    with open_default_store(settings) as store:
        symbol = "ETHUSDT"
        own = predictions.xs(symbol, level="symbol")
        candles = read_series(store, symbol, "1h", *traded_span(own.index, "1h", 6))
    # The backtest reads the predicted span and a last trade's horizon, not the store's tail.
    assert candles.index[-1] == own.index[-1] + pd.Timedelta(hours=7)
    meta = json.loads((tmp_path / "bt" / "metrics.json").read_text())["meta"]
    alone = run_backtest(
        candles,
        strategy_signals("maxmin", candles, own, horizon=6, model="lgbm"),
        fee_bps=meta["costs"]["fee_bps"],
        slippage_bps=meta["costs"]["slippage_bps"],
        risk_fraction=meta["sizing"]["risk_fraction"],
        initial_equity=meta["sizing"]["initial_equity"],
    )
    mine = done.trades[done.trades["asset"] == symbol].drop(columns="asset").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, alone.trades.reset_index(drop=True), check_dtype=False)
