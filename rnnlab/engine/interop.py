"""Copy torch.nn.RNN / LSTM / GRU weights into an ``rnnlab.RNN`` with the same function.

torch packs the gates row-wise: LSTM ``[i; f; g; o]``, GRU ``[r; z; n]``, and keeps two biases
``b_ih`` and ``b_hh``. Wherever the two are simply added, rnnlab holds their sum as one bias
(gradients match: d/db_ih = d/db_hh = d/db). torch.nn.GRU's ``b_hn`` sits inside the reset
product, so ``gru_torch`` keeps ``b_in`` and ``b_hn`` apart.
"""

from __future__ import annotations

import torch
from torch import nn

from .rnn import RNN

# torch module type -> (rnnlab cell, gate order of torch's packed weights, rnnlab names)
_LSTM = ("lstm", ["W_i", "W_f", "W_z", "W_o"], ["R_i", "R_f", "R_z", "R_o"],
         ["b_i", "b_f", "b_z", "b_o"])
_GRU = ("gru_torch", ["W_ir", "W_iz", "W_in"], ["W_hr", "W_hz", "W_hn"], ["b_r", "b_z", None])
_RNN = ("rnn", ["W"], ["R"], ["b"])


def from_torch(module: nn.Module) -> RNN:
    """An ``rnnlab.RNN`` computing the same function, with the same parameter values.

    Supports torch.nn.LSTM (without projections), torch.nn.GRU and torch.nn.RNN with tanh, any
    num_layers / bidirectional / batch_first / dropout. A module built with ``bias=False`` gets
    zero biases that are frozen (requires_grad=False), so it trains the same way.
    """
    if isinstance(module, nn.LSTM):
        if module.proj_size:
            raise ValueError("LSTMs with projections (proj_size > 0) have no rnnlab equivalent")
        spec = _LSTM
    elif isinstance(module, nn.GRU):
        spec = _GRU
    elif isinstance(module, nn.RNN):
        if module.nonlinearity != "tanh":
            raise ValueError(
                f"only torch.nn.RNN with nonlinearity='tanh' maps to rnnlab's 'rnn' cell, got "
                f"{module.nonlinearity!r}"
            )
        spec = _RNN
    else:
        raise TypeError(
            f"from_torch takes torch.nn.RNN, LSTM or GRU, got {type(module).__name__}"
        )
    name, w_names, r_names, b_names = spec
    ref = module.weight_ih_l0
    net = RNN(
        name,
        module.input_size,
        module.hidden_size,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        batch_first=module.batch_first,
        dropout=module.dropout,
    ).to(device=ref.device, dtype=ref.dtype)
    gates = len(w_names)
    with torch.no_grad():
        for layer in range(module.num_layers):
            for suffix in ("", "_reverse")[: 2 if module.bidirectional else 1]:
                cell = net.cells[f"layer{layer}{suffix}"]
                tag = f"_l{layer}{suffix}"
                w_ih = getattr(module, f"weight_ih{tag}").chunk(gates)
                w_hh = getattr(module, f"weight_hh{tag}").chunk(gates)
                for k in range(gates):
                    getattr(cell, w_names[k]).copy_(w_ih[k])
                    getattr(cell, r_names[k]).copy_(w_hh[k])
                if module.bias:
                    b_ih = getattr(module, f"bias_ih{tag}").chunk(gates)
                    b_hh = getattr(module, f"bias_hh{tag}").chunk(gates)
                else:
                    b_ih = b_hh = [torch.zeros_like(w_ih[0][:, 0])] * gates
                for k in range(gates):
                    if b_names[k] is not None:
                        getattr(cell, b_names[k]).copy_(b_ih[k] + b_hh[k])
                if spec is _GRU:
                    cell.b_in.copy_(b_ih[2])
                    cell.b_hn.copy_(b_hh[2])
                if not module.bias:
                    for p_name, p in cell.named_parameters():
                        if p_name.startswith("b_"):
                            p.requires_grad_(False)
    return net
