"""DeepGridLSTM, the 1-D grid: equations, tying, and a small learning check (parity)."""

import pytest
import torch
from grid_reference import transform

from rnnlab.grid import DeepGridLSTM


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("name", ["lstm", "lstm_standard", "relu"])
def test_deep_grid_matches_equations(tied, name):
    torch.manual_seed(0)
    net = DeepGridLSTM(5, 4, 3, tied=tied, transform=name).double()
    x = torch.randn(2, 7, 5, dtype=torch.float64)  # any leading axes
    h = x @ net.projection.weight.T  # h_0 = I x
    m = torch.zeros_like(h)  # m_0 = 0
    for l in range(3):
        h, m = transform(name, h, m, *net.block.dimension_parameters(0, 0 if tied else l))
    torch.testing.assert_close(net(x), h)


def test_parameter_counts():
    untied, tied = DeepGridLSTM(16, 8, 5), DeepGridLSTM(16, 8, 5, tied=True)
    block = 4 * 8 * 8 + 4 * 8
    assert sum(p.numel() for p in untied.parameters()) == 16 * 8 + 5 * block
    assert sum(p.numel() for p in tied.parameters()) == 16 * 8 + block
    assert untied.output_size == 8


def test_bad_input():
    with pytest.raises(ValueError, match=r"input \(\*, input_size=16\), got \(3, 15\)"):
        DeepGridLSTM(16, 8, 2)(torch.randn(3, 15))
    with pytest.raises(ValueError, match="num_layers must be at least 1, got 0"):
        DeepGridLSTM(16, 8, 0)
