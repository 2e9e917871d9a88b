"""The one training loop shared by the deep kinds, and the windowed forward pass.

Scaling
    Features are standardised with the mean and standard deviation of the rows the weights
    are fitted on (the head, see below); a constant or all-missing column gets mean 0 and scale
    1. After scaling, a missing feature value (NaN, e.g. an indicator's warm-up) becomes 0,
    the fitting rows' mean: networks cannot route NaN the way trees do. Regression and quantile
    targets are standardised the same way (pinball loss is equivariant under that map, so the
    fitted quantile is simply mapped back); classification targets stay 0/1.
Windows
    The sample for row ``t`` is the window of rows ``t - seq_len + 1 .. t`` of the array given,
    and its target is ``y[t]``. Windows are cut only from the rows handed to the loop, so when
    a walk-forward runner passes one fold's rows a window never crosses the fold boundary; the
    first ``seq_len - 1`` rows have no full window and get no sample (and no prediction).
Early stopping
    As for the boosted kinds: with ``patience`` set and no explicit validation set, the rows
    are split in time order into a *head* (the weights learn from its windows) and a *tail*
    (the last ``validation_fraction`` of the rows), with ``validation_gap`` rows dropped
    between them (set it to the label horizon). The tail's windows may reach back into earlier
    rows for their *features*, which are known at the tail row, but only the tail's targets are
    scored. Training stops after ``patience`` epochs without a lower tail loss, and the weights
    of the best epoch are restored. ``patience=None`` trains every epoch on every row.
Optimisation
    AdamW (decoupled weight decay), gradient norm clipped at 1.0, and a ReduceLROnPlateau
    schedule that halves the learning rate after one epoch without improvement of the
    validation loss (the training loss when there is no validation): it needs no total step
    count, which early stopping leaves unknown. Losses: mean squared error (regression),
    binary cross-entropy on logits (classification), pinball loss at ``alpha`` (quantile);
    with several output columns the loss is averaged over them.
Determinism
    Weight initialisation, dropout and batch shuffling draw from torch's generator seeded with
    ``random_state`` inside :func:`torch_session`, which forks the global random state (the
    caller's generator is left as it was), asks for deterministic algorithms (warnings only
    where none exists) and restores both settings afterwards. On CPU with a fixed thread count
    two fits are identical; on CUDA, cuDNN recurrent kernels may still differ in the last bits.
Device and threads
    CUDA when available, else the CPU with ``min(4, cores)`` threads unless ``n_threads`` says
    otherwise; the caller's thread count is restored afterwards.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from trademl.budget import check_budget
from trademl.errors import ConfigError
from trademl.progress import progress_bar

# Gradients are rescaled to at most this norm before each step.
CLIP_NORM = 1.0


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters of one training run (see the module docstring).

    Parameters
    ----------
    owner:
        Model kind, to word errors and the progress bar.
    task:
        ``"regression"``, ``"classification"`` or ``"quantile"``.
    alpha:
        Quantile level (task ``quantile``).
    seq_len, epochs, batch_size, lr, weight_decay, patience:
        Window length, epoch limit, rows per step, AdamW step size and decay, early-stopping
        patience in epochs (None: no early stopping).
    validation_fraction, validation_gap:
        Share of the last rows used as the early-stopping tail, rows dropped before it.
    random_state:
        Seed of every random draw.
    n_threads:
        CPU threads; None means ``min(4, cores)``.
    """

    owner: str
    task: str
    alpha: float
    seq_len: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int | None
    validation_fraction: float
    validation_gap: int
    random_state: int
    n_threads: int | None


@dataclass
class Scaler:
    """Column-wise standardisation ``(x - mean) / scale``, missing values then set to 0."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        """Means and standard deviations of the columns of ``values`` (NaN ignored).

        Parameters
        ----------
        values:
            A 2-D float array, one column per variable.

        Returns
        -------
        Scaler
            Constant or all-missing columns get mean 0 and scale 1.
        """
        finite = np.isfinite(values)
        counts = finite.sum(axis=0)
        filled = np.where(finite, values, 0.0)
        mean = np.divide(
            filled.sum(axis=0), counts, out=np.zeros(values.shape[1]), where=counts > 0
        )
        squared = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0)
        std = np.sqrt(np.divide(squared, counts, out=np.zeros(values.shape[1]), where=counts > 0))
        scale = np.where(std > 1e-12, std, 1.0)
        return cls(mean=mean, scale=scale)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardised float32 copy of ``values`` with NaN and infinities set to 0."""
        scaled = (values - self.mean) / self.scale
        return np.where(np.isfinite(scaled), scaled, 0.0).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Map standardised values back to the original units."""
        return np.asarray(values * self.scale + self.mean, dtype=np.float64)

    @classmethod
    def identity(cls, n_columns: int) -> Scaler:
        """A scaler that leaves ``n_columns`` columns as they are."""
        return cls(mean=np.zeros(n_columns), scale=np.ones(n_columns))


@dataclass
class TrainResult:
    """What :func:`train_network` learned.

    Attributes
    ----------
    network:
        The network with the weights of the best epoch, in ``eval`` mode.
    x_scaler, y_scaler:
        The feature and target scalers fitted on the head rows.
    best_epoch:
        The epoch (from 1) whose weights were kept.
    history:
        Per epoch, ``{"train": loss, "valid": loss}`` (``valid`` is NaN without validation).
    """

    network: nn.Module
    x_scaler: Scaler
    y_scaler: Scaler
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def pick_device() -> torch.device:
    """CUDA when a GPU is available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def torch_session(seed: int, n_threads: int | None) -> Iterator[None]:
    """Seeded, deterministic torch state for one fit or prediction, undone on exit.

    Parameters
    ----------
    seed:
        Seed of torch's (forked) global generator inside the block.
    n_threads:
        CPU threads inside the block; None means ``min(4, cores)``.
    """
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = n_threads if n_threads is not None else min(4, os.cpu_count() or 1)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.set_num_threads(threads_before)
            torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)


