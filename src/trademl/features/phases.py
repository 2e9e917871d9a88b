"""Accumulation / manipulation / distribution phases (placeholder until its module lands)."""
