"""One pass of a Grid LSTM over an input grid: input projection, blocks, schedule."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rnnlab.engine import settings
from rnnlab.grid import stack_step
from rnnlab.grid.block import GridBlock
from rnnlab.grid.layerwise import layerwise
from rnnlab.grid.schedule import State, naive, single_step, wavefront
from rnnlab.grid.transform import Transform

SCHEDULES = {"layerwise": layerwise, "wavefront": wavefront, "naive": naive}
"""The orders a grid's blocks can be computed in, by name; all give the same results."""


class GridScan(nn.Module):
    r"""A grid of blocks over K input axes and a depth axis of ``num_layers`` layers.

    The input enters by a linear projection at the bottom of depth, as in the paper
    (Kalchbrenner et al. 2016, section 3.3): the depth-dimension vectors entering layer 1 at
    position p are ``h = I x_p`` and ``m = 0``. Along input axis 1 the blocks receive ``state``
    at the first position (zeros by default); along the other input axes they receive zeros.
    The output at p is the depth hidden vector leaving the top layer (see ``schedule.py``).

    Args:
        input_size: features of x.
        hidden_size: size d of every hidden and memory vector.
        num_layers: L, blocks along depth.
        num_axes: K ≥ 1 input axes; the blocks have N = K + 1 dimensions, the K input axes in
            order, then depth.
        tied: one block's weights at every layer (True) or one weight set per layer (False).
            Weights are always shared along the input axes.
        transforms, priority: per-dimension transforms and priority dimensions of the block
            (see ``GridBlock``), dimension K being depth.
        schedule: ``"wavefront"`` (a hyperplane of blocks per step), ``"layerwise"`` (one layer
            at a time, its depth inputs in one GEMM; one input axis only, see ``layerwise.py``)
            or ``"naive"`` (one block at a time); see ``schedule.py``. A single step of a
            sequence grid (one input axis, S_1 = 1, no lengths) whose block runs without masks
            (``GridBlock.plain``) runs ``single_step`` instead, whatever the schedule: the same
            results as ``naive``, with the least Python per step.
        regularisers: ``recurrent_dropout``, ``weight_drop``, ``zoneout``, ``layer_norm`` of the
            block's cell dimensions (see ``GridBlock`` and ``rnnlab.grid.regularise``); the
            schedule draws their masks once per call.

    Shape:
        ``forward(x, state=None, lengths=None)``: x (S_1, …, S_K, B, input_size); ``state`` a
        ``State`` with ``h``, ``m`` (L, S_2, …, S_K, B, d); ``lengths`` (B,) valid positions
        along axis 1. Returns output (S_1, …, S_K, B, d) and the new ``State``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        num_axes: int,
        tied: bool = False,
        transforms: str | Transform | Sequence[str | Transform] = "lstm",
        priority: Sequence[int] = (),
        schedule: str = "wavefront",
        **regularisers,
    ):
        super().__init__()
        if input_size < 1 or num_layers < 1 or num_axes < 1:
            raise ValueError(
                "input_size, num_layers and num_axes must be at least 1, got "
                f"{input_size}, {num_layers} and {num_axes}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_axes = num_axes
        self.tied = tied
        self.schedule = schedule
        self.projection = nn.Linear(input_size, hidden_size, bias=False)  # the paper's I x
        self.block = GridBlock(
            num_axes + 1, hidden_size, transforms, priority, copies=1 if tied else num_layers,
            **regularisers,
        )

    @property
    def schedule(self) -> str:
        """A name from ``SCHEDULES``; may be changed after construction."""
        return self._schedule

    @schedule.setter
    def schedule(self, name: str) -> None:
        if name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
        if name == "layerwise" and self.num_axes != 1:
            raise ValueError(
                "schedule='layerwise' runs grids with one input axis (sequences); this grid has "
                f"{self.num_axes}: use 'wavefront'"
            )
        self._schedule = name

    def initial_state(self, x: torch.Tensor) -> State:
        """Zeros: (num_layers, S_2, …, S_K, B, d) for an input x (S_1, …, S_K, B, input_size)."""
        shape = (self.num_layers, *x.shape[1 : self.num_axes], x.shape[-2], self.hidden_size)
        zeros = x.new_zeros(shape)
        return State(zeros, zeros)

    @settings.held  # the environment read once for every block of the call
    def forward(
        self,
        x: torch.Tensor,
        state: State | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.initial_state(x)
        if x.shape[0] == 1 and self.num_axes == 1 and lengths is None and self.block.plain:
            if stack_step.applies(self.block, self.projection.weight, x):  # one engine call
                output, h, m = stack_step.step(self.block, self.projection.weight, x, *state)
                return output, State(h, m)
            return single_step(self.block, self.projection(x), state)
        return SCHEDULES[self.schedule](self.block, self.projection(x), state, lengths)
