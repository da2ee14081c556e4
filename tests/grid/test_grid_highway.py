"""Highway network (Srivastava et al. 2015), the 1-D Grid LSTM's feed-forward relative."""

from __future__ import annotations

import pytest
import torch

from rnnlab.grid.highway import HighwayNetwork


def test_equations_written_out():
    torch.manual_seed(0)
    net = HighwayNetwork(5, 4, num_layers=3, activation="tanh").double()
    x = torch.randn(7, 5, dtype=torch.float64)
    h = x @ net.projection.weight.t()
    for layer in net.layers:
        W_H, W_T = layer.weight[:4], layer.weight[4:]
        b_H, b_T = layer.bias[:4], layer.bias[4:]
        T = torch.sigmoid(h @ W_T.t() + b_T)
        H = torch.tanh(h @ W_H.t() + b_H)
        h = H * T + h * (1 - T)
    torch.testing.assert_close(net(x), h)


def test_transform_gate_starts_closed_so_deep_nets_carry_the_input():
    torch.manual_seed(1)
    net = HighwayNetwork(8, 8, num_layers=1, transform_bias=-2.0)
    assert torch.all(net.layers[0].bias[8:] == -2.0)
    deep = HighwayNetwork(8, 16, num_layers=50)
    x = torch.randn(32, 8, requires_grad=True)
    deep(x).sum().backward()
    assert x.grad.abs().mean() > 1e-3  # 50 layers, gradient still reaches the input


def test_parameter_count_and_shapes():
    net = HighwayNetwork(10, 6, num_layers=4)
    assert sum(p.numel() for p in net.parameters()) == 10 * 6 + 4 * 2 * (6 * 6 + 6)
    assert net(torch.randn(2, 3, 10)).shape == (2, 3, 6)


@pytest.mark.parametrize("options, message", [
    (dict(num_layers=0), "num_layers must be a positive integer"),
    (dict(activation="sigmoid"), "activation must be one of"),
])
def test_bad_options(options, message):
    kwargs = dict(input_size=3, hidden_size=4, num_layers=2) | options
    with pytest.raises(ValueError, match=message):
        HighwayNetwork(**kwargs)


def test_wrong_input_size_is_one_clear_error():
    with pytest.raises(ValueError, match=r"input_size=3\), got \(2, 4\)"):
        HighwayNetwork(3, 4, 2)(torch.randn(2, 4))


def test_learns_parity_of_few_bits():
    torch.manual_seed(2)
    net = HighwayNetwork(6, 32, num_layers=4)
    head = torch.nn.Linear(32, 2)
    bits = torch.tensor([[(i >> k) & 1 for k in range(6)] for i in range(64)], dtype=torch.float32)
    labels = bits.sum(1).long() % 2
    params = [*net.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=2e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(net(bits)), labels)
        loss.backward()
        opt.step()
    assert (head(net(bits)).argmax(1) == labels).float().mean() == 1.0
