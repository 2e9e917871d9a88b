"""Indicators TA-Lib lacks (placeholder until its module lands)."""
