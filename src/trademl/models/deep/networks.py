"""Small PyTorch networks over windows of rows: ``(batch, seq_len, n_features) -> (batch, k)``.

Every network reads a window of ``seq_len`` consecutive rows (oldest first) and returns one
value per output column from its representation of the *last* row of the window. Each holds
dropout layers, also with a single recurrent layer, so that Monte Carlo dropout (dropout left
on at prediction time) gives a spread of predictions. None holds batch normalisation, so
``train()`` mode changes nothing but dropout.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _Readout(nn.Module):
    """Dropout, then a linear map from the last step's representation to the outputs."""

    def __init__(self, hidden: int, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, n_outputs)

    def forward(self, last: torch.Tensor) -> torch.Tensor:
        """Outputs of shape ``(batch, n_outputs)`` from ``(batch, hidden)``."""
        out: torch.Tensor = self.linear(self.dropout(last))
        return out


class _RecurrentNet(nn.Module):
    """A recurrent layer over the window, read out at the last step.

    Parameters
    ----------
    n_features:
        Columns of each row.
    n_outputs:
        Output columns (one head per target).
    hidden:
        Width of the hidden state.
    layers:
        Stacked recurrent layers; dropout is applied between them when there are several.
    dropout:
        Dropout rate on the inputs of each layer above the first and on the readout.
    """

    cell: type[nn.GRU] | type[nn.LSTM] = nn.GRU

    def __init__(
        self, n_features: int, n_outputs: int, hidden: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.rnn = self.cell(
            n_features,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.readout = _Readout(hidden, n_outputs, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, seq_len, n_features)`` to ``(batch, n_outputs)``."""
        sequence, _ = self.rnn(x)
        out: torch.Tensor = self.readout(sequence[:, -1, :])
        return out


class GRUNet(_RecurrentNet):
    """A GRU over the window, read out at the last step (parameters as :class:`_RecurrentNet`)."""

    cell = nn.GRU


class LSTMNet(_RecurrentNet):
    """An LSTM over the window, read out at the last step (parameters as :class:`_RecurrentNet`)."""

    cell = nn.LSTM


class SinusoidalPositions(nn.Module):
    """Adds the fixed sine/cosine position code of Vaswani et al. (2017), then dropout.

    Parameters
    ----------
    width:
        Model width ``d``; position ``p`` gets ``sin(p / 10000^(2i/d))`` in column ``2i`` and
        the cosine in column ``2i + 1``.
    dropout:
        Dropout rate applied after the addition.
    max_len:
        Longest window supported without recomputation; longer ones are computed on the fly.
    """

    code: torch.Tensor

    def __init__(self, width: int, dropout: float, max_len: int = 512) -> None:
        super().__init__()
        self.width = width
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("code", self._table(max_len, width), persistent=False)

    @staticmethod
    def _table(length: int, width: int) -> torch.Tensor:
        position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
        rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(1e4) / width))
        table = torch.zeros(length, width)
        table[:, 0::2] = torch.sin(position * rate)
        table[:, 1::2] = torch.cos(position * rate[: width // 2])
        return table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the position code to ``(batch, seq_len, width)``."""
        length = x.shape[1]
        code = self.code
        if length > code.shape[0]:
            code = self._table(length, self.width).to(x.device)
        out: torch.Tensor = self.dropout(x + code[:length].to(x.dtype))
        return out


def _heads(width: int) -> int:
    """The most attention heads (of 4, 2, 1) dividing ``width``."""
    return next(h for h in (4, 2, 1) if width % h == 0)


class TransformerNet(nn.Module):
    """A linear projection, sinusoidal positions and a Transformer encoder, read at the last step.

    Every row of the window attends to every other; the window holds only rows up to the one
    predicted, so no attention mask is needed to stay causal. The number of heads is the
    largest of 4, 2, 1 dividing ``hidden``; the feed-forward width is ``2 * hidden``.

    Parameters
    ----------
    n_features, n_outputs, hidden, layers, dropout:
        As for :class:`GRUNet`; ``hidden`` is the model width and ``layers`` the encoder layers.
    """

    def __init__(
        self, n_features: int, n_outputs: int, hidden: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.project = nn.Linear(n_features, hidden)
        self.positions = SinusoidalPositions(hidden, dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden,
            nhead=_heads(hidden),
            dim_feedforward=2 * hidden,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.readout = _Readout(hidden, n_outputs, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, seq_len, n_features)`` to ``(batch, n_outputs)``."""
        encoded = self.encoder(self.positions(self.project(x)))
        out: torch.Tensor = self.readout(encoded[:, -1, :])
        return out


class CNNLSTMNet(nn.Module):
    """A causal 1-D convolution over time (ReLU, dropout), then an LSTM read at the last step.

    The convolution (kernel 3, left padding only) turns each row into ``hidden`` local
    patterns of it and the two rows before; the LSTM then reads those patterns in order.

    Parameters
    ----------
    n_features, n_outputs, hidden, layers, dropout:
        As for :class:`GRUNet`; ``hidden`` is both the channel count and the LSTM width.
    kernel:
        Width of the convolution in rows.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden: int,
        layers: int,
        dropout: float,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        self.pad = kernel - 1
        self.conv = nn.Conv1d(n_features, hidden, kernel_size=kernel)
        self.conv_dropout = nn.Dropout(dropout)
        self.rnn = nn.LSTM(
            hidden,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.readout = _Readout(hidden, n_outputs, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, seq_len, n_features)`` to ``(batch, n_outputs)``."""
        channels = nn.functional.pad(x.transpose(1, 2), (self.pad, 0))
        patterns = self.conv_dropout(torch.relu(self.conv(channels))).transpose(1, 2)
        sequence, _ = self.rnn(patterns)
        out: torch.Tensor = self.readout(sequence[:, -1, :])
        return out


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "gru": GRUNet,
    "lstm": LSTMNet,
    "transformer": TransformerNet,
    "cnn_lstm": CNNLSTMNet,
}


def build_network(
    architecture: str, n_features: int, n_outputs: int, hidden: int, layers: int, dropout: float
) -> nn.Module:
    """Build the network named ``architecture`` (a key of :data:`ARCHITECTURES`).

    Parameters
    ----------
    architecture:
        ``"gru"``, ``"lstm"``, ``"transformer"`` or ``"cnn_lstm"``.
    n_features, n_outputs, hidden, layers, dropout:
        Passed to the network's constructor.

    Returns
    -------
    torch.nn.Module
        A freshly initialised network (weights drawn from torch's global generator).
    """
    cls = ARCHITECTURES[architecture]
    return cls(n_features, n_outputs, hidden, layers, dropout)


__all__ = [
    "ARCHITECTURES",
    "CNNLSTMNet",
    "GRUNet",
    "LSTMNet",
    "SinusoidalPositions",
    "TransformerNet",
    "build_network",
]
