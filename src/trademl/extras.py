"""Optional dependencies: which extra of the package brings which library.

The core (data, features, training, backtest, tuning) installs with none of them; an outer
layer checks for its library before it imports it, so a missing one reads as an instruction.

>>> require("json", "tracking", "this example")
>>> require("no_such_module_here", "tracking", "recording")
Traceback (most recent call last):
...
trademl.errors.MissingExtraError: recording needs no_such_module_here, which is not installed: pip install 'trademl[tracking]'
"""

from __future__ import annotations

import importlib.util

from trademl.errors import MissingExtraError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> None:
    """Raise when ``module`` cannot be imported, naming the extra that installs it.

    Parameters
    ----------
    module : str
        The top-level import name (``mlflow``, ``fastapi``...).
    extra : str
        The package extra that installs it (``tracking``, ``serve``...).
    purpose : str
        What needs it, as the message's subject.

    Raises
    ------
    MissingExtraError
        When the module is not installed.
    """
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{purpose} needs {module}, which is not installed: pip install 'trademl[{extra}]'"
        )