def window_batch(data: torch.Tensor, ends: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Gather the windows ending at rows ``ends`` of ``data``.

    Parameters
    ----------
    data:
        ``(n_rows, n_features)`` scaled features.
    ends:
        Row positions (each ``>= seq_len - 1``) of the last row of each window.
    seq_len:
        Rows per window.

    Returns
    -------
    torch.Tensor
        ``(len(ends), seq_len, n_features)``, oldest row first.
    """
    offsets = torch.arange(seq_len - 1, -1, -1, device=data.device)
    return data[ends.unsqueeze(1) - offsets.unsqueeze(0)]


def make_loss(task: str, alpha: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of ``task``: MSE, BCE on logits or pinball at ``alpha``."""
    if task == "classification":
        return nn.functional.binary_cross_entropy_with_logits
    if task == "quantile":

        def pinball(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            error = target - output
            return torch.mean(torch.maximum(alpha * error, (alpha - 1.0) * error))

        return pinball
    return nn.functional.mse_loss


def train_network(
    build: Callable[[int, int], nn.Module],
    features: np.ndarray,
    targets: np.ndarray,
    settings: TrainSettings,
    *,
    head_stop: int,
    tail_start: int | None,
    eval_set: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainResult:
    """Fit a network on windows of ``features`` to ``targets`` (see the module docstring).

    Parameters
    ----------
    build:
        ``build(n_features, n_outputs)`` returns a fresh network.
    features:
        ``(n_rows, n_features)`` float array, oldest row first; NaN allowed.
    targets:
        ``(n_rows, n_outputs)`` finite float array aligned with ``features``.
    settings:
        Hyperparameters.
    head_stop:
        The weights learn from the windows ending in rows ``[seq_len - 1, head_stop)``; the
        scalers are fitted on rows ``[0, head_stop)``.
    tail_start:
        Early stopping scores the windows ending in rows ``[tail_start, n_rows)``; None when
        there is no tail (``eval_set`` or no early stopping).
    eval_set:
        Separate ``(features, targets)`` to stop on, windowed on their own.

    Returns
    -------
    TrainResult
        The best network and the scalers.
    """
    seq_len = settings.seq_len
    if head_stop < seq_len:
        n_rows = len(features)
        where = (
            f"of the {n_rows} rows given only {head_stop} remain before the early-stopping "
            f"validation tail ({n_rows - tail_start} rows) and gap ({tail_start - head_stop} rows)"
            if tail_start is not None
            else f"only {head_stop} rows were given"
        )
        raise ConfigError(
            f"{settings.owner}: seq_len={seq_len} needs at least {seq_len} rows to fit on, but "
            f"{where}; give more rows or a shorter seq_len"
        )
    x_scaler = Scaler.fit(features[:head_stop])
    y_scaler = (
        Scaler.identity(targets.shape[1])
        if settings.task == "classification"
        else Scaler.fit(targets[:head_stop])
    )
    device = pick_device()
    loss_fn = make_loss(settings.task, settings.alpha)

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(x_scaler.transform(x)).to(device),
            torch.from_numpy(((y - y_scaler.mean) / y_scaler.scale).astype(np.float32)).to(device),
        )

    data, target = tensors(features, targets)
    train_ends = torch.arange(seq_len - 1, head_stop, device=device)
    valid: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    if eval_set is not None:
        if len(eval_set[0]) < seq_len:
            raise ConfigError(
                f"{settings.owner}: seq_len={seq_len} needs at least {seq_len} rows in the "
                f"eval_set, got {len(eval_set[0])}"
            )
        v_data, v_target = tensors(*eval_set)
        valid = (v_data, v_target, torch.arange(seq_len - 1, len(eval_set[0]), device=device))
    elif tail_start is not None:
        valid = (data, target, torch.arange(max(tail_start, seq_len - 1), len(data), device=device))

    with torch_session(settings.random_state, settings.n_threads):
        network = build(features.shape[1], targets.shape[1]).to(device)
        optimiser = torch.optim.AdamW(
            network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=1)
        shuffle = torch.Generator().manual_seed(settings.random_state)
        best_loss, best_epoch, waited = math.inf, 0, 0
        best_state = copy.deepcopy(network.state_dict())
        history: list[dict[str, float]] = []
        with progress_bar(f"{settings.owner} training", settings.epochs, unit="epochs") as advance:
            for epoch in range(1, settings.epochs + 1):
                network.train()
                order = train_ends[torch.randperm(len(train_ends), generator=shuffle).to(device)]
                total = 0.0
                for start in range(0, len(order), settings.batch_size):
                    check_budget(f"{settings.owner} training")
                    ends = order[start : start + settings.batch_size]
                    optimiser.zero_grad(set_to_none=True)
                    loss = loss_fn(network(window_batch(data, ends, seq_len)), target[ends])
                    loss.backward()  # type: ignore[no-untyped-call]
                    nn.utils.clip_grad_norm_(network.parameters(), CLIP_NORM)
                    optimiser.step()
                    total += float(loss.detach()) * len(ends)
                train_loss = total / len(order)
                valid_loss = (
                    _evaluate(network, loss_fn, *valid, seq_len, settings.batch_size)
                    if valid is not None
                    else math.nan
                )
                history.append({"train": train_loss, "valid": valid_loss})
                watched = valid_loss if valid is not None else train_loss
                schedule.step(watched)
                advance()
                if valid is not None and watched < best_loss:
                    best_loss, best_epoch, waited = watched, epoch, 0
                    best_state = copy.deepcopy(network.state_dict())
                elif valid is not None and settings.patience is not None:
                    waited += 1
                    if waited >= settings.patience:
                        break
        if valid is None:
            # Without validation the last epoch is kept.
            best_epoch, best_state = len(history), network.state_dict()
        network.load_state_dict(best_state)
    network.eval()
    return TrainResult(network, x_scaler, y_scaler, best_epoch, history)


def _evaluate(
    network: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    target: torch.Tensor,
    ends: torch.Tensor,
    seq_len: int,
    batch_size: int,
) -> float:
    """Mean loss of ``network`` (in eval mode) over the windows ending at ``ends``."""
    network.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(ends), batch_size):
            batch = ends[start : start + batch_size]
            output = network(window_batch(data, batch, seq_len))
            total += float(loss_fn(output, target[batch])) * len(batch)
    return total / max(len(ends), 1)


def forward_windows(
    network: nn.Module,
    features: np.ndarray,
    x_scaler: Scaler,
    seq_len: int,
    batch_size: int,
    *,
    samples: int = 0,
    seed: int = 0,
    n_threads: int | None = None,
) -> np.ndarray:
    """Raw network outputs for every full window of ``features``.

    Parameters
    ----------
    network:
        A trained network.
    features:
        ``(n_rows, n_features)`` unscaled features, oldest row first.
    x_scaler:
        The scaler fitted with the network.
    seq_len:
        Rows per window.
    batch_size:
        Windows per forward pass.
    samples:
        0 for one deterministic pass (dropout off); ``S > 0`` for ``S`` Monte Carlo passes with
        dropout on, drawn from a generator seeded with ``seed``.
    seed:
        Seed of the Monte Carlo passes.
    n_threads:
        CPU threads; None means ``min(4, cores)``.

    Returns
    -------
    numpy.ndarray
        ``(n_windows, n_outputs)`` for ``samples=0``, else ``(samples, n_windows, n_outputs)``,
        with ``n_windows = max(n_rows - seq_len + 1, 0)``; window ``i`` ends at row
        ``i + seq_len - 1``.
    """
    device = next(network.parameters()).device
    data = torch.from_numpy(x_scaler.transform(features)).to(device)
    ends = torch.arange(seq_len - 1, len(features), device=device)
    n_outputs = _n_outputs(network)
    passes = max(samples, 1)
    out = np.empty((passes, len(ends), n_outputs), dtype=np.float64)
    with torch_session(seed, n_threads), torch.no_grad():
        network.train(samples > 0)
        try:
            for sample in range(passes):
                for start in range(0, len(ends), batch_size):
                    batch = ends[start : start + batch_size]
                    output = network(window_batch(data, batch, seq_len))
                    out[sample, start : start + len(batch)] = output.cpu().numpy()
        finally:
            network.eval()
    return out if samples > 0 else out[0]


def _n_outputs(network: nn.Module) -> int:
    """Output width of a network of :mod:`trademl.models.deep.networks`."""
    linear = network.get_submodule("readout.linear")
    assert isinstance(linear, nn.Linear)
    return int(linear.out_features)


__all__ = [
    "CLIP_NORM",
    "Scaler",
    "TrainResult",
    "TrainSettings",
    "forward_windows",
    "make_loss",
    "pick_device",
    "torch_session",
    "train_network",
    "window_batch",
]
