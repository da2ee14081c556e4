"""``rnnlab.RNN``: any cell over sequences, as a drop-in for torch.nn.LSTM.

Time-major inside: tensors are (T, B, features) unless ``batch_first``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from .. import cells
from ..lang import CellDef, Graph
from . import cudnn, settings, stack
from .dilation import dilated_unroll
from .packing import unpack
from .route import network_route
from .unroll import reverse_padded


def _with_masks(cell, x: torch.Tensor, slots: tuple) -> tuple[torch.Tensor, tuple]:
    """A regularised cell's sequence masks for one call: x (T, B, I) times the locked input
    mask, and the slots (each (d, B, H)) followed by one mask field each, the same for every
    slot of a sequence (drawn in training, ones in evaluation; see ``Cell.state_masks``).
    A cell with per-step masks (zoneout) gets them appended to x, (T, B, I + mask_size), so
    that dilation, packing and the engine's sorting move each step's masks with its input."""
    B = x.shape[1]
    mask = cell.input_mask(B, x)
    if mask is not None:
        x = x * mask  # (T, B, I) * (B, I): one mask for every step of a sequence
    d = slots[0].shape[0]
    masks = tuple(m.unsqueeze(0).expand(d, -1, -1) for m in cell.state_masks(B, x))
    return cell.with_step_masks(x), (*slots, *masks)


class RNN(nn.Module):
    r"""A multi-layer, optionally bidirectional and skip-connected recurrent network of any cell.

    For each layer l and direction d, the cell runs over the layer input:
    ``output_t, state_t = cell(x_t, state_{t-1})``. Layer l > 0 reads the outputs of layer l−1
    (both directions concatenated), after dropout. With ``skip=True`` (Graves 2013, "Generating
    Sequences with RNNs"), every layer also reads the network input, and the network output is
    the concatenation of every layer's output. With ``dilations`` (Chang et al. 2017, "Dilated
    Recurrent Neural Networks"), layer l recurs across time on ``state_{t - d_l}`` instead of
    ``state_{t-1}`` (see :mod:`rnnlab.engine.dilation`).

    Args:
        cell: a registered cell name (``rnnlab.cells.names()``), a CellDef or a cell Graph.
        input_size: features of the input x.
        hidden_size: size of every state vector.
        num_layers: stacked layers (default 1).
        bidirectional: run a second cell over the reversed sequence in each layer.
        batch_first: input and output are (B, T, F) instead of (T, B, F); the state keeps its
            layout (num_layers · D, B, hidden_size), as in torch.
        dropout: dropout probability on the input of each layer after the first.
        skip: skip connections from the input to every layer and every layer to the output.
        dilations: one positive int per layer, the step distance of its recurrence (default all
            1: the ordinary RNN); e.g. ``(1, 2, 4)``. A layer of dilation d carries d state
            slots per direction.
        bias: False makes the cells' biases (``b``, ``b_*``) fixed zeros, buffers that are
            neither parameters nor in the state dict, as torch.nn.LSTM(bias=False) has none.
            Default True.
        proj_size: torch.nn.LSTM's projection size; only 0 (no projection) exists here.
        device, dtype: where and in what precision to create the parameters (as torch).
        input_dropout, recurrent_dropout, output_dropout, weight_drop: regularisers of every
            layer's cell, probabilities (default 0: none), passed to ``rnnlab.cells.make``
            (see docs/regularisers.md). Locked dropout (Gal & Ghahramani 2016) of the step
            input, of the state where it feeds the recurrent products, and of the output, one
            mask per sequence and call; weight drop (Merity et al. 2018) drops entries of every
            recurrent matrix, one mask per call. Each is a transformation of the cell's graph
            (``print(rnn.cells.layer0)`` shows it) and runs on the fused engine; in evaluation
            mode the network computes the unregularised function.
        zoneout: Krueger et al. 2016, a probability for every state field or a dict
            (``{"h": 0.05, "c": 0.5}``): ``s' = d ⊙ s + (1 − d) ⊙ s_new`` with a new
            Bernoulli(p) mask d at every step and sequence; ``p·s + (1 − p)·s_new`` in
            evaluation.
        layer_norm: True layer-normalises (Ba et al. 2016) the input part and the recurrent
            part of every pre-activation apart, and the memory cell (``h = o ⊙ tanh(LN(c))``),
            each gate with its own statistics; ``"joint"``: the input parts of all gates
            together and the recurrent parts together, as Ba et al.'s LN-LSTM and haste's
            ``LayerNormLSTM`` (``"gate"`` = True).
        **cell_options: passed to ``rnnlab.cells.make`` (``forget_bias``, ``init``, …).

    Shapes:
        input: (T, B, input_size), (B, T, input_size) when batch_first, or a PackedSequence.
        state: for a cell whose state has one field (``rnn``, ``gru``, ``gru_torch``,
            ``mut*``) a tensor (num_layers · D, B, hidden_size), as torch.nn.GRU's ``h_n``;
            for cells with more fields the cell's State NamedTuple of such tensors — for
            ``lstm`` ``(h, c)``, as torch.nn.LSTM. D = 2 if bidirectional else 1. Given
            states may be the State, a plain tuple or list of the fields, or for one field the
            tensor. With dilations, each field is (D · sum(dilations), B, hidden_size): layer
            l, direction k has the d_l slots starting at D · (d_0 + … + d_{l−1}) + k · d_l.
        output: (T, B, D · hidden_size), or (T, B, num_layers · D · hidden_size) with skip;
            a PackedSequence when the input is one.

    Parameters carry the names of the cell's equations (``cells.layer0.W_i``, ``b_f``, …).
    For the cells torch has (``lstm``, ``gru_torch``, ``rnn``), torch's names read too:
    ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` (``_reverse`` for the
    backward direction), ``all_weights`` and ``torch_named_parameters()`` give read-only copies
    in torch's layout (:class:`rnnlab.engine.interop.TorchLayoutCopy`); rnnlab holds torch's
    ``b_ih + b_hh`` as one bias, which ``bias_ih`` shows, ``bias_hh`` being zero (GRU: its n
    rows are ``b_hn``). ``torch_state_dict()`` / ``load_torch_state_dict()`` move weights out
    and in.

    Example::

        >>> rnn = rnnlab.RNN("cifg", input_size=10, hidden_size=20, num_layers=2)
        >>> output, (h, c) = rnn(torch.randn(5, 3, 10))
        >>> output.shape, h.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
        >>> gru = rnnlab.RNN("gru_torch", 10, 20, num_layers=2)
        >>> output, h_n = gru(torch.randn(5, 3, 10))       # h_n: (2, 3, 20), as torch.nn.GRU
        >>> h_n[-1].shape                                   # the last layer
        torch.Size([3, 20])
    """

    def __init__(
        self,
        cell: str | CellDef | Graph,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        batch_first: bool = False,
        dropout: float = 0.0,
        skip: bool = False,
        dilations: tuple[int, ...] | list[int] | None = None,
        bias: bool = True,
        proj_size: int = 0,
        device=None,
        dtype=None,
        **cell_options,
    ):
        super().__init__()
        if proj_size != 0:
            raise ValueError(
                f"proj_size={proj_size!r}: rnnlab.RNN has no LSTM projections; leave proj_size "
                "at 0 and project the output with a torch.nn.Linear(hidden_size, proj_size)"
            )
        self._configure(input_size, hidden_size, num_layers, bidirectional, batch_first,
                        dropout, skip, dilations, bias)
        if not self.bias and cell_options.get("forget_bias") is not None:
            raise ValueError(
                "forget_bias sets the initial forget-gate bias, but bias=False makes every bias "
                "zero; leave one of them out"
            )
        D = self.num_directions
        layers = {}
        for layer in range(num_layers):
            size = input_size if layer == 0 else D * hidden_size + (input_size if skip else 0)
            for suffix in ("", "_reverse")[:D]:
                layers[f"layer{layer}{suffix}"] = cells.make(cell, size, hidden_size,
                                                             **cell_options)
        self._set_cells(layers)
        if not self.bias:
            if not self.cells["layer0"].bias_names():
                raise ValueError(
                    f"cell {self.cell_name!r} has no biases (parameters b, b_*), so bias=False "
                    "does not apply; leave it out"
                )
            for layer in self.cells.values():
                layer.remove_biases()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def _configure(self, input_size, hidden_size, num_layers, bidirectional, batch_first,
                   dropout, skip, dilations, bias) -> None:
        """Check and set the network's options (everything but the cells)."""
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bool(bidirectional)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.skip = bool(skip)
        self.bias = bool(bias)
        self.proj_size = 0  # as torch.nn.LSTM's attribute; projections do not exist here
        self.num_directions = 2 if bidirectional else 1
        if dilations is None:
            dilations = (1,) * num_layers
        dilations = tuple(dilations)
        if len(dilations) != num_layers or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dilations
        ):
            raise ValueError(
                f"dilations must be {num_layers} positive integer(s), one per layer, got "
                f"{dilations!r}"
            )
        self.dilations = dilations

    def _set_cells(self, layers: dict) -> None:
        self.cells = nn.ModuleDict(layers)
        first = self.cells["layer0"]
        self.cell_name = first.name
        self.State = first.State

    def reset_parameters(self) -> None:
        """Initialise every cell's parameters again (``init``, ``forget_bias``); with
        ``bias=False`` the biases stay fixed zeros."""
        for cell in self.cells.values():
            cell.reset_parameters()

    def flatten_parameters(self) -> None:
        """Nothing to do: torch.nn.LSTM packs its weights for cuDNN here, while the rnnlab
        engine assembles the weights it runs with itself. Kept so that code written for
        torch.nn.LSTM runs unchanged; returns None as torch's does."""
        return None

    @property
    def output_size(self) -> int:
        """Features of each output step."""
        return (self.num_layers if self.skip else 1) * self.num_directions * self.hidden_size

    @property
    def state_fields(self) -> tuple[str, ...]:
        return self.State._fields

    @property
    def state_slots(self) -> int:
        """Rows of each state field: num_layers · D, or D · sum(dilations) with dilations."""
        return self.num_directions * sum(self.dilations)

    def _slot_range(self, layer: int, direction: int) -> slice:
        d = self.dilations[layer]
        start = self.num_directions * sum(self.dilations[:layer]) + direction * d
        return slice(start, start + d)

    def extra_repr(self) -> str:
        options = [f"{self.cell_name!r}", f"{self.input_size}", f"{self.hidden_size}"]
        for name in ("num_layers", "bidirectional", "batch_first", "dropout", "skip"):
            value = getattr(self, name)
            if value != {"num_layers": 1}.get(name, False if name != "dropout" else 0.0):
                options.append(f"{name}={value}")
        if any(d != 1 for d in self.dilations):
            options.append(f"dilations={self.dilations}")
        if not self.bias:
            options.append("bias=False")
        return ", ".join(options)

    def initial_state(self, batch_size: int, device=None, dtype=None):
        """Zero state as ``forward`` takes and returns it: each field (num_layers · D,
        batch_size, hidden_size) (with dilations: (D · sum(dilations), batch_size,
        hidden_size)); a tensor for a one-field cell, else the cell's State."""
        ref = next(self.parameters(), None)  # a mutated cell may have no parameters at all
        if ref is not None:
            device = device if device is not None else ref.device
            dtype = dtype if dtype is not None else ref.dtype
        shape = (self.state_slots, batch_size, self.hidden_size)
        return self._state_out(tuple(
            torch.zeros(shape, device=device, dtype=dtype) for _ in self.state_fields
        ))

    def _state_out(self, fields: tuple):
        """The state as the caller gets it: the tensor for one field (as torch.nn.GRU / RNN
        return ``h_n``), the cell's State for more (as torch.nn.LSTM's ``(h_n, c_n)``)."""
        return fields[0] if len(fields) == 1 else self.State(*fields)

    # ---- input checks ------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a tensor or a PackedSequence, got {type(x).__name__}")
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if x.dim() != 3:
            raise ValueError(
                f"input must be 3-D {layout} with input_size={self.input_size}, got shape "
                f"{tuple(x.shape)}; for a single step use rnnlab.cells.make(...)"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input has {x.shape[-1]} features, expected input_size={self.input_size} "
                f"(shape {layout}, got {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise TypeError(f"input must be floating point, got {x.dtype}; embed token ids first")
        T = x.shape[1] if self.batch_first else x.shape[0]
        if T == 0:
            raise ValueError(
                f"input has 0 time steps (shape {layout} = {tuple(x.shape)}); a sequence needs "
                "at least one step"
            )
        self._check_dtype(x)
        return x.transpose(0, 1) if self.batch_first else x

    def _check_dtype(self, x: torch.Tensor) -> None:
        # a cell's own parameter (walking every module's parameters took 3.5 µs a call)
        ref = next((p for cell in self.cells.values() for p in cell._parameters.values()
                    if p is not None), None)
        if ref is None:
            ref = next(self.parameters(), None)
        if ref is not None and (x.dtype != ref.dtype or x.device != ref.device):
            raise TypeError(
                f"input is {x.dtype} on {x.device} but the module's parameters are {ref.dtype} "
                f"on {ref.device}; convert one to match (input.to({ref.dtype}) or "
                f"module.to({x.dtype}))"
            )

    def _check_state(self, state, batch_size: int) -> tuple[torch.Tensor, ...]:
        fields = self.state_fields
        if isinstance(state, torch.Tensor) and len(fields) == 1:
            state = (state,)
        if not isinstance(state, (tuple, list)) or len(state) != len(fields):
            wanted = (f"a tensor (or a tuple of it) for cell {self.cell_name!r}, whose state "
                      "has one field" if len(fields) == 1 else
                      f"a {self.State.__name__}{fields} (or a tuple or list) of {len(fields)} "
                      f"tensors for cell {self.cell_name!r}")
            raise ValueError(
                f"state must be {wanted}, got {type(state).__name__}"
                + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else "")
            )
        expected = (self.state_slots, batch_size, self.hidden_size)
        rows = ("num_layers * num_directions" if self.state_slots == self.num_layers
                * self.num_directions else "num_directions * sum(dilations)")
        for name, t in zip(fields, state):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != expected:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"state field {name!r} must have shape {expected} = ({rows}, batch, "
                    f"hidden_size), got {got}"
                    + (" (with batch_first too, as in torch)" if self.batch_first else "")
                )
        return tuple(state)

    # ---- forward -----------------------------------------------------------------------
    @settings.held  # the environment read once for every layer and route of the call
    def forward(self, input, state=None):
        """Run the network; returns ``(output, state)`` (see the class docstring for shapes)."""
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            raise RuntimeError(
                "rnnlab.RNN cannot be traced or scripted by torch.jit (its loop is one fused op "
                "whose plan is chosen per call); use torch.compile(model) instead, which treats "
                "the fused engine as a single custom op"
            )
        packed = isinstance(input, PackedSequence)
        if packed:
            opened = unpack(input)
            x, lengths = opened.x, opened.lengths
            if x.shape[-1] != self.input_size:
                raise ValueError(
                    f"packed input has {x.shape[-1]} features, expected {self.input_size}"
                )
            self._check_dtype(x)
        else:
            x = self._check_input(input)
            lengths = None
        T, B, _ = x.shape
        if state is None:
            state = self.initial_state(B, x.device, x.dtype)
        state = self._check_state(state, B)
        if packed:
            state = opened.sort_state(state)
        whole = network_route(self, x.device)  # cuDNN runs the whole network, or None
        if whole is not None:
            output, new_state = cudnn.forward(self, whole.plan, x, state, lengths)
            return self._result(output, new_state, opened if packed else None)

        if stack.applies(self, x, state):  # one step of every layer in one engine call
            output, new_state = stack.step(self, x, state)
            return self._result(output, new_state, opened if packed else None)

        D = self.num_directions
        finals: list[tuple] = []
        layer_outputs = []
        layer_input = x
        for layer in range(self.num_layers):
            if layer > 0:
                layer_input = layer_outputs[-1]
                if self.dropout and self.training:
                    layer_input = F.dropout(layer_input, self.dropout, training=True)
                if self.skip:
                    layer_input = torch.cat([x, layer_input], dim=-1)
            outputs = []
            for d in range(D):
                cell = self.cells[f"layer{layer}" + ("_reverse" if d else "")]
                slots = tuple(field[self._slot_range(layer, d)] for field in state)
                seq = reverse_padded(layer_input, lengths) if d else layer_input
                if cell.graph.masks:
                    seq, slots = _with_masks(cell, seq, slots)
                out, final = dilated_unroll(cell, seq, slots, lengths, self.dilations[layer])
                outputs.append(reverse_padded(out, lengths) if d else out)
                finals.append(final[:len(self.state_fields)])
            layer_outputs.append(outputs[0] if D == 1 else torch.cat(outputs, dim=-1))
        output = torch.cat(layer_outputs, dim=-1) if self.skip else layer_outputs[-1]
        new_state = tuple(torch.cat(parts) for parts in zip(*finals))
        return self._result(output, new_state, opened if packed else None)

    def _result(self, output: torch.Tensor, new_state: tuple, opened):
        """``forward``'s result from the time-major output (T, B, ·) and state fields in the
        run's batch order: packed like the input (``opened``, the unpacked input, or None),
        batch-first if asked, and the state as the caller gets it."""
        if opened is not None:
            output = opened.pack(output)
            new_state = opened.unsort_state(new_state)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, self._state_out(new_state)

    # ---- interop -----------------------------------------------------------------------
    @classmethod
    def from_torch(cls, module, **options) -> RNN:
        """An rnnlab RNN computing the same function as a torch.nn.RNN / LSTM / GRU, given the
        module or its saved ``state_dict()`` (then ``mode="LSTM"|"GRU"|"RNN_TANH"`` and the
        module's ``batch_first``/``dropout``; sizes, layers and directions are read from the
        weights)."""
        from .interop import from_torch

        return from_torch(module, **options)

    def load_torch_state_dict(self, state_dict: dict) -> RNN:
        """Load the weights of a saved torch.nn.LSTM / GRU / RNN ``state_dict()`` (or of
        ``torch_state_dict()``) into this network (an ``lstm``, ``gru_torch`` or ``rnn`` RNN
        of the same sizes); returns self."""
        from .interop import TORCH_MODES, from_torch

        mode = next((m for m, spec in TORCH_MODES.items() if spec[0] == self.cell_name), None)
        if mode is None:
            raise ValueError(
                f"torch weights map onto the cells lstm, gru_torch and rnn; this RNN's cell is "
                f"{self.cell_name!r}"
            )
        other = from_torch(state_dict, mode=mode)
        mine = (self.input_size, self.hidden_size, self.num_layers, self.bidirectional)
        theirs = (other.input_size, other.hidden_size, other.num_layers, other.bidirectional)
        if mine != theirs or self.skip:
            raise ValueError(
                f"the state dict is for (input_size, hidden_size, num_layers, bidirectional) = "
                f"{theirs}, this RNN is {mine}" + (" with skip connections" if self.skip else "")
            )
        if other.bias != self.bias:
            raise ValueError(
                f"the state dict is of a module with bias={other.bias}, this RNN has "
                f"bias={self.bias}; build it with bias={other.bias}, or use "
                f"rnnlab.RNN.from_torch(state_dict, mode={mode!r})"
            )
        self.load_state_dict(other.state_dict())
        return self

    def torch_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under torch's names and in torch's layout, as plain tensors (copies):
        what ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` of the same sizes has as ``state_dict()``
        and loads with ``load_state_dict``. Edit it and load it back with
        ``load_torch_state_dict`` to change the weights in torch's terms."""
        from .interop import torch_state_dict

        return torch_state_dict(self)

    def torch_named_parameters(self):
        """``(name, tensor)`` for each parameter torch.nn.LSTM / GRU / RNN of the same sizes
        has, in torch's order and layout (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
        ``bias_hh_l0``, …): read-only, differentiable copies (``TorchLayoutCopy``) that refuse
        in-place writes, since those would change nothing. For an optimizer, use
        ``parameters()``; the biases are the 1-D parameters ``b``, ``b_*``."""
        from .interop import torch_names, torch_tensor

        for name in torch_names(self):
            yield name, torch_tensor(self, name)

    @property
    def all_weights(self) -> list[list[torch.Tensor]]:
        """As torch.nn.LSTM's: per layer and direction, ``[weight_ih, weight_hh, bias_ih,
        bias_hh]`` (no biases with ``bias=False``), read-only copies in torch's layout."""
        from .interop import torch_names, torch_tensor

        names = torch_names(self)
        per = 4 if self.bias else 2
        return [[torch_tensor(self, n) for n in names[k:k + per]]
                for k in range(0, len(names), per)]

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            from .interop import TORCH_NAME, torch_tensor

            if TORCH_NAME.fullmatch(name) is None:
                raise
            return torch_tensor(self, name)

    # ---- pickling ----------------------------------------------------------------------
    def __reduce_ex__(self, protocol):
        from ..serialization import reduce

        return reduce(self, protocol)

    def _pickle_config(self) -> dict:
        """The options that rebuild this network, as plain data (cells as JSON graphs)."""
        return {
            "input_size": self.input_size, "hidden_size": self.hidden_size,
            "num_layers": self.num_layers, "bidirectional": self.bidirectional,
            "batch_first": self.batch_first, "dropout": self.dropout, "skip": self.skip,
            "dilations": self.dilations, "bias": self.bias,
            "cells": {key: cell._pickle_config() for key, cell in self.cells.items()},
        }

    @classmethod
    def _from_config(cls, config: dict) -> RNN:
        """A network like the one ``_pickle_config`` described (parameters not restored)."""
        config = dict(config)
        layers = config.pop("cells")
        net = cls.__new__(cls)
        nn.Module.__init__(net)
        net._configure(**config)
        net._set_cells({key: cells.Cell._from_config(c) for key, c in layers.items()})
        return net
