"""Model kinds under one scikit-learn-compatible protocol, their intervals and the max/min predictor."""

"""Model kinds (scikit-learn estimators), the table that names them, and their wrappers."""
