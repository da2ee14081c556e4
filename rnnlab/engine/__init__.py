"""The sequence engine: run any compiled cell over sequences (layers, directions, lengths)."""

from .fused import explain
from .interop import from_torch
from .rnn import RNN
from .state import detach, map_state
from .unroll import reverse_padded, unroll

__all__ = ["RNN", "detach", "explain", "from_torch", "map_state", "reverse_padded", "unroll"]
