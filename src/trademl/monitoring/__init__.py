"""Monitoring a served model: drift of its inputs and outputs, alarms on its realised loss.

``drift`` compares a recent window with reference statistics saved at training, with
sample-size-aware p-values and Benjamini–Hochberg control across columns.
"""
