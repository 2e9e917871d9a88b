"""Backtests: the numba engine, strategies from predictions, metrics and reports."""
