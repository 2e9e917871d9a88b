"""Feature sets: named, versioned lists of indicators with parameters and timeframes, declared
in YAML and validated before any data is touched.

.. code-block:: yaml

    name: my_set
    version: 1
    description: what it is for
    features:
      - indicator: rsi
        params: {timeperiod: 14}
      - indicator: atr
        params: {timeperiod: 14}
        timeframe: x24      # 24 times the base timeframe (or absolute: 1d)

``timeframe`` is empty (the base timeframe), absolute (``4h``), or relative to the base
(``x4``: the standard timeframe nearest to four times the base that the base divides).

``relative`` makes a feature in price units scale-free, against the close of the bars it is
computed on: ``log_close`` for price levels (an SMA, Bollinger bands: ``ln(level / close)``,
columns suffixed ``_vs_close``) and ``close`` for price differences (MACD, momentum, ATR:
``value / close``, columns suffixed ``_per_close``). Trees split on price levels memorise
regimes; ratios carry over to prices never seen.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError
from trademl.features.indicators import Indicator, get_indicator

RELATIVE_SUFFIX = {"log_close": "_vs_close", "close": "_per_close"}
# Timeframes a relative `xN` may land on (those exchanges and our resampler know).
STANDARD_TIMEFRAMES = tuple(
    Timeframe.parse(t)
    for t in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
)


class FeatureSpec(BaseModel):
    """One indicator with its parameters, optionally on a higher timeframe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    indicator: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeframe: str | None = None
    relative: Literal["log_close", "close"] | None = None

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str | None) -> str | None:
        if value is None or value.strip() in ("", "base"):
            return None
        value = value.strip()
        if value.startswith("x"):
            try:
                factor = float(value[1:])
            except ValueError:
                raise ValueError(
                    f"relative timeframe {value!r} must be x<number>, e.g. x4"
                ) from None
            if factor <= 1:
                raise ValueError(f"relative timeframe {value!r} must be above x1")
            return value
        return Timeframe.parse(value).name

    def resolved(self) -> tuple[Indicator, dict[str, Any]]:
        """The indicator and its checked parameters (errors list the valid names)."""
        indicator = get_indicator(self.indicator)
        return indicator, indicator.resolve(self.params)


class FeatureSet(BaseModel):
    """A named, versioned list of features.

    Examples
    --------
    >>> fs = FeatureSet(name="tiny", version=1, features=[{"indicator": "rsi"}])
    >>> fs.columns("1h")
    ['rsi_14']
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    version: int = Field(ge=1)
    description: str = ""
    features: tuple[FeatureSpec, ...] = Field(min_length=1)

    def model_post_init(self, context: Any, /) -> None:
        """Resolve every feature now, so a typo fails before any data loads."""
        for position, spec in enumerate(self.features, start=1):
            try:
                indicator, _ = spec.resolved()
            except ConfigError as error:
                raise ConfigError(
                    f"feature set {self.name!r}, feature {position}: {error}"
                ) from None
            refusal = indicator.refusal()
            if refusal:
                raise ConfigError(f"feature set {self.name!r}, feature {position}: {refusal}")

    def higher_timeframe(self, spec: FeatureSpec, base: str | Timeframe) -> Timeframe | None:
        """The timeframe ``spec`` runs on for ``base`` (None when it is the base itself)."""
        return resolve_timeframe(spec.timeframe, base)

    def columns(self, base: str | Timeframe) -> list[str]:
        """Output column names for a base timeframe, in order; duplicates are an error."""
        names: list[str] = []
        for spec in self.features:
            indicator, params = spec.resolved()
            tf = self.higher_timeframe(spec, base)
            prefix = f"tf{tf.name}_" if tf else ""
            suffix = RELATIVE_SUFFIX[spec.relative] if spec.relative else ""
            names.extend(prefix + column + suffix for column in indicator.columns(params))
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(
                f"feature set {self.name!r} produces duplicate columns: {', '.join(duplicated)}"
            )
        return names

    def fingerprint(self) -> str:
        """A hash of the definition (what the cache keys on beside name and version)."""
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def resolve_timeframe(value: str | None, base: str | Timeframe) -> Timeframe | None:
    """``x4`` → the standard timeframe nearest 4 × base that base divides; ``4h`` → 4h."""
    if value is None:
        return None
    base_tf = Timeframe.parse(base)
    if value.startswith("x"):
        target = float(value[1:]) * base_tf.seconds
        candidates = [t for t in STANDARD_TIMEFRAMES if t > base_tf and base_tf.divides(t)]
        if not candidates:
            raise ConfigError(f"no standard timeframe above {base_tf.name} for {value}")
        return min(candidates, key=lambda t: abs(math.log(t.seconds / target)))
    tf = Timeframe.parse(value)
    if tf <= base_tf or not base_tf.divides(tf):
        raise ConfigError(
            f"feature timeframe {tf.name} must be a multiple of the base timeframe {base_tf.name}"
        )
    return tf


def preset_names() -> list[str]:
    """The feature sets shipped with trademl."""
    folder = resources.files("trademl.features") / "presets"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_feature_set(source: str | Path | FeatureSet | dict[str, Any]) -> FeatureSet:
    """A FeatureSet from a preset name, a YAML path, a mapping, or itself.

    Raises
    ------
    ConfigError
        Unknown preset, unreadable YAML, unknown keys, unknown indicator or parameter.
    """
    if isinstance(source, FeatureSet):
        return source
    if isinstance(source, dict):
        return _parse(source, "the given mapping")
    text_source = str(source)
    path = Path(text_source)
    if text_source in preset_names():
        resource = resources.files("trademl.features") / "presets" / f"{text_source}.yaml"
        return _parse(_read_yaml(resource.read_text(), text_source), f"preset {text_source}")
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise ConfigError(f"feature set file {path} does not exist")
        return _parse(_read_yaml(path.read_text(), str(path)), str(path))
    raise ConfigError(
        f"feature set {text_source!r} is neither a preset ({', '.join(preset_names())}) nor a .yaml file"
    )


def _read_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML: {error}") from None


def _parse(data: Any, where: str) -> FeatureSet:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a feature set is a mapping with name, version and features")
    try:
        return FeatureSet.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'set'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None
