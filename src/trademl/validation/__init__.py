"""Honest out-of-sample numbers: purged splitters, metrics with intervals, tests and overfitting statistics."""
