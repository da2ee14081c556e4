"""torch.nn.RNN / LSTM / GRU weights in and out of an ``rnnlab.RNN`` with the same function.

torch packs the gates row-wise: LSTM ``[i; f; g; o]``, GRU ``[r; z; n]``, and keeps two biases
``b_ih`` and ``b_hh``. Wherever the two are simply added, rnnlab holds their sum as one bias
(gradients match: d/db_ih = d/db_hh = d/db). torch.nn.GRU's ``b_hn`` sits inside the reset
product, so ``gru_torch`` keeps ``b_in`` and ``b_hn`` apart.

In: ``from_torch`` (a module or its state dict), ``RNN.load_torch_state_dict``. Out: the
torch-named attributes ``weight_ih_l0`` … of an RNN of the cells ``lstm``, ``gru_torch`` and
``rnn`` — read-only copies in torch's layout (:class:`TorchLayoutCopy`) — and
``RNN.torch_state_dict()``, which ``torch.nn.LSTM.load_state_dict`` takes.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from .cudnn import GRU, LSTM, RNN_TANH, TorchCell
from .rnn import RNN


@dataclass(frozen=True)
class TorchLayout(TorchCell):
    """A torch module and where its packed tensors live among a cell's paper-named parameters:
    the cuDNN route's :class:`~rnnlab.engine.cudnn.TorchCell` (one table of torch's gate order
    for both) and the ``nn`` module class. A bias block named ``None`` is zero on the way out;
    on the way in it is added into the ``bias_ih`` block's parameter (rnnlab holds
    ``b_ih + b_hh`` as one bias there)."""

    module: type = field(kw_only=True)  # required; keyword-only after TorchCell's fields


def _layout(kind: TorchCell, module: type) -> TorchLayout:
    return TorchLayout(**{f.name: getattr(kind, f.name) for f in fields(kind)}, module=module)


# rnnlab cell -> its torch layout
LAYOUTS = {"lstm": _layout(LSTM, nn.LSTM), "gru_torch": _layout(GRU, nn.GRU),
           "rnn": _layout(RNN_TANH, nn.RNN)}

# torch's mode name -> (rnnlab cell, module class, gates)
TORCH_MODES = {layout.mode: (cell, layout.module, len(layout.weight_ih))
               for cell, layout in LAYOUTS.items()}

TORCH_NAME = re.compile(r"(weight|bias)_(ih|hh)_l(\d+)(_reverse)?")


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
    num_layers / bidirectional / batch_first / dropout. A module built with ``bias=False`` gives
    an RNN built with ``bias=False`` (fixed zero biases, no parameters), so it trains the same
    way. ``module`` may also be a saved ``state_dict()``; then ``mode``
    ("LSTM", "GRU" or "RNN_TANH") says which module it came from (see
    ``module_from_state_dict``).
    """
    if isinstance(module, dict):
        if mode is None:
            raise ValueError("from_torch(state_dict) needs mode='LSTM', 'GRU' or 'RNN_TANH'")
        module = module_from_state_dict(module, mode, batch_first, dropout)
    if isinstance(module, nn.LSTM):
        if module.proj_size:
            raise ValueError("LSTMs with projections (proj_size > 0) have no rnnlab equivalent")
        cell = "lstm"
    elif isinstance(module, nn.GRU):
        cell = "gru_torch"
    elif isinstance(module, nn.RNN):
        if module.nonlinearity != "tanh":
            raise ValueError(
                f"only torch.nn.RNN with nonlinearity='tanh' maps to rnnlab's 'rnn' cell, got "
                f"{module.nonlinearity!r}"
            )
        cell = "rnn"
    else:
        raise TypeError(
            f"from_torch takes torch.nn.RNN, LSTM or GRU, got {type(module).__name__}"
        )
    ref = module.weight_ih_l0
    net = RNN(
        cell,
        module.input_size,
        module.hidden_size,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        batch_first=module.batch_first,
        dropout=module.dropout,
        bias=module.bias,
    ).to(device=ref.device, dtype=ref.dtype)
    copy_torch_tensors(net, {name: t for name, t in module.named_parameters()})
    return net


