"""Alpha158 (placeholder until its module lands)."""
