"""Grids over N-D inputs: GridLSTMNd, ImageGridLSTM (corners) and SpectrogramGridLSTM."""

import pytest
import torch
from grid_reference import grid as reference_grid

from rnnlab.grid import GridLSTM, GridLSTMNd, ImageGridLSTM, SpectrogramGridLSTM

B, C, H = 2, 3, 4


@pytest.mark.parametrize("num_axes, sizes", [(1, (5,)), (2, (3, 4)), (3, (2, 3, 2))])
def test_nd_grid_matches_equations(num_axes, sizes):
    torch.manual_seed(num_axes)
    grid = GridLSTMNd(C, H, 2, num_axes, transforms="lstm").double()
    x = torch.randn(B, *sizes, C, dtype=torch.float64)
    expected, _, _ = reference_grid(grid.grids[0], ["lstm"] * (num_axes + 1), x.movedim(0, -2))
    torch.testing.assert_close(grid(x), expected.movedim(-2, 0))


def test_one_axis_equals_grid_lstm_batch_first():
    torch.manual_seed(0)
    sequence = GridLSTM(C, H, 3, batch_first=True)
    nd = GridLSTMNd(C, H, 3, num_axes=1)
    nd.grids[0].load_state_dict(sequence.scan.state_dict())
    x = torch.randn(B, 7, C)
    torch.testing.assert_close(nd(x), sequence(x)[0])


def test_image_corners_scan_flipped_images():
    torch.manual_seed(1)
    x = torch.randn(B, 4, 5, C)
    top_left = ImageGridLSTM(C, H, 2)
    flips = {"top_right": [2], "bottom_left": [1], "bottom_right": [1, 2]}
    for corner, dims in flips.items():
        grid = ImageGridLSTM(C, H, 2, corners=[corner])
        grid.load_state_dict(top_left.state_dict())
        torch.testing.assert_close(grid(x), top_left(x.flip(dims)).flip(dims))


def test_corners_combine_by_sum_or_concat():
    torch.manual_seed(2)
    x = torch.randn(B, 3, 4, C)
    concat = ImageGridLSTM(C, H, 2, corners="all", combine="concat")
    total = ImageGridLSTM(C, H, 2, corners="all", combine="sum")
    total.load_state_dict(concat.state_dict())
    out = concat(x)
    assert out.shape == (B, 3, 4, 4 * H) and concat.output_size == 4 * H
    assert total.output_size == H
    torch.testing.assert_close(total(x), sum(out.split(H, dim=-1)))
    # Each corner has its own weights.
    assert len({p.data_ptr() for p in concat.parameters()}) == 4 * len(
        list(total.grids[0].parameters())
    )


def test_every_pixel_sees_the_whole_image_with_four_corners():
    torch.manual_seed(3)
    one, four = ImageGridLSTM(C, H, 1), ImageGridLSTM(C, H, 1, corners="all")
    x = torch.randn(1, 3, 3, C, requires_grad=True)
    (grad_one,) = torch.autograd.grad(one(x)[0, 0, 0].sum(), x)
    (grad_four,) = torch.autograd.grad(four(x)[0, 0, 0].sum(), x)
    assert torch.count_nonzero(grad_one[0, 1:].abs().sum(-1)) == 0  # top-left pixel sees itself
    assert torch.count_nonzero(grad_one[0, :, 1:].abs().sum(-1)) == 0
    assert grad_four.abs().sum(-1).min() > 0


def test_spectrogram_bands_and_causality():
    torch.manual_seed(4)
    grid = SpectrogramGridLSTM(4, H, 2, band_stride=2, corners=["top_left", "top_right"])
    x = torch.randn(B, 6, 12, requires_grad=True)  # (B, T, F)
    out = grid(x)
    assert out.shape == (B, 6, 5, H)  # bands start at bins 0, 2, 4, 6, 8
    bands = ImageGridLSTM(4, H, 2, corners=["top_left", "top_right"])
    bands.load_state_dict(grid.state_dict())
    torch.testing.assert_close(out, bands(x.unfold(-1, 4, 2)))
    (grad,) = torch.autograd.grad(out[:, 2].sum(), x)
    assert torch.count_nonzero(grad[:, 3:]) == 0 and grad[:, :3].abs().sum() > 0


@pytest.mark.parametrize("tied", [False, True])
def test_image_wavefront_equals_naive(tied):
    torch.manual_seed(5)
    grid = ImageGridLSTM(C, H, 3, tied=tied, transforms=["lstm", "tanh", "lstm"], priority=[2])
    x = torch.randn(B, 4, 3, C, requires_grad=True)
    fast = grid(x)
    (fast_grad,) = torch.autograd.grad(fast.square().sum(), x)
    grid.schedule = "naive"
    slow = grid(x)
    (slow_grad,) = torch.autograd.grad(slow.square().sum(), x)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(fast_grad, slow_grad)


def test_bad_input_and_options():
    grid = ImageGridLSTM(C, H, 1)
    with pytest.raises(ValueError, match=r"with 2 input axes, got \(2, 4, 3\)"):
        grid(torch.randn(B, 4, C))
    with pytest.raises(ValueError, match="input_size=3"):
        grid(torch.randn(B, 4, 4, 5))
    with pytest.raises(ValueError, match="corners must be 'all' or a sequence of"):
        ImageGridLSTM(C, H, 1, corners="top_left")
    with pytest.raises(ValueError, match="combine must be 'sum' or 'concat'"):
        ImageGridLSTM(C, H, 1, combine="max")
    with pytest.raises(ValueError, match=r"each in 0..1; got \(2,\)"):
        GridLSTMNd(C, H, 1, 2, scans=[(2,)])
    with pytest.raises(ValueError, match="F ≥ band_size=8"):
        SpectrogramGridLSTM(8, H, 1)(torch.randn(B, 5, 6))
