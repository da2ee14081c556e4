"""``Cell``: a compiled cell graph as a torch module holding the paper-named parameters."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..lang import Graph, state_type
from ..lang.compile import compile_graph
from ..lang.regularise import layer_norm_gains

INITS = ("uniform", "xavier", "orthogonal")
DEFAULT_FORGET_BIAS = 1.0


class Cell(nn.Module):
    """One step of a recurrent cell: ``h, state = cell(x, state)``.

    Parameters are registered under the names of the cell's equations (``W_i``, ``R_f``,
    ``p_o``, ``b_z`` …). ``print(cell)`` shows the equations.

    Args:
        graph: the validated cell graph (``rnnlab.cells.graph(name, I, H)``).
        init: ``"uniform"`` (default; every parameter U(−1/√H, 1/√H), as torch.nn.LSTM),
            ``"xavier"`` (Glorot-uniform matrices, zero vectors) or ``"orthogonal"``
            (orthogonal square recurrent matrices, Glorot-uniform input matrices, zero vectors).
            Layer-norm gains (``layer_norm=True``) start at 1 under every init.
        forget_bias: initial value of the forget-gate bias ``b_f`` for cells that have one
            (default 1.0: Gers et al. 2000, Jozefowicz et al. 2015's "LSTM-b"; pass 0.0 for the
            plain initialisation). Refused for cells without a forget gate.

    Shapes: x (B, input_size); every state field (B, hidden_size); output (B, hidden_size).

    ``remove_biases()`` turns the biases (``b``, ``b_*``) into fixed zeros, as a torch module
    built with ``bias=False`` has none (``rnnlab.RNN(..., bias=False)``).

    **Regularised cells** (a graph from ``rnnlab.lang.regularise``, or ``make(...,
    recurrent_dropout=p, …)``) draw their masks in training mode and use their expectation (1:
    the plain cell's function, deterministically) in evaluation mode. ``State`` holds the
    fields a caller carries (``graph.carried``); the mask state fields are added for each call
    (``state_masks``), the input mask is applied to x (``input_mask``) and weight-drop masks
    when the weights are assembled (``weights``). ``rnnlab.RNN`` draws the sequence masks once
    per sequence; a single ``forward`` step draws them for that step. Zoneout's masks are drawn
    for every step (``step_masks``: Bernoulli(p) in training, p in evaluation) and travel with
    x in the engine's input rows (``with_step_masks``).
    """

    def __init__(self, graph: Graph, init: str = "uniform", forget_bias: float | None = None):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        graph = graph.validate()
        if forget_bias is not None and "b_f" not in graph.params:
            raise ValueError(
                f"{graph.name} has no forget gate (no parameter b_f), so forget_bias does not "
                "apply; leave it out"
            )
        self.graph = graph
        self.program = compile_graph(graph)
        self.State = state_type(graph.carried)
        self.init = init
        self.forget_bias = (
            (DEFAULT_FORGET_BIAS if forget_bias is None else float(forget_bias))
            if "b_f" in graph.params
            else None
        )
        for name, shape in graph.params.items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def input_size(self) -> int:
        return self.graph.input_size

    @property
    def hidden_size(self) -> int:
        return self.graph.hidden_size

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters(recurse=False):
                if self.init == "uniform":
                    p.uniform_(-bound, bound)
                elif p.dim() == 1:
                    p.zero_()
                elif self.init == "orthogonal" and p.shape[0] == p.shape[1]:
                    nn.init.orthogonal_(p)
                else:
                    nn.init.xavier_uniform_(p)
            if self.forget_bias is not None and "b_f" in self._parameters:
                self.b_f.fill_(self.forget_bias)
            for name in layer_norm_gains(self.graph):  # layer norm starts as the identity
                if name in self._parameters:
                    self._parameters[name].fill_(1.0)

    def bias_names(self) -> list[str]:
        """The cell's biases: the vectors named ``b`` or ``b_*`` (parameters or, once removed,
        fixed zero buffers)."""
        return [name for name, shape in self.graph.params.items()
                if len(shape) == 1 and (name == "b" or name.startswith("b_"))]

    @property
    def biases_removed(self) -> bool:
        """True once ``remove_biases`` made the biases fixed zeros."""
        return any(name in self._buffers for name in self.bias_names())

    def remove_biases(self) -> None:
        """Make every bias a fixed zero: a non-persistent buffer of the same name, so that it
        leaves ``parameters()`` and the state dict (as torch.nn.LSTM(bias=False) has none) and
        still follows ``.to()``."""
        for name in self.bias_names():
            if name in self._parameters:
                zeros = torch.zeros_like(self._parameters.pop(name), requires_grad=False)
                self.register_buffer(name, zeros, persistent=False)

    # ---- regularisers' masks (graph.masks; see rnnlab.lang.regularise) --------------------
    @property
    def drawing(self) -> bool:
        """Whether calls draw random masks now: a regularised cell in training mode."""
        return self.training and any(m.p > 0 for m in self.graph.masks.values())

    def _bernoulli(self, shape, p: float, like: torch.Tensor) -> torch.Tensor:
        """Inverted-dropout mask: 0 with probability p, else 1/(1−p)."""
        keep = 1.0 - p
        return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(keep) / keep

    def state_masks(self, batch_size: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The mask state fields for one sequence each, (batch_size, hidden_size) per field
        (in the order of ``graph.states``): drawn in training, ones in evaluation."""
        shape = (batch_size, self.hidden_size)
        masks = []
        for name in self.graph.states:
            mask = self.graph.masks.get(name)
            if mask is None:
                continue
            if self.drawing and mask.p > 0:
                masks.append(self._bernoulli(shape, mask.p, like))
            else:
                masks.append(torch.ones(shape, dtype=like.dtype, device=like.device))
        return tuple(masks)

    def input_mask(self, batch_size: int, like: torch.Tensor) -> torch.Tensor | None:
        """The locked input mask (batch_size, input_size) to multiply x by, or None (no input
        dropout, or evaluation)."""
        if not self.drawing:
            return None
        mask = None
        for m in self.graph.masks.values():
            if m.kind == "input" and m.p > 0:
                draw = self._bernoulli((batch_size, self.input_size), m.p, like)
                mask = draw if mask is None else mask * draw
        return mask

    def _zoneout_draw(self, shape, p: float, like: torch.Tensor) -> torch.Tensor:
        """Zoneout mask: 1 (keep the previous value) with probability p, else 0.

        Drawn as ``u < p`` with u uniform in float32 (steps of 2⁻²⁴): one 32-bit random number
        per entry, where ``bernoulli_`` on a CPU without MKL's generator (AMD) draws a double,
        two of them; a zoned-out call draws T·B·H entries per field, as many as a dropout mask
        of every step's state."""
        u = torch.rand(shape, device=like.device)
        return u.lt_(p).to(like.dtype)

    def step_masks(self, steps: int, batch_size: int, like: torch.Tensor) -> torch.Tensor | None:
        """The per-step masks of one call, (steps, batch_size, H · number of step masks) in the
        order of ``graph.step_masks`` (zoneout's ``d_h``, ``d_c``): drawn anew for every step
        and sequence in training, the expectation p in evaluation; None for a cell without."""
        names = self.graph.step_masks
        if not names:
            return None
        H = self.hidden_size
        out = torch.empty(steps, batch_size, len(names) * H, dtype=like.dtype,
                          device=like.device)
        for k, name in enumerate(names):
            p = self.graph.masks[name].p
            block = out[:, :, k * H:(k + 1) * H]
            if self.drawing and p > 0:
                block.copy_(self._zoneout_draw((steps, batch_size, H), p, like))
            else:
                block.fill_(p)
        return out

    def with_step_masks(self, x: torch.Tensor) -> torch.Tensor:
        """x (T, B, input_size) -> the engine's input rows: x, then this call's per-step masks
        (``step_masks``; ``Program.row_size`` columns); x itself for a cell without."""
        masks = self.step_masks(x.shape[0], x.shape[1], x)
        return x if masks is None else torch.cat([x, masks], -1)

    def full_state(self, state, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The carried fields followed by this call's mask fields: what the plan steps."""
        state = tuple(state)
        if len(state) == len(self.graph.states):
            return state
        return state + self.state_masks(state[0].shape[0], like)

    def weights(self) -> dict[str, torch.Tensor]:
        """The fused weight matrices the plan reads.

        Built from the named parameters on every call that needs their gradients; otherwise
        (no_grad, inference_mode, frozen parameters) built once and reused while no parameter
        has changed (in-place updates bump a tensor's version, ``.to()`` makes new tensors), so
        stepping one token at a time does not re-assemble the weights each step."""
        params = {k: v for k, v in self._parameters.items() if v is not None}  # own, not
        #                                                       sub-modules' (as recurse=False)
        params.update(self._buffers)  # removed biases: fixed zeros
        if self.drawing and any(m.kind == "weight" for m in self.graph.masks.values()):
            for m in self.graph.masks.values():  # weight drop: a new mask on every call
                if m.kind == "weight" and m.p > 0:
                    params[m.target] = params[m.target] * self._bernoulli(
                        params[m.target].shape, m.p, params[m.target])
            return self.program.prepare(params)
        if torch.compiler.is_compiling() or (
                torch.is_grad_enabled() and any(p.requires_grad for p in params.values())):
            return self.program.prepare(params)
        if any(p.is_inference() for p in params.values()):
            # made under torch.inference_mode: such tensors keep no version counter to tell
            # an in-place update by, so their weights are assembled on every call
            return self.program.prepare(params)
        cache = self.__dict__.setdefault("_prepared", PreparedWeights())
        return cache.get(self.program, params.values(), lambda: params,
                         extra=(torch.is_inference_mode_enabled(),))

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else dict(
            self.__dict__)
        state = dict(state)
        state.pop("_prepared", None)  # a cache of tensors derived from the parameters
        return state

    def __reduce_ex__(self, protocol):
        from ..serialization import reduce

        return reduce(self, protocol)

    def _pickle_config(self) -> dict:
        """What rebuilds this cell, as plain data: its graph as cell JSON, init, forget_bias."""
        return {"graph": self.graph.to_json(indent=None), "init": self.init,
                "forget_bias": self.forget_bias, "biases_removed": self.biases_removed}

    @classmethod
    def _from_config(cls, config: dict) -> Cell:
        """A cell like the one ``_pickle_config`` described (parameters newly initialised)."""
        cell = cls(Graph.from_json(config["graph"]), init=config["init"],
                   forget_bias=config["forget_bias"])
        if config["biases_removed"]:
            cell.remove_biases()
        return cell

    def initial_state(self, batch_size: int, device=None, dtype=None):
        """A zero state: every field (batch_size, hidden_size)."""
        ref = next(self.parameters(), None)
        device = device if device is not None else (ref.device if ref is not None else None)
        dtype = dtype if dtype is not None else (ref.dtype if ref is not None else None)
        zeros = [
            torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
            for _ in self.graph.carried
        ]
        return self.State(*zeros)

    def check_state(self, state, batch_size: int):
        """Accept a State (or a tensor for one-field cells); check shapes; return a State."""
        fields = self.graph.carried
        if isinstance(state, torch.Tensor) and len(fields) == 1:
            state = (state,)
        if not isinstance(state, (tuple, list)) or len(state) != len(fields):
            raise ValueError(
                f"{self.name} state must be a {len(fields)}-field State"
                f"{fields}, got {type(state).__name__}"
            )
        for field, t in zip(fields, state):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (batch_size, self.hidden_size):
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"{self.name} state field {field!r} must have shape "
                    f"({batch_size}, {self.hidden_size}) = (batch, hidden_size), got {got}"
                )
        return self.State(*state)

    def forward(self, x: torch.Tensor, state=None):
        """One step. x (B, input_size), state a State of (B, hidden_size) -> (h, new State)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.input_size:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{self.name} step input must have shape (batch, {self.input_size}), got {got}; "
                "for whole sequences use rnnlab.RNN"
            )
        state = (
            self.initial_state(x.shape[0], x.device, x.dtype)
            if state is None
            else self.check_state(state, x.shape[0])
        )
        mask = self.input_mask(x.shape[0], x)
        if mask is not None:
            x = x * mask
        return self.step_with(x, state, self.weights())

    def step_with(self, x: torch.Tensor, state, weights: dict):
        """``forward`` without its checks, with the fused weights already prepared
        (``weights()``): x (B, input_size), state a tuple of (B, hidden_size) (the carried
        fields; a regularised cell adds its mask fields, ``full_state``, and its step masks,
        ``with_step_masks``)."""
        row = self.with_step_masks(x.unsqueeze(0))
        xs = tuple(t[0] for t in self.program.hoist(row, weights))
        h, new = self.program.step(xs, self.full_state(state, x), weights)
        return h, self.State(*new[:len(self.graph.carried)])

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"

    def __repr__(self) -> str:
        eqs = "\n".join("    " + line for line in str(self.graph).splitlines())
        return f"Cell {self.name!r}({self.extra_repr()}):\n{eqs}"


class PreparedWeights:
    """A plan's prepared weights kept for calls without gradients, made again when a tensor
    they come from has changed: its version (an in-place update), its storage (``.to()``, a
    new tensor), dtype or device. ``Cell.weights`` keeps one per cell; the whole-stack steps
    (``rnnlab.engine.stack``, ``rnnlab.grid.stack_step``) one per network."""

    def __init__(self):
        self.key = None
        self.prepared = None

    def get(self, program, sources, params, extra: tuple = ()) -> dict:
        """``program``'s weights prepared from ``params()`` (paper-named parameters), remade
        when ``sources`` (the tensors they are made from) or ``extra`` have changed."""
        key = (*extra, *((t._version, t.data_ptr(), t.dtype, t.device) for t in sources))
        if key != self.key:
            self.prepared = contiguous_matrices(program.prepare(params()))
            self.key = key
        return self.prepared


def contiguous_matrices(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Prepared weights kept for calls without gradients, each matrix stored as the GEMM reads
    it, (in, out) row-major: ``Program.prepare`` gives transposed views (so that autograd hands
    each parameter a contiguous gradient), and one row times a transposed matrix too large for
    the cache runs at half the speed (a step at a time at H = 512: 48 MB of weights per step of
    a 3-layer grid, 5.1 against 2.4 ms on the development machine)."""
    return {k: v.contiguous() if v.dim() == 2 else v for k, v in weights.items()}

