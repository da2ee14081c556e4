"""The 2-D Grid LSTM over a sequence: a grid of blocks along time × depth."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from rnnlab.engine.packing import unpack
from rnnlab.grid.regularise import describe, grid_options, locked_dropout, of_cells
from rnnlab.grid.scan import GridScan
from rnnlab.grid.schedule import State
from rnnlab.grid.transform import Transform

_DIMENSIONS = {"time": 0, "depth": 1}


class GridLSTM(nn.Module):
    r"""2-D Grid LSTM (Kalchbrenner, Danihelka & Graves 2016): blocks on a time × depth grid.

    Like a stacked LSTM, but the connections along depth are LSTM transforms too. The block at
    time t and layer l has two dimensions, time (0) and depth (1)::

        H            = [h^time_{t-1,l}; h^depth_{t,l-1}]
        (h, m)^time_{t,l}  = LSTM_time(H, m^time_{t-1,l})      weights W^time_l
        (h, m)^depth_{t,l} = LSTM_depth(H, m^depth_{t,l-1})    weights W^depth_l

    with the paper's LSTM transform ``m' = g_f ⊙ m + g_u ⊙ g_c``, ``h' = tanh(g_o ⊙ m')``.
    The input enters at the bottom of depth by a linear projection: ``h^depth_{t,0} = I x_t``,
    ``m^depth_{t,0} = 0`` (the depth memory starts empty at every step). The output at t is
    ``h^depth_{t,L}``, the top layer's depth hidden vector. The time vectors of each layer are
    the carried state. Weights are shared along time; along depth they are one set per layer
    (``tied=False``) or one set for all layers (``tied=True``).

    The default ``schedule="layerwise"`` runs one layer at a time, as a stacked LSTM does: once
    the layer below is done, every part of the layer's GEMMs that reads the depth vectors is one
    GEMM over all T · B rows, and so is the whole depth dimension unless the time dimension
    reads its new hidden vector (``priority="time"``); what stays in the time loop is one
    (B × d) · (d × 4d) GEMM per step for an LSTM time transform, and that loop runs as a single
    autograd op (see ``rnnlab.grid.layerwise``). ``"wavefront"`` computes each anti-diagonal
    (blocks with t + l equal, which do not depend on each other) in one batched GEMM, T + L − 1
    steps in all. A single step (T = 1: sampling, streaming) of a block without regularisers
    (or in evaluation with dropouts and weight drop alone) runs, whatever the schedule, the
    lean ``rnnlab.grid.schedule.single_step``: per layer one GEMM and the transforms.

    Args:
        input_size: features of x.
        hidden_size: size of every hidden and memory vector; also the output size.
        num_layers: blocks along depth. Default 1.
        tied: share one block's weights across layers. Default False.
        batch_first: input and output as (B, T, ·) instead of (T, B, ·). Default False.
        time_transform, depth_transform: the transform of each dimension: ``"lstm"`` (the
            paper's), ``"lstm_standard"`` (``h' = g_o ⊙ tanh(m')``), or a non-LSTM ``"tanh"``,
            ``"relu"``, ``"identity"`` (see ``rnnlab.grid.transform``). Default ``"lstm"``.
        priority: ``None``, ``"time"`` or ``"depth"``: the dimension computed second, reading the
            other's new hidden vector. Default None.
        schedule: ``"layerwise"`` (default), ``"wavefront"`` or ``"naive"`` (one block at a
            time); all give the same results, in this order of speed. A zoo-cell transform
            (``CellTransform``) cannot be split, so with one ``"layerwise"`` runs the wavefront.
        input_dropout, recurrent_dropout, output_dropout, weight_drop, zoneout, layer_norm: the
            regularisers (``rnnlab.grid.regularise``, docs/regularisers.md), keyword only,
            default off. Locked dropout of the input x before ``I x`` and of the output (one
            mask per sequence, the same at every step); and of each LSTM (or zoo-cell)
            dimension's cell: locked dropout of h^time (h^depth) where it enters the time
            (depth) dimension's recurrent product, one mask per sequence and layer (tied or
            not); weight drop of those recurrent matrices, one mask per call; zoneout of each
            dimension's (h, m) (``{"h": p_h, "m": p_m}`` or one p), a new mask at every block;
            layer normalisation of each dimension's two pre-activation parts and memory. In
            evaluation every mask is its expectation (dropouts alone: the plain grid exactly).

    Shape:
        - input: (T, B, input_size), (B, T, input_size) with ``batch_first``, or a
          ``PackedSequence`` (variable lengths).
        - state: ``State(h, m)``, each (num_layers, B, hidden_size), the time vectors of each
          layer entering t = 0; zeros when omitted. Pass the returned state to the next call
          to continue the sequences (truncated BPTT: detach it first).
        - output: (T, B, hidden_size) (or batch-first, or a ``PackedSequence`` for one), and the
          ``State`` after each sequence's last valid step.

    Example::

        >>> grid = GridLSTM(input_size=10, hidden_size=20, num_layers=3)
        >>> output, state = grid(torch.randn(5, 4, 10))
        >>> output.shape, state.h.shape
        (torch.Size([5, 4, 20]), torch.Size([3, 4, 20]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        tied: bool = False,
        batch_first: bool = False,
        time_transform: str | Transform = "lstm",
        depth_transform: str | Transform = "lstm",
        priority: str | None = None,
        schedule: str = "layerwise",
        *,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        output_dropout: float = 0.0,
        weight_drop: float = 0.0,
        zoneout: float | dict[str, float] = 0.0,
        layer_norm: bool | str = False,
    ):
        super().__init__()
        self.regularisers = grid_options(input_dropout, recurrent_dropout, output_dropout,
                                         weight_drop, zoneout, layer_norm)
        self.input_dropout, self.output_dropout = input_dropout, output_dropout
        if priority is not None and priority not in _DIMENSIONS:
            raise ValueError(f"priority must be None, 'time' or 'depth', got {priority!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.num_layers = num_layers
        self.tied = tied
        self.batch_first = batch_first
        self.scan = GridScan(
            input_size,
            hidden_size,
            num_layers,
            num_axes=1,
            tied=tied,
            transforms=(time_transform, depth_transform),
            priority=() if priority is None else (_DIMENSIONS[priority],),
            schedule=schedule,
            **of_cells(self.regularisers),
        )

    @property
    def block(self):
        """The ``GridBlock`` holding the weights (one copy per layer unless tied)."""
        return self.scan.block

    @property
    def schedule(self) -> str:
        return self.scan.schedule

    @schedule.setter
    def schedule(self, name: str) -> None:
        self.scan.schedule = name

    def __reduce_ex__(self, protocol):
        from rnnlab.serialization import reduce  # rebuilt from options and tensors

        return reduce(self, protocol)

    def _pickle_config(self) -> dict:
        from rnnlab.serialization import transform_data

        time, depth = self.block.transforms
        priority = {(): None, (0,): "time", (1,): "depth"}[self.block.priority]
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "tied": self.tied, "batch_first": self.batch_first,
                "time_transform": transform_data(time), "depth_transform": transform_data(depth),
                "priority": priority, "schedule": self.schedule, **self.regularisers}

    def extra_repr(self) -> str:
        return describe(self.regularisers)  # empty without: the module prints as before

    def initial_state(self, batch_size: int) -> State:
        """Zeros: ``State(h, m)``, each (num_layers, batch_size, hidden_size)."""
        weight = self.scan.projection.weight
        zeros = weight.new_zeros(self.num_layers, batch_size, self.hidden_size)
        return State(zeros, zeros)

    def forward(
        self, input: torch.Tensor | PackedSequence, state: State | None = None
    ) -> tuple[torch.Tensor | PackedSequence, State]:
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            raise RuntimeError(
                "GridLSTM cannot be traced or scripted by torch.jit (its loops run as fused "
                "ops chosen per call); use torch.compile(model) instead"
            )
        packed = isinstance(input, PackedSequence)
        if packed:  # the path of rnnlab.RNN: sorted by length, packed back like the input
            opened = unpack(input)
            x = opened.x
            # One step: every sequence has length 1 (none is empty), so there are no ends to
            # keep and the step takes the lean path of unpacked input (GridScan).
            lengths = None if x.shape[0] == 1 else opened.lengths.to(x.device)
        else:
            self._check_input(input)
            x = input.transpose(0, 1) if self.batch_first else input
            lengths = None
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input has {x.shape[-1]} features, expected input_size={self.input_size}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"input has 0 time steps (shape {tuple(x.shape)}); a sequence "
                             "needs at least one step")
        weight = self.scan.projection.weight
        if x.dtype != weight.dtype or x.device != weight.device:
            raise TypeError(
                f"input is {x.dtype} on {x.device} but the module's parameters are "
                f"{weight.dtype} on {weight.device}; convert one to match "
                f"(input.to({weight.dtype}) or module.to({x.dtype}))"
            )
        state = self.initial_state(x.shape[1]) if state is None else self._check_state(state, x)
        x = locked_dropout(x, self.input_dropout, self.training, batch_axis=1)
        if packed:
            output, final = self.scan(x, State(*opened.sort_state(state)), lengths)
            output = locked_dropout(output, self.output_dropout, self.training, batch_axis=1)
            return opened.pack(output), State(*opened.unsort_state(final))
        output, state = self.scan(x, state, lengths)
        output = locked_dropout(output, self.output_dropout, self.training, batch_axis=1)
        return (output.transpose(0, 1) if self.batch_first else output), state

    def _check_input(self, input: torch.Tensor) -> None:
        if not isinstance(input, torch.Tensor) or input.dim() != 3:
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            got = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
            raise ValueError(
                f"GridLSTM expects a 3-D input {layout} or a PackedSequence, got {got}; "
                "for a single sequence add a batch axis of size 1"
            )

    def _check_state(self, state, x: torch.Tensor) -> State:
        if not (isinstance(state, tuple) and len(state) == 2):
            raise TypeError(
                f"state must be a State(h, m) as returned by GridLSTM, got {type(state).__name__}"
            )
        state = State(*state)
        expected = (self.num_layers, x.shape[1], self.hidden_size)
        for name, tensor in zip(State._fields, state, strict=True):
            if tuple(tensor.shape) != expected:
                raise ValueError(
                    f"state.{name} has shape {tuple(tensor.shape)}, expected {expected} "
                    "(num_layers, batch, hidden_size); pass the state returned for this batch "
                    "or None to start from zeros"
                )
        return state
