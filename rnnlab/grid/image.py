"""Grid LSTMs over 2-D inputs with a depth axis (3-D grids): images and spectrograms."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rnnlab.grid.multidim import GridLSTMNd
from rnnlab.grid.transform import Transform

_CORNERS = {"top_left": (), "top_right": (1,), "bottom_left": (0,), "bottom_right": (0, 1)}


class ImageGridLSTM(GridLSTMNd):
    r"""3-D Grid LSTM over images: rows × columns × depth (see ``GridLSTMNd``).

    Args:
        input_size: channels C.
        hidden_size, num_layers, tied, transforms, priority, combine, schedule: as in
            ``GridLSTMNd`` (dimensions: 0 rows, 1 columns, 2 depth).
        corners: which corners to scan from, any of ``"top_left"``, ``"top_right"``,
            ``"bottom_left"``, ``"bottom_right"``, or ``"all"``. Default ``("top_left",)``.
        regularisers: ``input_dropout`` … ``layer_norm``, keyword only, as in ``GridLSTMNd``
            (input dropout drops channels: one mask per image, the same at every pixel).

    Shape:
        input (B, H, W, C) → output (B, H, W, output_size).

    Example::

        >>> grid = ImageGridLSTM(1, 32, num_layers=2, corners="all", combine="concat")
        >>> grid(torch.randn(8, 28, 28, 1)).shape
        torch.Size([8, 28, 28, 128])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        tied: bool = False,
        transforms: str | Transform | Sequence[str | Transform] = "lstm",
        priority: Sequence[int] = (),
        corners: str | Sequence[str] = ("top_left",),
        combine: str = "sum",
        schedule: str = "wavefront",
        **regularisers,
    ):
        if corners == "all":
            corners = tuple(_CORNERS)
        if isinstance(corners, str) or not all(c in _CORNERS for c in corners):
            raise ValueError(
                f"corners must be 'all' or a sequence of {sorted(_CORNERS)}, got {corners!r}"
            )
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            num_axes=2,
            tied=tied,
            transforms=transforms,
            priority=priority,
            scans=[_CORNERS[c] for c in corners],
            combine=combine,
            schedule=schedule,
            **regularisers,
        )
        self.corners = corners

    def _pickle_config(self) -> dict:
        config = super()._pickle_config()
        del config["num_axes"], config["scans"]
        config["corners"] = tuple(self.corners)
        return config


class SpectrogramGridLSTM(ImageGridLSTM):
    r"""3-D Grid LSTM over spectrograms: time × frequency bands × depth.

    A spectrogram (B, T, F) is cut along frequency into bands of ``band_size`` bins every
    ``band_stride`` bins (as in time-frequency LSTMs, Li et al. 2015), giving a (T × bands)
    grid whose positions hold ``band_size`` features; then as ``ImageGridLSTM`` with axis 0 time
    and axis 1 frequency (rows are frames, columns bands). Scans from the top corners
    (``"top_left"``: low to high frequency, ``"top_right"``: high to low) run forward in time,
    so with only those the output at t depends only on frames up to t.

    Args:
        band_size: frequency bins per band (the input size of a block).
        hidden_size, num_layers, tied, transforms, priority, corners, combine, schedule: as in
            ``ImageGridLSTM``.
        band_stride: bins between band starts. Default ``band_size`` (no overlap).
        options: those of ``ImageGridLSTM``, the regularisers included (input dropout drops
            the same bins of every band: one mask per spectrogram over the ``band_size``
            features of a position).

    Shape:
        input (B, T, F) → output (B, T, bands, output_size),
        ``bands = (F − band_size) // band_stride + 1``.
    """

    def __init__(
        self,
        band_size: int,
        hidden_size: int,
        num_layers: int,
        band_stride: int | None = None,
        **options,
    ):
        super().__init__(band_size, hidden_size, num_layers, **options)
        self.band_size = band_size
        self.band_stride = band_size if band_stride is None else band_stride
        if self.band_stride < 1:
            raise ValueError(f"band_stride must be positive, got {self.band_stride}")

    def _pickle_config(self) -> dict:
        config = super()._pickle_config()
        config["band_size"] = config.pop("input_size")
        config["band_stride"] = self.band_stride
        return config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] < self.band_size:
            raise ValueError(
                f"expected a spectrogram (B, T, F) with F ≥ band_size={self.band_size}, "
                f"got {tuple(x.shape)}"
            )
        bands = x.unfold(-1, self.band_size, self.band_stride)  # (B, T, bands, band_size)
        return super().forward(bands)
