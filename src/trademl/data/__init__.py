"""Candles in: the Candles contract, sources, stores, resampling and gaps."""
