"""Wall-time budgets that long fits honour: a search stops its trials at the budget, not after.

A budget is a deadline held in a context variable, so that code deep inside a fit (a boosting
round, a training batch) can check it without every model taking a new parameter. Outside a
:func:`time_budget` block :func:`check_budget` does nothing.

>>> import time
>>> with time_budget(60.0):
...     check_budget("a fold")  # well within the minute: returns
>>> with time_budget(0.0):
...     try:
...         check_budget("a fold")
...     except BudgetExhaustedError as error:
...         print(error)
a fold stopped at the time budget
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from trademl.errors import TradeMLError

_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar(
    "trademl_deadline", default=math.inf
)


class BudgetExhaustedError(TradeMLError):
    """The wall-time budget of the enclosing :func:`time_budget` ran out."""

    exit_code = 12


@contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Hold a deadline ``seconds`` from now (None: no deadline) for the enclosed code.

    A nested budget never extends the enclosing one: the earlier deadline holds.

    Parameters
    ----------
    seconds : float or None
        Seconds from now; None leaves the current deadline.
    """
    if seconds is None:
        yield
        return
    deadline = min(_DEADLINE.get(), time.monotonic() + max(0.0, seconds))
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left() -> float:
    """Seconds until the current deadline (``inf`` without one, negative once it passed)."""
    return _DEADLINE.get() - time.monotonic()


def check_budget(what: str = "the work") -> None:
    """Raise :class:`BudgetExhaustedError` when the current deadline has passed.

    Parameters
    ----------
    what : str
        Names what is stopped, for the message.
    """
    if time_left() <= 0:
        raise BudgetExhaustedError(f"{what} stopped at the time budget")


def lightgbm_callback() -> object:
    """A LightGBM callback that stops training (by raising) once the deadline passes."""

    def callback(env: object) -> None:
        check_budget("LightGBM training")

    callback.order = 100  # type: ignore[attr-defined]  # after early stopping's own callback
    return callback


__all__ = [
    "BudgetExhaustedError",
    "check_budget",
    "lightgbm_callback",
    "time_budget",
    "time_left",
]
