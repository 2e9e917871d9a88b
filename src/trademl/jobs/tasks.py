"""What a job can run: a table of named tasks, each a function ``(payload, report) -> result``.

Built in: ``train`` and ``backtest`` (the library's two long operations), and three cheap
diagnostic tasks, ``echo``, ``sleep`` and ``fail``, that prove a queue and its workers work
without training anything. A task receives ``report(progress, message)``; each call records
progress and is where a cancelled job stops (it raises :class:`~trademl.jobs.JobCancelled`).

>>> sorted(JOB_KINDS)
['backtest', 'echo', 'fail', 'retrain', 'sleep', 'train', 'watch']
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trademl.config import get_settings
from trademl.errors import ConfigError
from trademl.json_values import backtest_payload, jsonable
from trademl.paths import PathPolicy, resolve_backtest_paths, resolve_run_paths
from trademl.plugins import PluginTable


class Report(Protocol):
    """Records a running job's progress (0 to 1) and what it is doing; raises
    :class:`~trademl.jobs.JobCancelled` when the job was cancelled."""

    def __call__(self, progress: float, message: str = "") -> None:
        """Report ``progress`` (0 to 1) and what the job is doing."""


TaskFunction = Callable[[dict[str, Any], Report], dict[str, Any]]
PayloadCheck = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class JobTask:
    """A registered task: ``run`` does the work, ``check`` refuses a bad payload at submit."""

    run: TaskFunction
    check: PayloadCheck | None = None


JOB_KINDS: PluginTable[JobTask] = PluginTable("job kind")


def task(kind: str, *, check: PayloadCheck | None = None) -> Callable[[TaskFunction], TaskFunction]:
    """Register the decorated function as the task ``kind``.

    Workers run tasks by name, so a task must be registered on import of a module that the
    worker imports too (this one, for the built-in tasks).
    """

    def decorate(function: TaskFunction) -> TaskFunction:
        JOB_KINDS.register(kind)(JobTask(run=function, check=check))
        return function

    return decorate


# -- diagnostic tasks ---------------------------------------------------------------------------


def _number(payload: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"payload {key!r}: expected a number in [{low}, {high}], got {value!r}")
    return float(value)


def _check_sleep(payload: dict[str, Any]) -> None:
    _number(payload, "seconds", 1.0, 0.0, 3600.0)
    _number(payload, "steps", 10, 1, 10_000)


@task("echo")
def echo(payload: dict[str, Any], report: Report) -> dict[str, Any]:
    """Return the payload: proves that a worker picks jobs up."""
    report(0.5, "echoing")
    return {"payload": payload}


@task("sleep", check=_check_sleep)
def sleep(payload: dict[str, Any], report: Report) -> dict[str, Any]:
    """Sleep ``seconds`` (default 1) in ``steps`` (default 10) steps, reporting progress."""
    seconds = _number(payload, "seconds", 1.0, 0.0, 3600.0)
    steps = int(_number(payload, "steps", 10, 1, 10_000))
    report(0.0, f"sleeping {seconds:g}s")
    for step in range(steps):
        time.sleep(seconds / steps)
        report((step + 1) / steps, f"slept {(step + 1) * seconds / steps:.2f}s of {seconds:g}s")
    return {"slept_s": seconds}


@task("fail")
def fail(payload: dict[str, Any], report: Report) -> dict[str, Any]:
    """Fail with ``message``: shows what a failed job looks like."""
    report(0.5, "about to fail")
    raise RuntimeError(str(payload.get("message", "this job was asked to fail")))


# -- the library's long operations ---------------------------------------------------------


def _config(payload: dict[str, Any]) -> dict[str, Any]:
    config = payload.get("config")
    # A job never names its config by path: the server would read whatever file it names
    # (and quote it in the error). The CLI reads a local file and submits its mapping.
    if not isinstance(config, dict):
        raise ConfigError(
            "payload 'config': expected a config mapping (the YAML file's content), "
            f"got {type(config).__name__}"
        )
    unknown = set(payload) - {"config"}
    if unknown:
        raise ConfigError(f"payload: unknown keys {sorted(unknown)}; expected only 'config'")
    return config


@dataclass(frozen=True)
class JobContext:
    """What a task's checks and runs need from the queue's settings (which may differ from
    the process settings' in a test or a tool): its ``TRADEML_HOME`` and its bounds."""

    home: Path | None = None
    backtest_max_grid: int = 256


_context: ContextVar[JobContext | None] = ContextVar("trademl_job_context", default=None)


def _current() -> JobContext:
    return _context.get() or JobContext()


@contextlib.contextmanager
def job_context(context: JobContext) -> Iterator[None]:
    """Within the block, tasks resolve paths under ``context.home`` and apply its bounds."""
    token = _context.set(context)
    try:
        yield
    finally:
        _context.reset(token)


def service_paths() -> PathPolicy:
    """Where a job's config paths may point: ``runs/`` and ``configs/`` under the queue's
    ``TRADEML_HOME`` (see :func:`job_context`), else the process settings'."""
    from trademl.config import get_settings

    return PathPolicy.service(_current().home or get_settings().home)


def _check_train(payload: dict[str, Any]) -> None:
    from trademl.config import load_run_config

    resolve_run_paths(load_run_config(_config(payload)), service_paths())


def _check_backtest(payload: dict[str, Any]) -> None:
    from trademl.backtest.config import load_backtest_config

    cfg = load_backtest_config(_config(payload))
    resolve_backtest_paths(cfg, service_paths())
    combinations = math.prod(len(values) for values in cfg.grid.values()) if cfg.grid else 0
    bound = _current().backtest_max_grid
    if combinations > bound:
        sizes = " x ".join(str(len(values)) for values in cfg.grid.values())
        raise ConfigError(
            f"grid: {sizes} = {combinations:,} combinations; a backtest job may try at most "
            f"{bound:,} (TRADEML_BACKTEST_MAX_GRID)"
        )


@task("train", check=_check_train)
def train(payload: dict[str, Any], report: Report) -> dict[str, Any]:
    """``workflow.run(payload["config"])``: a training run; returns where it was written."""
    from trademl.tracking.recorders import recorder_for
    from trademl.workflow import run

    # Progress per validation stage; a cancel request stops the run at the next stage.
    result = run(
        _config(payload),
        progress=report,
        paths=service_paths(),
        recorder=recorder_for(get_settings()),
    )
    out: dict[str, Any] = {
        "output": str(result.output),
        "seconds": result.seconds,
        "data_hash": result.data_hash,
    }
    # Tracking adds MLflow identifiers to the run result; pass on whichever it has.
    for name in ("run_id", "model_name", "model_version"):
        if getattr(result, name, None) is not None:
            out[name] = getattr(result, name)
    return jsonable(out)  # type: ignore[no-any-return]


@task("backtest", check=_check_backtest)
def backtest(payload: dict[str, Any], report: Report) -> dict[str, Any]:
    """``backtest.runner.backtest(payload["config"])``; returns its scalar metrics."""
    from trademl.backtest.runner import backtest as run_backtest
    from trademl.tracking.recorders import recorder_for

    report(0.0, "backtesting")
    result = run_backtest(
        _config(payload), paths=service_paths(), recorder=recorder_for(get_settings())
    )
    return backtest_payload(result)


_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_CYCLE_TRIGGERS = ("manual", "scheduled", "performance", "drift")


def _check_model_payload(payload: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise ConfigError(
            f"payload: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}"
        )
    name = payload.get("name")
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise ConfigError(
            "payload.name: a registered model name (1 to 256 letters, digits, '_', '.', '-')"
        )


def _check_retrain(payload: dict[str, Any]) -> None:
    _check_model_payload(payload, {"name", "trigger", "window"})
    trigger = payload.get("trigger", "manual")
    if trigger not in _CYCLE_TRIGGERS:
        raise ConfigError(
            f"payload.trigger {trigger!r}: expected one of {', '.join(_CYCLE_TRIGGERS)}"
        )
    window = payload.get("window")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or not 20 <= window <= 100_000
    ):
        raise ConfigError(f"payload.window {window!r}: expected an integer from 20 to 100000")


@task("retrain", check=_check_retrain)
def retrain(payload: dict[str, Any], report: Report) -> dict[str, Any]:
    """One retraining cycle of the registered model ``payload["name"]``."""
    from trademl.tracking.retraining import retrain as run_cycle

    report(0.0, "retraining cycle")
    cycle = run_cycle(
        payload["name"],
        trigger=payload.get("trigger", "manual"),
        window=payload.get("window"),
        settings=get_settings(),
    )
    return jsonable(cycle.as_dict())  # type: ignore[no-any-return]


@task("watch", check=lambda payload: _check_model_payload(payload, {"name"}))
def watch(payload: dict[str, Any], report: Report) -> dict[str, Any]:
    """Monitor the champion of ``payload["name"]`` once and act as its policy says."""
    from trademl.tracking.policy import check

    report(0.0, "monitoring")
    return jsonable(check(payload["name"], settings=get_settings()))  # type: ignore[no-any-return]
