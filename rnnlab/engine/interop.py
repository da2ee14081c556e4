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


# torch's mode name -> (rnnlab cell, module class, gates)
TORCH_MODES = {"LSTM": ("lstm", nn.LSTM, 4), "GRU": ("gru_torch", nn.GRU, 3),
               "RNN_TANH": ("rnn", nn.RNN, 1)}


def module_from_state_dict(state: dict, mode: str, batch_first: bool = False,
                           dropout: float = 0.0) -> nn.Module:
    """The torch.nn.LSTM / GRU / RNN (``mode``) that a saved ``state_dict()`` belongs to."""
    if mode not in TORCH_MODES:
        raise ValueError(f"mode must be one of {', '.join(TORCH_MODES)}, got {mode!r}")
    if not isinstance(state, dict) or "weight_ih_l0" not in state:
        got = sorted(state)[:4] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not the state_dict of a torch.nn.{mode[:4].rstrip('_')}: expected "
                         f"keys weight_ih_l0, weight_hh_l0, …, got {got}")
    if any(k.startswith("weight_hr") for k in state):
        raise ValueError("LSTMs with projections (proj_size > 0) have no rnnlab equivalent")
    _, cls, gates = TORCH_MODES[mode]
    w_ih, w_hh = state["weight_ih_l0"], state["weight_hh_l0"]
    hidden = w_hh.shape[1]
    if w_ih.shape[0] != gates * hidden:
        raise ValueError(f"weight_ih_l0 has {w_ih.shape[0]} rows; a torch.nn {mode} of hidden "
                         f"size {hidden} has {gates * hidden}: is this the state dict of "
                         "another kind of module?")
    layers = 1 + max(int(k.split("_l")[1].split("_")[0]) for k in state if "_l" in k)
    options = {"num_layers": layers, "bias": "bias_ih_l0" in state,
               "bidirectional": "weight_ih_l0_reverse" in state, "batch_first": batch_first,
               "dropout": dropout if layers > 1 else 0.0}
    if mode == "RNN_TANH":
        options["nonlinearity"] = "tanh"
    module = cls(w_ih.shape[1], hidden, **options).to(dtype=w_ih.dtype)
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"the state dict does not load into torch.nn.{cls.__name__}: "
                         f"{str(error).splitlines()[0]}") from None
    return module


def from_torch(module, mode: str | None = None, batch_first: bool = False,
               dropout: float = 0.0) -> RNN:
    """An ``rnnlab.RNN`` computing the same function, with the same parameter values.

    Supports torch.nn.LSTM (without projections), torch.nn.GRU and torch.nn.RNN with tanh, any
    num_layers / bidirectional / batch_first / dropout. A module built with ``bias=False`` gets
    zero biases that are frozen (requires_grad=False), so it trains the same way. ``module``
    may also be a saved ``state_dict()``; then ``mode`` ("LSTM", "GRU" or "RNN_TANH") says
    which module it came from (see ``module_from_state_dict``).
    """
    if isinstance(module, dict):
        if mode is None:
            raise ValueError("from_torch(state_dict) needs mode='LSTM', 'GRU' or 'RNN_TANH'")
        module = module_from_state_dict(module, mode, batch_first, dropout)
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
