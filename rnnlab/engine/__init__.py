"""The sequence engine: run any compiled cell over sequences (layers, directions, lengths).

Imports read from the callers down: ``rnn``/``dilation``/``packing``/``unroll`` (callers) ->
``entry`` (``run``, the one entry; ``explain``) -> ``custom_op`` (torch.compile's view of a call) ->
``route`` (the one table of executors; ``network_route`` for whole networks) -> ``fused`` (native
C++ / generated torch loops), ``cudnn`` (torch's own RNN function for the cells cuDNN computes)
and ``reference`` (the plan stepped with torch ops) -> ``settings`` (switches, read per call).
"""

from .entry import explain, run
from .interop import from_torch
from .rnn import RNN
from .settings import backend, get_backend, set_backend
from .state import detach, map_state
from .unroll import reverse_padded, unroll

__all__ = ["RNN", "backend", "detach", "explain", "from_torch", "get_backend", "map_state",
           "reverse_padded", "run", "set_backend", "unroll"]
