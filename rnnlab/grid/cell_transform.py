"""A cell of the zoo (``rnnlab.cells``) as one dimension's transform in a Grid LSTM block.

For dimension k of an N-dimensional block the grid transform is ``W_k H + b_k`` over
``H = [h_1; …; h_N]``, which splits into ``W x + R h_k + b`` with ``x`` the other dimensions'
hidden vectors concatenated (in dimension order) and ``h_k`` the dimension's own. That is
exactly one step of a recurrent cell with input ``x`` and state ``(h_k, m_k)``, so any zoo cell
whose state is a hidden vector and at most one memory vector can stand in for the LSTM::

    x            = [h_j for j ≠ k]                       ((N − 1) · d)
    _, state'    = cell(x, State(h_k, m_k))              (State(h_k) for a memoryless cell)
    h'_k, m'_k   = state'.h, state'[1]                    (m'_k = m_k for a memoryless cell)

Allowed: cells with state ``(h,)`` (``rnn``, ``gru``, ``gru_torch``, ``mut1``–``mut3``) or
``(h, c)`` (``lstm`` and its ablations, Greff's ``peephole`` LSTM and its variants, ``cifg``),
whose output is their new ``h``. Not allowed: cells carrying more state, such as ``fgr`` (it
also carries the previous step's gates, and a grid edge holds only one hidden and one memory
vector per dimension). MUT1 and MUT2 add the raw input to a hidden-size vector, so they need
``input_size == hidden_size``, i.e. a 2-D block, unless built with ``raw_input="project"``.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.engine.entry import run


class CellTransform:
    """Dimension transform made of a registered zoo cell: ``CellTransform("gru")``.

    Args:
        name: a name from ``rnnlab.cells.names()``.
        options: passed to ``rnnlab.cells.make`` (e.g. ``forget_bias=1.0``,
            ``raw_input="project"``).

    A block builds one cell per weight copy (``build``); unlike the built-in transforms, a zoo
    cell computes its own ``W x + R h + b``, so it is not fused into the block's stage GEMM and
    an untied grid runs its copies one after another within a wavefront step.
    """

    def __init__(self, name: str, **options):
        self.name = name
        self.options = options

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"CellTransform({self.name!r}{options})"

    def build(self, num_dims: int, hidden_size: int, **regularisers) -> nn.Module:
        """A new cell for a dimension of a ``num_dims``-dimensional block, checked to fit;
        ``regularisers`` (``rnnlab.grid.regularise.CELL_OPTIONS``) go to ``rnnlab.cells.make``
        with the options (the block then draws the cell's masks, ``GridBlock.draw``)."""
        from rnnlab import cells  # the zoo is a layer below the grid; imported when used

        if num_dims < 2:
            raise ValueError(
                f"zoo cell {self.name!r} needs a block of at least 2 dimensions: its input x is "
                "the other dimensions' hidden vectors, and a 1-D block has none"
            )
        cell = cells.make(self.name, (num_dims - 1) * hidden_size, hidden_size, **self.options,
                          **regularisers)
        fields = type(cell.initial_state(1))._fields
        if fields[0] != "h" or len(fields) > 2:
            raise ValueError(
                f"zoo cell {self.name!r} carries state {fields}; a grid dimension carries one "
                "hidden and at most one memory vector, so only cells whose state is (h,) or "
                "(h, memory) can be a Grid LSTM transform"
            )
        x = torch.randn(2, (num_dims - 1) * hidden_size)
        state = type(cell.initial_state(2))(*(torch.randn(2, hidden_size) for _ in fields))
        with torch.no_grad():
            output, new = cell(x, state)
        self.state_type = type(state)
        if not torch.equal(output, new.h):
            raise ValueError(
                f"zoo cell {self.name!r} outputs something other than its new state's h; a grid "
                "dimension passes on the hidden vector it carries, so the two must agree"
            )
        return cell

    def __call__(
        self, cell: nn.Module, x: torch.Tensor, h: torch.Tensor, m: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of ``cell``: x (…, (N − 1) · d), h and m (…, d) → (h', m'), each (…, d).

        The step is a sequence of one step for ``rnnlab.engine.run``: the fused engine where the
        step is wide enough to pay for its setup, else the plan's step with torch ops."""
        lead = h.shape[:-1]
        rows = (x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]), m.reshape(-1, m.shape[-1]))
        carried = rows[1:] if len(self.state_type._fields) == 2 else rows[1:2]
        _, new = run(cell.program, cell.weights(), rows[0].unsqueeze(0), carried)
        m_new = new[1].view(*lead, -1) if len(new) == 2 else m
        return new[0].view(*lead, -1), m_new
