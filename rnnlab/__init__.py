"""rnnlab: build, train, compare and search recurrent neural networks on PyTorch.

    >>> import rnnlab, torch
    >>> rnn = rnnlab.RNN("lstm", input_size=8, hidden_size=16, num_layers=2)
    >>> output, state = rnn(torch.randn(5, 3, 8))     # (T, B, I) -> (T, B, 16)
"""

from . import cells, lang, serialization
from .engine import RNN, detach
from .grid import GridLSTM

__version__ = "0.1.0"

__all__ = ["RNN", "GridLSTM", "cells", "detach", "lang", "serialization", "__version__"]
