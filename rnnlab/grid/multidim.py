"""The N-D Grid LSTM over an (N−1)-D input plus depth, scanned from one or more corners."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from rnnlab.grid.regularise import describe, grid_options, locked_dropout, of_cells
from rnnlab.grid.scan import GridScan
from rnnlab.grid.transform import Transform


class GridLSTMNd(nn.Module):
    r"""N-dimensional Grid LSTM: blocks on K = N − 1 input axes × a depth axis.

    A multidimensional LSTM (Graves et al. 2007) whose depth connections are LSTM transforms
    too (Kalchbrenner et al. 2016, section 3.3). The block at input position
    ``p = (p_1, …, p_K)`` and layer ``l`` has N dimensions: one per input axis, reading the
    vectors of block ``(p − e_k, l)`` (zeros at the edge), and depth, reading block
    ``(p, l − 1)``; the input enters as ``h^depth = I x_p``, ``m^depth = 0`` at the bottom and
    the output at p is the top layer's depth hidden vector::

        H = [h^1_{p−e_1,l}; …; h^K_{p−e_K,l}; h^depth_{p,l−1}]
        (h, m)^k_{p,l} = transform_k(W^k_l H + b^k_l, m^k)      for every dimension k

    Blocks with equal ``p_1 + … + p_K + l`` are independent and run together (the wavefront
    schedule). A scan starts at one corner of the input; multidimensional LSTMs usually run
    one scan per corner (separate weights) and combine their outputs.

    Args:
        input_size: features per input position.
        hidden_size: size d of every hidden and memory vector.
        num_layers: blocks along depth.
        num_axes: K ≥ 1 input axes.
        tied: one block's weights at every layer. Default False.
        transforms: per-dimension transforms (K input axes in order, then depth) or one for all;
            see ``GridBlock``. Default ``"lstm"``.
        priority: priority dimensions (indices into the N dimensions, depth = K). Default none.
        scans: the corners to scan from, each a tuple of the input axes (0 … K−1) to traverse in
            reverse; ``"all"`` for all 2^K corners. Default ``((),)``: one scan from the origin.
        combine: ``"sum"`` or ``"concat"`` the scans' outputs. Default ``"sum"``.
        schedule: ``"wavefront"`` or ``"naive"``.
        input_dropout, recurrent_dropout, output_dropout, weight_drop, zoneout, layer_norm: the
            regularisers (``rnnlab.grid.regularise``), keyword only, default off. Input and
            output dropout: locked dropout of the input features and of the combined output,
            one mask per batch element (image), the same at every position. The others act on
            every LSTM (or zoo-cell) dimension's cell in every scan (each scan its own masks):
            locked dropout of h_k where it enters dimension k's recurrent product, one mask per
            batch element and layer, the same at every position; weight drop of those matrices,
            one mask per call; zoneout of each dimension's (h, m), a new mask at every block;
            layer normalisation of each dimension's pre-activation parts and memory.

    Shape:
        input (B, S_1, …, S_K, input_size) → output (B, S_1, …, S_K, output_size), where
        ``output_size`` is d, or d · len(scans) with ``combine="concat"``.

    Example::

        >>> grid = GridLSTMNd(3, 16, num_layers=2, num_axes=3, scans="all", combine="concat")
        >>> grid(torch.randn(2, 4, 5, 6, 3)).shape
        torch.Size([2, 4, 5, 6, 128])
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
        scans: str | Sequence[Sequence[int]] = ((),),
        combine: str = "sum",
        schedule: str = "wavefront",
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
        if scans == "all":
            scans = [
                c for r in range(num_axes + 1) for c in itertools.combinations(range(num_axes), r)
            ]
        scans = [tuple(sorted(set(scan))) for scan in scans]
        if not scans or len(set(scans)) != len(scans):
            raise ValueError(f"scans must list distinct corners, got {scans}")
        for scan in scans:
            if not all(0 <= axis < num_axes for axis in scan):
                raise ValueError(
                    f"a scan lists the input axes to reverse, each in 0..{num_axes - 1}; got {scan}"
                )
        if combine not in ("sum", "concat"):
            raise ValueError(f"combine must be 'sum' or 'concat', got {combine!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_axes = num_axes
        self.tied = tied
        self.scans = tuple(scans)
        self.combine = combine
        self.output_size = hidden_size * (len(scans) if combine == "concat" else 1)
        self.grids = nn.ModuleList(
            GridScan(
                input_size, hidden_size, num_layers, num_axes, tied, transforms, priority, schedule,
                **of_cells(self.regularisers),
            )
            for _ in scans
        )

    def __reduce_ex__(self, protocol):
        from rnnlab.serialization import reduce  # rebuilt from options and tensors

        return reduce(self, protocol)

    def _pickle_config(self) -> dict:
        from rnnlab.serialization import transform_data

        block = self.grids[0].block
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "num_axes": self.num_axes, "tied": self.tied,
                "transforms": tuple(transform_data(t) for t in block.transforms),
                "priority": block.priority, "scans": self.scans, "combine": self.combine,
                "schedule": self.schedule, **self.regularisers}

    def extra_repr(self) -> str:
        return describe(self.regularisers)  # empty without: the module prints as before

    @property
    def schedule(self) -> str:
        return self.grids[0].schedule

    @schedule.setter
    def schedule(self, name: str) -> None:
        for grid in self.grids:
            grid.schedule = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.num_axes + 2 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"expected input (B, S_1, …, S_{self.num_axes}, input_size={self.input_size}) "
                f"with {self.num_axes} input axes, got {tuple(x.shape)}"
            )
        x = locked_dropout(x, self.input_dropout, self.training, batch_axis=0)
        x = x.movedim(0, -2)  # (S_1, …, S_K, B, input_size)
        outputs = []
        for scan, grid in zip(self.scans, self.grids, strict=True):
            output, _ = grid(x.flip(scan) if scan else x)
            outputs.append(output.flip(scan) if scan else output)
        output = torch.cat(outputs, dim=-1) if self.combine == "concat" else sum(outputs)
        return locked_dropout(output.movedim(-2, 0), self.output_dropout, self.training, 0)
