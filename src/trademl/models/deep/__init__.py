"""Deep sequence models (PyTorch, optional): kinds ``gru``, ``lstm``, ``transformer``, ``cnn_lstm``.

Importing this package does not import torch; fitting a model does (see
:mod:`trademl.models.deep.kinds`).
"""

from __future__ import annotations

from trademl.models.deep.kinds import (
    CNNLSTMModel,
    DeepSequenceModel,
    GRUModel,
    LSTMModel,
    TransformerModel,
)

__all__ = ["CNNLSTMModel", "DeepSequenceModel", "GRUModel", "LSTMModel", "TransformerModel"]
