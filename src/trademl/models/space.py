"""Hyperparameter search spaces, declared by each model kind (``BaseModel.search_space``).

A space maps a hyperparameter name to a :class:`Dimension`; :mod:`trademl.tuning` asks an
Optuna trial for a value of each. The classes live here, beside the models, so that a kind
declares its space without importing the tuner (nor Optuna).

>>> space = {"learning_rate": log_uniform(0.01, 0.3), "max_depth": integer(2, 8)}
>>> space["max_depth"]
Dimension(type='int', low=2, high=8, log=False, choices=())
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter.

    Parameters
    ----------
    type : {"float", "int", "categorical"}
        How Optuna samples it.
    low, high : float
        Bounds of a float or int dimension (inclusive).
    log : bool
        Sample on a log scale.
    choices : tuple
        The values of a categorical dimension.
    """

    type: Literal["float", "int", "categorical"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Ask ``trial`` for a value of this dimension under ``name``.

        Parameters
        ----------
        trial : optuna.Trial
            The running trial.
        name : str
            The parameter name recorded in the study.

        Returns
        -------
        Any
            The sampled value.
        """
        if self.type == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(name, list(self.choices))


SearchSpace = Mapping[str, Dimension]


def uniform(low: float, high: float) -> Dimension:
    """A float sampled uniformly in ``[low, high]``."""
    return Dimension("float", low, high)


def log_uniform(low: float, high: float) -> Dimension:
    """A float sampled uniformly in ``[log low, log high]``."""
    return Dimension("float", low, high, log=True)


def integer(low: int, high: int, *, log: bool = False) -> Dimension:
    """An integer in ``[low, high]``, on a log scale with ``log``."""
    return Dimension("int", low, high, log=log)


def choice(*values: Any) -> Dimension:
    """One of ``values``."""
    return Dimension("categorical", choices=tuple(values))


__all__ = ["Dimension", "SearchSpace", "choice", "integer", "log_uniform", "uniform"]
