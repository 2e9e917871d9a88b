"""Causal features, indicators and labels.

>>> from trademl.features import build_features, load_feature_set  # doctest: +SKIP
>>> features = build_features(candles, "standard")  # doctest: +SKIP
"""

from trademl.features.cache import FeatureCache
from trademl.features.engine import build_features, last_bar_features, warmup_bars
from trademl.features.horizons import HORIZON_NAMES, resolve_horizon
from trademl.features.indicators import Indicator, all_indicators, get_indicator
from trademl.features.labels import LabelSpec, build_labels, parse_label_specs
from trademl.features.sets import FeatureSet, FeatureSpec, load_feature_set, preset_names

__all__ = [
    "HORIZON_NAMES",
    "FeatureCache",
    "FeatureSet",
    "FeatureSpec",
    "Indicator",
    "LabelSpec",
    "all_indicators",
    "build_features",
    "build_labels",
    "get_indicator",
    "last_bar_features",
    "load_feature_set",
    "parse_label_specs",
    "preset_names",
    "resolve_horizon",
    "warmup_bars",
]
