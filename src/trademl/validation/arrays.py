"""Input checking shared by the validation statistics: numbers in, or a clear error out."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trademl.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


def float_vector(name: str, values: npt.ArrayLike, *, scalar: bool = False) -> FloatArray:
    """``values`` as a 1-D float64 array, or a :class:`ConfigError` naming ``name``.

    Parameters
    ----------
    name : str
        What the message calls the argument.
    values : array-like
        The values.
    scalar : bool
        Accept a single number as an array of one.

    Returns
    -------
    numpy.ndarray
        The values as float64 (NaN kept).

    >>> float_vector("y", [1, 2]).dtype
    dtype('float64')
    >>> float_vector("y", [[1, 2]])
    Traceback (most recent call last):
    trademl.errors.ConfigError: y must be 1-D, got an array of shape (1, 2)
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be numeric, got {type(values).__name__}: {exc}") from exc
    if scalar and array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ConfigError(f"{name} must be 1-D, got an array of shape {array.shape}")
    return array


__all__ = ["float_vector"]