def copy_torch_tensors(net: RNN, tensors: dict) -> None:
    """Write torch-named, torch-layout tensors (all of a module's, as ``named_parameters()``
    gives them) into the paper-named parameters of ``net`` (cell lstm, gru_torch or rnn)."""
    layout = LAYOUTS[net.cell_name]
    with torch.no_grad():
        for key, cell in net.cells.items():
            tag = key.replace("layer", "_l")  # "layer1_reverse" -> "_l1_reverse"
            for kind in ("weight_ih", "weight_hh"):
                for name, block in zip(getattr(layout, kind), tensors[kind + tag].chunk(
                        len(getattr(layout, kind)))):
                    getattr(cell, name).copy_(block)
            if not net.bias:
                continue
            b_ih = tensors["bias_ih" + tag].chunk(len(layout.bias_ih))
            b_hh = tensors["bias_hh" + tag].chunk(len(layout.bias_ih))
            for k, (into_ih, into_hh) in enumerate(zip(layout.bias_ih, layout.bias_hh)):
                if into_hh is None:  # rnnlab holds the sum
                    getattr(cell, into_ih).copy_(b_ih[k] + b_hh[k])
                else:
                    getattr(cell, into_ih).copy_(b_ih[k])
                    getattr(cell, into_hh).copy_(b_hh[k])


# ---- out: torch-named, torch-layout copies ----------------------------------------------------
_DATA, _GRAD = torch._C.TensorBase.data, torch._C.TensorBase.grad
_METADATA_ONLY = {"requires_grad_", "retain_grad", "share_memory_"}


class TorchLayoutCopy(torch.Tensor):
    """A torch-named tensor of an ``rnnlab.RNN`` (``rnn.weight_hh_l0`` …): a copy in torch's
    layout, assembled from the paper-named parameters, that refuses to be written to.

    It reads like the tensor torch.nn.LSTM holds under that name and is differentiable (a loss
    on it sends gradients to the paper-named parameters), but it is a concatenation, not the
    parameters' storage: an in-place write (``nn.init.orthogonal_(rnn.weight_hh_l0)``,
    ``w.data.fill_(0)``, ``w[0] = 1``, ``w.data = …``) would change nothing, so it raises a
    RuntimeError saying to edit ``rnn.torch_state_dict()`` and load it back with
    ``rnn.load_torch_state_dict``. Views of it (``w[:H]``, ``w.data``, ``w.detach()``) are
    guarded alike; results of other operations are ordinary tensors.
    """

    _where: str  # "rnn.weight_hh_l0 (cells.layer0.R_i, R_f, R_z, R_o)", for the message

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        guarded = [a for a in (*args, *kwargs.values()) if isinstance(a, cls)]
        name = getattr(func, "__name__", "")
        owner = getattr(func, "__self__", None)
        # the tensor acted on: the first argument (nn.init passes it by keyword, ``tensor=``)
        target = args[0] if args else kwargs.get("tensor")
        writes = (name == "__setitem__" or (name.endswith("_") and not name.startswith("_")
                                             and name not in _METADATA_ONLY)
                  or (name == "__set__" and owner is _DATA))
        if (isinstance(target, cls) and writes) or isinstance(kwargs.get("out"), cls):
            victim = target if isinstance(target, cls) else kwargs["out"]
            raise RuntimeError(
                f"{victim._where} is a read-only copy in torch's layout, assembled from the "
                "paper-named parameters, so writing to it would change nothing; edit "
                "state = rnn.torch_state_dict() and call rnn.load_torch_state_dict(state)"
            )
        if isinstance(target, cls) and owner is _GRAD:
            raise RuntimeError(
                f"{target._where} is a copy in torch's layout and has no .grad of its own; "
                "read the .grad of the paper-named parameters (rnn.named_parameters())"
            )
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **kwargs)
            if name == "numpy" and isinstance(target, cls):
                result.flags.writeable = False  # the same memory: numpy writes refused too
            storages = {a.untyped_storage().data_ptr() for a in guarded}
            return _guard_views(result, storages, guarded[0]._where if guarded else "")


