"""The monitoring report as HTML, written from a real report: a champion trained on BTCUSDT 1h
and assessed on the predictions it would have served in the weeks after."""

from __future__ import annotations

import dataclasses
import html
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs
from tests.support.monitoring import monitored_champion

from trademl.monitoring.assess import Assessment
from trademl.monitoring.html import write_report
from trademl.pipeline import PipelineModel
from trademl.tracking.watch import monitor, store_candles

MODEL = "BTCUSDT_1h_html_report_test"


@dataclass
class Case:
    report: Assessment
    pipeline: PipelineModel
    features: pd.DataFrame  # the window's features


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Case:
    settings = monitored_champion(tmp_path_factory.mktemp("html_report"), data_dir, MODEL)
    report, _, pipeline = monitor(MODEL, settings=settings)
    candles = store_candles(pipeline, settings)
    window = candles.loc[: report.end].iloc[-(400 + pipeline.warmup_bars) :]
    return Case(report, pipeline, pipeline.features(window))


@pytest.fixture(scope="module")
def page(case: Case, tmp_path_factory: pytest.TempPathFactory) -> str:
    assert case.pipeline.monitoring is not None
    path = tmp_path_factory.mktemp("page") / "monitoring.html"
    assert write_report(case.report, case.pipeline.monitoring, case.features, path) == path
    return path.read_text(encoding="utf-8")


def _without_scripts(page: str) -> str:
    return re.sub(r"<script\b.*?</script>", "", page, flags=re.S)


def test_the_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    bundle = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    inline = page.count(bundle) == 1  # the whole bundle inline, once (no print of 4 MB)
    assert inline
    assert page.count("Plotly.newPlot(") == 3  # two targets and the distributions
    assert not re.search(r"<script[^>]*\bsrc=", page)
    rest = page.replace(bundle, "")
    fetched = re.findall(r"(?:src|href)=[\"']?https?:", rest) + re.findall(r"<link\b", rest)
    assert fetched == []


def test_summary_names_the_window_the_mature_share_and_every_alarm(case: Case, page: str) -> None:
    report = case.report
    text = _without_scripts(page)
    assert f"{report.model} version {report.version}" in text
    assert f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M}" in text
    assert f"mature share {report.mature_share:.1%}" in text
    # In this case the min-low target's CUSUM crosses its threshold.
    assert any(a.startswith("min_low_6: the loss of") for a in report.alarms)
    for alarm in report.alarms:
        assert html.escape(alarm) in text
    # The summary comes before the per-target sections.
    assert text.index("Alarms") < text.index(f"<h2>{next(iter(report.targets))}</h2>")


def test_each_target_has_its_charts_and_their_numbers_as_a_table(case: Case, page: str) -> None:
    text = _without_scripts(page)
    assert case.report.targets
    for index, target in enumerate(case.report.targets.values()):
        assert f"<h2>{target.name}</h2>" in text
        assert f'id="chart-target-{index}"' in page
        # The sampled table ends at the window's last mature bar: the rolling means of the
        # last 50 per-bar losses and the CUSUM now.
        last = target.losses.index[-1]
        section = text[text.index(f"<h2>{target.name}</h2>") :]
        row = section[section.index(f'<td class="text">{last:%Y-%m-%d %H:%M}</td>') :]
        row = row[: row.index("</tr>")]
        cells = re.findall(r"<td>([^<]*)</td>", row)
        served = target.losses["served"].iloc[-50:].mean()
        baseline = target.losses["baseline"].iloc[-50:].mean()
        assert cells[:3] == [f"{served:.4g}", f"{baseline:.4g}", f"{target.last_statistic:.4g}"]
        if target.alarm_at is not None:
            assert target.threshold is not None
            assert f"alarm {target.alarm_at:%Y-%m-%d %H:%M}" in page  # the marker's name
            assert f'<tr class="alarm"><td class="text">{target.alarm_at:%Y-%m-%d %H:%M}' in (text)
        if target.coverage is not None:
            assert f"nominal {target.nominal_coverage:.2f}" in page  # the nominal line


def test_per_bar_losses_are_the_realised_losses_the_report_averages(case: Case) -> None:
    for target in case.report.targets.values():
        losses = target.losses
        assert list(losses.columns) == ["served", "baseline"]
        assert len(losses) == target.rows > 100
        assert losses.index.is_monotonic_increasing and losses.notna().all().all()
        assert losses["served"].mean() == pytest.approx(target.model_loss, rel=1e-12)
        assert losses["baseline"].mean() == pytest.approx(target.baseline_loss, rel=1e-12)
        # The CUSUM runs over the same bars, on their differences.
        assert list(losses.index) == list(target.statistic.index)
        assert (losses["served"] >= 0).all() and (losses["baseline"] >= 0).all()


