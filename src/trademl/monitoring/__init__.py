"""Monitoring a served model: its logged predictions scored as labels mature, alarms with a
calibrated false-alarm rate, and drift as diagnosis.

- ``predictions`` and ``writer``: the prediction log (every served prediction, group-committed
  before the answer is sent) and its scoring against the labels the store's candles mature.
- ``profile``: what a model is watched against, saved with its pipeline at training (per
  target the baseline, the CUSUM threshold calibrated on the run's out-of-sample loss
  differentials, reference sketches of features and forecasts).
- ``alarms``: the CUSUM, its block-bootstrap calibration to an in-control average run length,
  and the coverage monitor.
- ``reference`` and ``drift``: quantile sketches and per-column drift with sample-size- and
  autocorrelation-aware p-values, Benjamini–Hochberg across columns.
- ``assess``: one report over a window; ``html``: that report as a self-contained page.
- ``schedule``: cron strings, the in-process scheduler, Celery beat entries.

The registry-facing parts (monitoring a registered champion, a retraining cycle through the
promotion gate, the policy that starts cycles) are in :mod:`trademl.tracking.watch`,
:mod:`trademl.tracking.retraining` and :mod:`trademl.tracking.policy`.
"""