def _guard_views(result, storages: set, where: str):
    """``result`` with every tensor that shares memory with a guarded copy guarded too."""
    if isinstance(result, (tuple, list)):
        return type(result)(_guard_views(r, storages, where) for r in result)
    if (isinstance(result, torch.Tensor) and not isinstance(result, TorchLayoutCopy)
            and result.layout == torch.strided
            and result.untyped_storage().data_ptr() in storages - {0}):
        return _guard(result, where)
    return result


def _guard(tensor: torch.Tensor, where: str) -> TorchLayoutCopy:
    copy = tensor.as_subclass(TorchLayoutCopy)
    copy._where = where
    return copy


def torch_layout(net: RNN, error: type[Exception] = AttributeError) -> TorchLayout:
    """The torch layout of ``net``'s cell; ``error`` (one line) for other cells."""
    layout = LAYOUTS.get(net.cell_name)
    if layout is None:
        raise error(
            f"torch-named weights (weight_ih_l0, …) exist for the cells torch.nn.LSTM / GRU / "
            f"RNN compute (lstm, gru_torch, rnn); this RNN's cell is {net.cell_name!r}: use "
            "rnn.named_parameters() (cells.layer0.W_i, …)"
        )
    return layout


def torch_tensor(net: RNN, name: str) -> TorchLayoutCopy:
    """``net.<name>`` for a torch parameter name such as ``weight_hh_l1_reverse``."""
    return _guard(*_assemble(net, name))


def _assemble(net: RNN, name: str) -> tuple[torch.Tensor, str]:
    """The torch-layout tensor ``name`` of ``net`` (a plain concatenation, differentiable) and
    where it comes from, for messages."""
    match = TORCH_NAME.fullmatch(name)
    kind, side, layer, reverse = match.groups()
    layout = torch_layout(net)
    key = f"layer{layer}{reverse or ''}"
    if key not in net.cells:
        raise AttributeError(
            f"{type(net).__name__} has no {name}: it has {net.num_layers} layer(s), "
            f"{'both directions' if net.bidirectional else 'one direction (no _reverse)'}"
        )
    if kind == "bias" and not net.bias:
        raise AttributeError(f"{name} does not exist: this RNN was built with bias=False")
    cell = net.cells[key]
    names = getattr(layout, f"{kind}_{side}")
    ref = getattr(cell, layout.weight_ih[0])
    blocks = [getattr(cell, n) if n is not None else ref.new_zeros(net.hidden_size)
              for n in names]
    held = [n for n in names if n is not None]
    if side == "hh" and kind == "bias":  # zero where rnnlab holds b_ih + b_hh as one bias
        tag = name.removeprefix("bias_hh")
        where = (f"rnn.{name} (zero: rnnlab holds torch's b_ih + b_hh as one bias, shown in "
                 f"bias_ih{tag}" + (f"; its n rows are cells.{key}.b_hn" if held else "") + ")")
    else:
        where = f"rnn.{name} (cells.{key}.{', '.join(held)})"
    return torch.cat(blocks), where


def torch_names(net: RNN) -> list[str]:
    """The parameter names torch.nn.LSTM / GRU / RNN of the same shape has, in its order
    (ValueError for a cell torch does not have)."""
    torch_layout(net, ValueError)
    kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if net.bias else ())
    return [f"{kind}{key.replace('layer', '_l')}" for key in net.cells for kind in kinds]


def torch_state_dict(net: RNN) -> OrderedDict:
    """Plain tensors (detached copies) under torch's names and in torch's layout."""
    with torch.no_grad():
        return OrderedDict((name, _assemble(net, name)[0]) for name in torch_names(net))