def test_the_drift_table_and_the_most_drifted_distributions(case: Case, page: str) -> None:
    drift = case.report.feature_drift
    assert drift is not None and case.pipeline.monitoring is not None
    text = _without_scripts(page)
    table = text[text.index("<h2>Feature drift</h2>") :]
    table = table[: table.index("</table>")]
    assert table.count("<tr") == len(drift) + 1
    for column in drift.table["column"]:
        assert f'<td class="text">{column}</td>' in table
    top = [str(c) for c in drift.table["column"].head(4)]
    assert 'id="chart-distributions"' in page
    quantiles = text[text.index("Distributions of the most drifted features") :]
    for name in top:
        sketch = case.pipeline.monitoring.features.columns[name]
        median = float(sketch.quantile(np.array([0.5]))[0])
        window_median = float(np.median(case.features[name].dropna()))
        assert f'<td class="text">{name}</td><td class="text">reference</td>' in quantiles
        assert f"<td>{median:.4g}</td>" in quantiles
        assert f"<td>{window_median:.4g}</td>" in quantiles
    fifth = str(drift.table["column"].iloc[4])
    assert f'<td class="text">{fifth}</td><td class="text">reference</td>' not in quantiles


def test_without_window_features_the_reference_is_drawn_alone(case: Case, tmp_path: Path) -> None:
    assert case.pipeline.monitoring is not None
    path = write_report(case.report, case.pipeline.monitoring, None, tmp_path / "r.html")
    text = path.read_text(encoding="utf-8")
    assert "features were not given" in text
    assert '"name":"window"' not in text and '"name":"training reference"' in text


def test_rewriting_gives_the_same_bytes(case: Case, page: str, tmp_path: Path) -> None:
    assert case.pipeline.monitoring is not None
    again = write_report(case.report, case.pipeline.monitoring, case.features, tmp_path / "b.html")
    assert again.read_text(encoding="utf-8") == page


def test_bad_arguments_are_refused(case: Case, tmp_path: Path) -> None:
    assert case.pipeline.monitoring is not None
    with pytest.raises(ValueError, match="rolling_bars must be at least 1, got 0"):
        write_report(
            case.report, case.pipeline.monitoring, None, tmp_path / "x.html", rolling_bars=0
        )
    assert not (tmp_path / "x.html").exists()


def test_a_coverage_alarm_is_marked_on_its_chart_and_in_its_table(
    case: Case, tmp_path: Path
) -> None:
    assert case.pipeline.monitoring is not None
    name, target = next((n, t) for n, t in case.report.targets.items() if t.coverage is not None)
    assert target.coverage is not None
    at = target.coverage.index[len(target.coverage) // 3]  # a bar no sampled row falls on
    alarmed = dataclasses.replace(target, coverage_alarm_at=at)
    report = dataclasses.replace(case.report, targets={**case.report.targets, name: alarmed})
    path = write_report(report, case.pipeline.monitoring, None, tmp_path / "c.html")
    text = path.read_text(encoding="utf-8")
    assert f'"name":"coverage alarm {at:%Y-%m-%d %H:%M}"' in text
    assert f'<tr class="alarm"><td class="text">{at:%Y-%m-%d %H:%M}</td>' in text
    assert html.escape(f"{name}: interval coverage fell below nominal") in text


def test_an_unwatched_target_is_charted_without_a_detector(case: Case, tmp_path: Path) -> None:
    assert case.pipeline.monitoring is not None
    name, target = next(iter(case.report.targets.items()))
    unwatched = dataclasses.replace(
        target,
        threshold=None,
        statistic=pd.Series(dtype=np.float64),
        alarm_at=None,
        coverage=None,
        note="not watched: no calibration",
    )
    report = dataclasses.replace(case.report, targets={name: unwatched})
    path = write_report(report, case.pipeline.monitoring, None, tmp_path / "u.html")
    text = _without_scripts(path.read_text(encoding="utf-8"))
    section = text[text.index(f"<h2>{name}</h2>") : text.index("<h2>Feature drift</h2>")]
    assert "not watched: no calibration" in section and "no CUSUM threshold" in section
    header = section[section.index("<th>bar</th>") : section.index("</tr>")]
    assert header.count("<th>") == 3  # the bar and the two rolling losses
    assert 'class="alarm"' not in section
