"""Lower a cell graph to its plan: one data structure that every executor reads.

The plan, for a sequence x of shape (T, B, I):

1. **Hoist.** Every node that depends on ``x`` but not on the state is computed for all T steps
   before the loop. All linear maps of ``x`` (plus the biases added next to them) become ONE
   GEMM over the (T·B, I) input.
2. **Fuse pre-activations.** A sum such as ``W_i x + R_i h + p_i ⊙ c + b_i`` is split into its
   part that depends only on x (read from the hoisted GEMM) and its recurrent linear terms. All
   recurrent linear maps of one dependency level become one GEMM per step,
   ``pre = addmm(xpart[t], [h; …], R_catᵀ)``; an LSTM therefore does one ``addmm`` per step.
   Sums with the same activation are laid side by side so one ``sigmoid`` covers several gates.
   Recurrent terms of a lower level in a sum that mixes levels (``W x + R h + R2 tanh(R3 h)``)
   stay per-step terms added after the GEMM. A recurrent map outside any sum (``norm(R_i h)``
   of a layer-normalised cell) is a sum of one term: it joins its level's GEMM too.
3. **Statics.** Work on parameters alone (``tanh(p_c)``, ``U @ p_c``: forms the search makes) is
   done once per call, before the hoist, and read by the hoist and the step like a parameter.

The result is a ``Program``: three lists of ``Instr`` (statics, hoist over T·B rows, one step
over B rows) over numbered values, plus ``WeightSpec``s saying how each fused weight matrix is
assembled from the paper-named parameters. It holds no code: the reference executor
(``Program.hoist``/``step``: torch ops under autograd), the fused engine (which lays the values
out as H-wide lanes, ``rnnlab.engine.fast.lanes``), and the printer (``Program.source``) all read
the same instructions, and ``Program.key`` (its structure) keys every cache. Weights are
assembled from the named parameters once per call (``Program.prepare``), so gradients flow to
``W_i``, ``R_i`` … as written in the paper.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch

from .graph import Graph
from .ops import OPS, fold

# activations that may be applied once to several gates laid side by side
_MERGEABLE = ("sigmoid", "tanh", "relu")
# Merge recurrent GEMMs of one level into a single block matrix while at most this share of it
# would be zero blocks (an argument a gate does not read); above it, one GEMM per argument set.
MAX_ZERO_SHARE = 0.25


@dataclass(frozen=True)
class Instr:
    """``out = op(args)``: one instruction of a plan, over numbered values.

    Ops: ``x`` (the input rows), ``state`` (state field ``value``), ``xs`` (hoisted input
    ``value`` at this step), ``w`` (the prepared weight vector ``key``), ``const`` (the number
    ``value``), ``zeros`` (a zero block), ``gemm`` (``[bias +] cat(args) @ w[key]``), ``cols``
    (``width`` columns of ``args[0]`` from column ``value``), ``cat`` (columns side by side),
    ``expand`` (a vector on every row), and the elementwise ops of the op table
    (``rnnlab.lang.ops``; ``scale`` multiplies by ``value``). ``width`` is the number of
    columns (0 for a number)."""

    out: int
    op: str
    args: tuple[int, ...] = ()
    width: int = 0
    key: str | None = None
    value: float | None = None
    bias: int | None = None


@dataclass(frozen=True)
class WeightSpec:
    """How a prepared weight is assembled from named parameters.

    kinds: ``param`` (the parameter ``refs[0]`` itself), ``t`` (its transpose), ``input``
    (the input GEMM's (I, N) matrix: blocks ``refs[k]`` summed, stacked, transposed), ``bias``
    (its bias: vectors ``refs[k]`` summed, zeros for an empty block), ``recurrent`` (a block
    matrix: ``refs[row][col]`` summed, zeros (H, sizes[col]) where empty, transposed)."""

    kind: str
    refs: tuple
    sizes: tuple[int, ...] = ()


def _total(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The sum of parameters sharing a block (usually just one: no copy, unlike ``sum``)."""
    return functools.reduce(operator.add, tensors)


def _assemble(spec: WeightSpec, params: dict[str, torch.Tensor], H: int) -> torch.Tensor:
    kind, refs = spec.kind, spec.refs
    if kind == "param":
        return params[refs[0]]
    if kind == "t":
        return params[refs[0]].t()
    if kind == "input":
        return torch.cat([_total([params[r] for r in rs]) for rs in refs]).t()
    like = params[next(r for rs in refs for r in (rs if kind == "bias" else
                                                  [x for cell in rs for x in cell]))]
    if kind == "bias":
        return torch.cat([_total([params[b] for b in bs]) if bs else like.new_zeros(H)
                          for bs in refs])
    assert kind == "recurrent", kind
    return torch.cat([
        torch.cat([_total([params[r] for r in rs]) if rs else like.new_zeros(H, n)
                   for rs, n in zip(row, spec.sizes)], 1)
        for row in refs
    ]).t()


# id(code) -> (code, its steps); holding the code keeps its id from being reused meanwhile
_STEPS: dict[int, tuple[tuple[Instr, ...], list]] = {}
_MAX_STEPS = 4096  # then all are dropped (an architecture search compiles many plans)


def _execute(code: tuple[Instr, ...], env: dict, w: dict, inputs: dict, rows: int | None):
    """Run instructions with torch ops (under autograd): the reference executor.

    Each instruction is turned once into a function of its own (``_instruction``), so that a
    call runs them without deciding again what each one is: a small single step (sampling)
    spent about a fifth of its time there. Under torch.compile they are made as the trace goes
    (the trace sees the same torch calls; no cache to look up)."""
    if torch.compiler.is_compiling():
        steps = [(ins.out, _instruction(ins)) for ins in code]
    else:
        found = _STEPS.get(id(code))
        if found is None:
            if len(_STEPS) >= _MAX_STEPS:
                _STEPS.clear()
            found = _STEPS[id(code)] = code, [(ins.out, _instruction(ins)) for ins in code]
        steps = found[1]
    for out, run in steps:
        env[out] = run(env, w, inputs, rows)


def _instruction(ins: Instr) -> Callable:
    """One instruction as a function ``(env, w, inputs, rows) -> its value``."""
    op, args = ins.op, ins.args
    if op == "w":
        key = ins.key
        return lambda env, w, inputs, rows: w[key]
    if op == "const":
        value = ins.value
        return lambda env, w, inputs, rows: value
    if op == "x":
        return lambda env, w, inputs, rows: inputs["x"]
    if op in ("state", "xs"):
        i = int(ins.value)
        return lambda env, w, inputs, rows: inputs[op][i]
    if op == "gemm":
        key, bias = ins.key, ins.bias
        if len(args) == 1:
            (a,) = args

            def operand(env):
                return env[a]
        else:
            def operand(env):
                return torch.cat([env[a] for a in args], -1)
        if bias is None:
            return lambda env, w, inputs, rows: torch.matmul(operand(env), w[key])
        return lambda env, w, inputs, rows: torch.addmm(env[bias], operand(env), w[key])
    if op == "cols":
        (a,), start = args, int(ins.value)
        stop = start + ins.width
        return lambda env, w, inputs, rows: env[a][:, start:stop]
    if op == "cat":
        return lambda env, w, inputs, rows: torch.cat([env[a] for a in args], 1)
    if op == "zeros":
        width = ins.width
        return lambda env, w, inputs, rows: inputs["like"].new_zeros(rows, width)
    if op == "expand":
        (a,), width = args, ins.width
        return lambda env, w, inputs, rows: torch.as_tensor(
            env[a], dtype=inputs["like"].dtype, device=inputs["like"].device).expand(rows, width)
    fn, value = OPS[op].torch, ins.value  # the op table's torch function: (*args, value)
    if len(args) == 1:
        (a,) = args
        return lambda env, w, inputs, rows: fn(env[a], value)
    if len(args) == 2:
        a, b = args
        return lambda env, w, inputs, rows: fn(env[a], env[b], value)
    return lambda env, w, inputs, rows: fn(*[env[a] for a in args], value)


@dataclass(eq=False)
class Program:
    """The plan of one graph (see the module docstring); holds data only, so it pickles.

    ``xs``: the hoist's outputs (value ids), handed to each step as ``xs`` instructions;
    ``output``/``writes``: the step's output and new state fields."""

    graph: Graph
    weight_specs: dict[str, WeightSpec]
    statics: tuple[Instr, ...]
    static_keys: dict[str, int]  # computed vector -> its value id among ``statics``
    hoist_code: tuple[Instr, ...]
    xs: tuple[int, ...]
    step_code: tuple[Instr, ...]
    output: int
    writes: tuple[int, ...]
    step_masks: tuple[str, ...] = ()  # per-step masks, read from the input row after x
    _key: tuple | None = field(default=None, repr=False)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("source", None)  # cached text, printed again when read
        return state

    @property
    def hidden_size(self) -> int:
        return self.graph.hidden_size

    @property
    def input_size(self) -> int:
        return self.graph.input_size

    @property
    def mask_size(self) -> int:
        """Columns of per-step masks after x in each step's input row (0 for most cells)."""
        return len(self.step_masks) * self.hidden_size

    @property
    def row_size(self) -> int:
        """Columns of each step's input row: x (``input_size``), then the step masks."""
        return self.input_size + self.mask_size

    @property
    def num_xs(self) -> int:
        return len(self.xs)

    @cached_property
    def xs_widths(self) -> tuple[int, ...]:
        widths = {ins.out: ins.width for ins in self.hoist_code}
        return tuple(widths[v] for v in self.xs)

    @property
    def key(self) -> tuple:
        """The plan's structure (no names of the cell, no parameter values): equal keys run the
        same loops, so caches are keyed by it."""
        if self._key is None:
            key = (self.hidden_size, self.input_size, len(self.graph.states),
                   tuple(sorted(self.weight_specs.items())), self.statics,
                   tuple(sorted(self.static_keys.items())), self.hoist_code, self.xs,
                   self.step_code, self.output, self.writes, len(self.step_masks))
            self._key = _HashedKey(key)
        return self._key

    def prepare(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Assemble the fused weight matrices from the named parameters and compute the
        statics (vectors of parameters alone); everything ``hoist`` and ``step`` read."""
        H = self.hidden_size
        w = {name: _assemble(spec, params, H) for name, spec in self.weight_specs.items()}
        if self.statics:
            env: dict = {}
            _execute(self.statics, env, w, {}, None)
            for key, v in self.static_keys.items():
                w[key] = env[v]
        return w

    def hoist(self, x: torch.Tensor, weights: dict) -> list[torch.Tensor]:
        """x (T, B, row_size) -> the per-step inputs of ``step``, each (T, B, n). The input row
        is x itself, or for a cell with per-step masks x followed by them (``row_size``)."""
        T, B, _ = x.shape
        return [v.reshape(T, B, v.shape[-1])
                for v in self.hoist_rows(x.reshape(T * B, x.shape[-1]), weights)]

    def hoist_rows(self, rows: torch.Tensor, weights: dict) -> tuple[torch.Tensor, ...]:
        """``hoist`` of input rows (N, row_size) without a time axis: each (N, n)."""
        env: dict = {}
        _execute(self.hoist_code, env, weights, {"x": rows, "like": rows}, rows.shape[0])
        return tuple(env[v] for v in self.xs)

    def step(self, xs: tuple, state: tuple, weights: dict):
        """One step: xs (the hoisted tensors at t, each (B, n)), state -> (output, state)."""
        env: dict = {}
        like = state[0]
        _execute(self.step_code, env, weights, {"xs": xs, "state": state, "like": like},
                 like.shape[0])
        return env[self.output], tuple(env[v] for v in self.writes)

    @cached_property
    def source(self) -> str:
        """The plan printed as Python-like text (for reading; nothing runs it)."""
        return _print(self)


class _HashedKey(tuple):
    """A plan's structure as a tuple whose hash is computed once (it is deep)."""

    def __new__(cls, items):
        self = super().__new__(cls, items)
        self._hash = tuple.__hash__(self)
        return self

    def __hash__(self):
        return self._hash

    def __reduce__(self):
        return (_HashedKey, (tuple(self),))


def _print(p: Program) -> str:
    def name(v: int) -> str:
        return f"v{v}"

    def line(ins: Instr, static: bool) -> str:
        op, a = ins.op, [name(v) for v in ins.args]
        if op == "w":
            e = f"w[{ins.key!r}]"
        elif op == "const":
            e = repr(ins.value)
        elif op == "x":
            e = "x2d"
        elif op in ("state", "xs"):
            e = f"{op}[{int(ins.value)}]"
        elif op == "gemm":
            arg = a[0] if len(a) == 1 else f"torch.cat([{', '.join(a)}], 1)"
            if static:
                e = f"torch.matmul({arg}, w[{ins.key!r}])"
            elif ins.bias is None:
                e = f"torch.mm({arg}, w[{ins.key!r}])"
            else:
                e = f"torch.addmm({name(ins.bias)}, {arg}, w[{ins.key!r}])"
        elif op == "cols":
            e = f"{a[0]}[:, {int(ins.value)}:{int(ins.value) + ins.width}]"
        elif op == "cat":
            e = f"torch.cat([{', '.join(a)}], 1)"
        elif op == "zeros":
            e = f"zeros(rows, {ins.width})"
        elif op == "expand":
            e = f"{a[0]}.expand(rows, {ins.width})"
        elif OPS[op].kind == "binary":
            e = f"{a[0]} {'+-*'['add sub mul'.split().index(op)]} {a[1]}"
        elif op == "scale":
            e = f"{ins.value!r} * {a[0]}"
        else:
            e = f"torch.{op}({a[0]})"
        return f"    {name(ins.out)} = {e}"

    lines = []
    if p.statics:
        lines += ["def statics(w):", *(line(i, True) for i in p.statics)]
        lines += [f"    w[{k!r}] = {name(v)}" for k, v in p.static_keys.items()] + [""]
    lines += ["def hoist(x2d, w):", *(line(i, False) for i in p.hoist_code),
              f"    return ({''.join(name(v) + ', ' for v in p.xs)})", ""]
    lines += ["def step(xs, state, w):", *(line(i, False) for i in p.step_code),
              f"    return {name(p.output)}, ({''.join(name(v) + ', ' for v in p.writes)})"]
    return "\n".join(lines)


@dataclass
class _Root:
    """A fused sum: its x-part terms, recurrent linear terms and other per-step terms."""

    name: str
    x_linear: list[str] = field(default_factory=list)  # linear(x) nodes
    x_params: list[str] = field(default_factory=list)  # param-vector terms (folded biases)
    x_extra: list[str] = field(default_factory=list)  # other x-only terms (tanh(x), consts …)
    step_linear: list[str] = field(default_factory=list)  # recurrent linear maps (GEMM level)
    step_other: list[str] = field(default_factory=list)  # per-step terms added after the GEMM

    @property
    def has_xpart(self) -> bool:
        return bool(self.x_linear or self.x_params or self.x_extra)


@dataclass
class _Group:
    """One recurrent GEMM per step: roots (rows) × argument nodes (columns)."""

    level: int
    roots: list[str]
    args: list[str]
    xpart: int | None = None  # index of its hoisted x-part among the step inputs


def compile_graph(graph: Graph) -> Program:
    """Plan a validated graph (see the module docstring)."""
    return _Compiler(graph.validate()).build()


class _Compiler:
    def __init__(self, graph: Graph):
        self.g = graph
        self.nodes = graph.nodes
        self.x = next((n for n, node in graph.nodes.items() if node.op == "input"), None)
        self._classify()
        self._find_roots()
        self._group()

    # ---- analysis -----------------------------------------------------------------------
    def _classify(self):
        """kind: 'static' (params/consts), 'x' (depends on x only) or 'step' (on the state)."""
        self.kind: dict[str, str] = {}
        self.level: dict[str, int] = {}
        self.constant: dict[str, float] = {}  # nodes made of constants only, folded
        for name in self.g.order:
            node = self.nodes[name]
            if node.op in ("input", "mask"):  # a step mask is per-step data, like x
                kind = "x"
            elif node.op == "state":
                kind = "step"
            elif node.op in ("param", "const"):
                kind = "static"
            else:
                kinds = {self.kind[a] for a in node.args}
                kind = "step" if "step" in kinds else ("x" if "x" in kinds else "static")
            self.kind[name] = kind
            if node.op == "const":
                self.constant[name] = float(node.value)
            elif node.args and all(a in self.constant for a in node.args):
                self.constant[name] = fold(node.op, [self.constant[a] for a in node.args],
                                           node.value)
            lv = max((self.level.get(a, 0) for a in node.args), default=0)
            self.level[name] = lv + 1 if node.op == "linear" and kind == "step" else lv

    def _is_x_linear(self, name: str) -> bool:
        node = self.nodes[name]
        return node.op == "linear" and node.args[0] == self.x

    def _find_roots(self):
        """Sum trees: internal adds (single reader, itself an add) fold into their root."""
        users = self.g.consumers

        def internal(name: str) -> bool:
            u = users[name]
            return (
                self.nodes[name].op == "add"
                and len(u) == 1
                and u[0] in self.nodes
                and self.nodes[u[0]].op == "add"
            )

        def terms(name: str) -> list[str]:
            out = []
            for arg in self.nodes[name].args:
                out.extend(terms(arg) if internal(arg) else [arg])
            return out

        self.roots: dict[str, _Root] = {}
        self.folded: set[str] = set()  # nodes computed inside a root, never emitted alone
        for name in self.g.order:
            node = self.nodes[name]
            if node.op != "add" or internal(name) or self.kind[name] == "static":
                continue
            root = _Root(name)
            for t in terms(name):
                tk = self.kind[t]
                if self._is_x_linear(t) and len(users[t]) == 1:
                    root.x_linear.append(t)
                elif tk == "static" and self.nodes[t].op == "param":
                    root.x_params.append(t)
                elif tk in ("x", "static"):
                    root.x_extra.append(t)
                elif self.nodes[t].op == "linear" and len(users[t]) == 1:
                    root.step_linear.append(t)
                else:
                    root.step_other.append(t)
            if self.kind[name] == "step" and root.step_linear:
                top = max(self.level[t] for t in root.step_linear)
                lower = [t for t in root.step_linear if self.level[t] < top]
                root.step_linear = [t for t in root.step_linear if self.level[t] == top]
                root.step_other.extend(lower)
            if not (root.x_linear or root.step_linear):
                continue  # a plain sum: nothing to fuse
            if self.kind[name] == "step" and not root.step_linear and not root.has_xpart:
                continue
            self.roots[name] = root
            stack = list(node.args)
            while stack:
                a = stack.pop()
                if internal(a):
                    self.folded.add(a)
                    stack.extend(self.nodes[a].args)
            self.folded.update(root.x_linear + root.step_linear)
        # a recurrent linear map outside any sum (``norm(R_i h)`` of a layer-normalised cell,
        # ``tanh(R h)`` of a mutant) is a sum of one term, so that it joins its level's GEMM
        # instead of being a small GEMM of its own
        for name in self.g.order:
            if (self.nodes[name].op == "linear" and self.kind[name] == "step"
                    and name not in self.folded and name in self.g.live):
                self.roots[name] = _Root(name, step_linear=[name])

    def _group(self):
        """Recurrent GEMMs: per level, one block GEMM unless it would be mostly zeros."""
        by_level: dict[int, list[str]] = {}
        for name, root in self.roots.items():
            if root.step_linear:
                by_level.setdefault(self.level[root.step_linear[0]], []).append(name)
        self.groups: list[_Group] = []
        self.group_of: dict[str, int] = {}
        for level in sorted(by_level):
            roots = by_level[level]
            arg_sets = {
                r: [self.nodes[t].args[0] for t in self.roots[r].step_linear] for r in roots
            }
            all_args = list(dict.fromkeys(a for r in roots for a in arg_sets[r]))
            size = self.g.sizes
            total = sum(size[a] for a in all_args) * len(roots)
            used = sum(size[a] for r in roots for a in set(arg_sets[r]))
            if 1 - used / total <= MAX_ZERO_SHARE:
                parts = [(roots, all_args)]
            else:
                by_sig: dict[tuple, list[str]] = {}
                for r in roots:
                    by_sig.setdefault(tuple(dict.fromkeys(arg_sets[r])), []).append(r)
                parts = [(rs, list(sig)) for sig, rs in by_sig.items()]
            for rs, args in parts:
                rs = sorted(rs, key=self._merge_key)  # same activation side by side
                for r in rs:
                    self.group_of[r] = len(self.groups)
                self.groups.append(_Group(level, rs, args))

    def _sole_activation(self, root: str) -> str | None:
        """The activation op that is the root's only reader, if mergeable across roots."""
        users = self.g.consumers[root]
        if len(users) != 1 or users[0] not in self.nodes or self.roots[root].step_other:
            return None
        op = self.nodes[users[0]].op
        return op if op in _MERGEABLE else None

    def _merge_key(self, root: str) -> int:
        order = {"sigmoid": 0, "tanh": 1, "relu": 2}
        return order.get(self._sole_activation(root), 3)

    # ---- emitting the plan ------------------------------------------------------------------
    def build(self) -> Program:
        self.count = 0
        self.specs: dict[str, WeightSpec] = {}
        self.static_code: list[Instr] = []
        self.static_ids: dict[str, int] = {}  # node -> value id among the statics
        self.static_keys: dict[str, int] = {}
        self.widths: dict[int, int] = {}
        self.pooled: dict[tuple, int] = {}  # (code list, arguments) -> their pooled norm
        hoist_code: list[Instr] = []
        xs = self._hoist(hoist_code)
        step_code: list[Instr] = []
        output, writes = self._step(step_code, [self.widths[v] for v in xs])
        return Program(self.g, self.specs, tuple(self.static_code), self.static_keys,
                       tuple(hoist_code), tuple(xs), tuple(step_code), output, tuple(writes),
                       self.g.step_masks)

    def emit(self, code: list, op: str, args=(), width: int | None = None, key=None, value=None,
             bias=None) -> int:
        """Append ``out = op(args)`` to ``code``; returns the new value's id."""
        if width is None:  # elementwise: as wide as the widest argument (numbers are 0)
            width = max((self.widths[a] for a in args), default=0)
        out = self.count
        self.count += 1
        self.widths[out] = width
        code.append(Instr(out, op, tuple(args), width, key,
                          None if value is None else float(value), bias))
        return out

    def _sum(self, code: list, terms: list[int]) -> int:
        total = terms[0]
        for t in terms[1:]:
            total = self.emit(code, "add", (total, t))
        return total

    def _weight(self, key: str, spec: WeightSpec) -> str:
        self.specs.setdefault(key, spec)
        return key

    def _static(self, code: list, name: str) -> int:
        """A node of parameters and numbers only, as read by the hoist or the step."""
        node = self.nodes[name]
        if name in self.constant:
            return self.emit(code, "const", width=0, value=self.constant[name])
        if node.op == "param":
            key = self._weight(node.ref, WeightSpec("param", (node.ref,)))
        else:  # computed once per call, among the statics
            key = f"={name}"
            self.static_keys[key] = self._static_value(name)
        return self.emit(code, "w", width=self.g.hidden_size, key=key)

    def _static_value(self, name: str) -> int:
        """Emit a static node among the statics (memoised)."""
        if name in self.static_ids:
            return self.static_ids[name]
        code, node, H = self.static_code, self.nodes[name], self.g.hidden_size
        if name in self.constant:
            v = self.emit(code, "const", width=0, value=self.constant[name])
        elif node.op == "param":
            key = self._weight(node.ref, WeightSpec("param", (node.ref,)))
            v = self.emit(code, "w", width=H, key=key)
        else:
            v = self._expr(code, name, self._static_value)
        self.static_ids[name] = v
        return v

    def _expr(self, code: list, name: str, value) -> int:
        """A node computed as it is written (one instruction)."""
        node = self.nodes[name]
        args = [value(a) for a in node.args]
        if node.op == "linear":
            ref = node.ref
            key = self._weight(f"{ref}^T", WeightSpec("t", (ref,)))
            return self.emit(code, "gemm", (args[0],), self.g.hidden_size, key=key)
        if node.op == "identity":
            return args[0]
        if node.op == "pnorm":  # the arguments side by side, one norm over all, a block of it
            H, key = self.g.hidden_size, (id(code), tuple(args))
            if key not in self.pooled:
                joined = self.emit(code, "cat", args, len(args) * H)
                self.pooled[key] = self.emit(code, "norm", (joined,))
            return self.emit(code, "cols", (self.pooled[key],), H, value=int(node.value) * H)
        return self.emit(code, node.op, args, value=node.value)

    def _hoist(self, code: list) -> list[int]:
        """The hoist: the one input GEMM, then x-only nodes and the steps' x-parts."""
        g, H = self.g, self.g.hidden_size
        masks = g.step_masks
        self.mask_ids: dict[str, int] = {}
        if masks:  # the input row is x, then the step masks (H columns each)
            row = self.emit(code, "x", width=g.input_size + len(masks) * H)
            x_id = (self.emit(code, "cols", (row,), g.input_size, value=0)
                    if self.x is not None else None)
            for k, m in enumerate(masks):
                self.mask_ids[m] = self.emit(code, "cols", (row,), H,
                                             value=g.input_size + k * H)
        else:
            x_id = self.emit(code, "x", width=g.input_size) if self.x is not None else None
        # blocks of the input GEMM, in group order so a group's x-part is one contiguous slice
        blocks: list[tuple[str, list[str], list[str]]] = []  # (owner, matrices, bias params)
        for group in self.groups:
            for r in group.roots:
                root = self.roots[r]
                if root.x_linear:
                    blocks.append((r, root.x_linear, root.x_params))
        for name, root in self.roots.items():
            if name not in self.group_of and root.x_linear:
                blocks.append((name, root.x_linear, root.x_params))
        in_roots = {t for root in self.roots.values() for t in root.x_linear}
        for name in g.order:
            if self._is_x_linear(name) and name not in in_roots and name in g.live:
                blocks.append((name, [name], []))
        self.block_cols: dict[str, int] = {}
        X = None
        if blocks:
            refs = tuple(tuple(self.nodes[m].ref for m in mats) for _, mats, _ in blocks)
            biases = tuple(tuple(self.nodes[b].ref for b in bs) for _, _, bs in blocks)
            width = len(blocks) * H
            bias = None
            if any(biases):
                self._weight("bx", WeightSpec("bias", biases))
                bias = self.emit(code, "w", width=width, key="bx")
            self._weight("Wx", WeightSpec("input", refs))
            X = self.emit(code, "gemm", (x_id,), width, key="Wx", bias=bias)
            for k, (owner, _, _) in enumerate(blocks):
                self.block_cols[owner] = k * H
        emitted: dict[str, int] = {}

        def cols(name: str) -> int:
            return self.emit(code, "cols", (X,), H, value=self.block_cols[name])

        def xvalue(name: str) -> int:
            """Emit an x-only node in the hoist; returns its value id."""
            if name in emitted:
                return emitted[name]
            node = self.nodes[name]
            if node.op == "input":
                return x_id
            if node.op == "mask":
                return self.mask_ids[name]
            if self.kind[name] == "static":
                return self._static(code, name)
            if name in self.block_cols:
                v = cols(name)
                if name in self.roots:
                    v = self._sum(code, [v] + [xvalue(t) for t in self.roots[name].x_extra])
            else:
                v = self._expr(code, name, xvalue)
            emitted[name] = v
            return v

        def xpart_piece(root: _Root) -> int:
            """The x-dependent part of one fused sum over all steps, (T·B, H)."""
            terms = []
            if root.name in self.block_cols:  # matrices and biases are in the input GEMM
                terms.append(cols(root.name))
            else:
                terms += [self._static(code, p) for p in root.x_params]
            terms += [xvalue(t) for t in root.x_extra]
            if not terms or (root.name not in self.block_cols and all(
                    self.kind[t] == "static" for t in root.x_params + root.x_extra)):
                terms.insert(0, self.emit(code, "zeros", width=H))  # a bias alone: broadcast
            return self._sum(code, terms)

        out: list[int] = []  # the values handed to the step
        self.xs_index: dict[str, int] = {}
        # 1) per recurrent group: its x-part, (T·B, rows·H)
        for group in self.groups:
            roots = [self.roots[r] for r in group.roots]
            if not any(r.has_xpart for r in roots):
                continue
            starts = [self.block_cols.get(r.name) for r in roots]
            contiguous = all(c is not None for c in starts) and all(
                starts[k] + H == starts[k + 1] for k in range(len(starts) - 1))
            if contiguous and not any(r.x_extra for r in roots):
                v = self.emit(code, "cols", (X,), len(roots) * H, value=starts[0])
            else:
                pieces = [xpart_piece(r) for r in roots]
                v = pieces[0] if len(pieces) == 1 else self.emit(code, "cat", pieces,
                                                                 len(pieces) * H)
            group.xpart = len(out)
            out.append(v)
        # 2) fused step roots outside groups (x-part plus per-step terms only)
        for name, root in self.roots.items():
            if self.kind[name] == "step" and name not in self.group_of and root.has_xpart:
                self.xs_index[name] = len(out)
                out.append(xpart_piece(root))
        # 3) x-only nodes read directly by the step (or written to the state)
        absorbed = {t for r in self.roots.values() for t in r.x_extra + r.x_linear}
        readers = g.consumers
        for name in g.order:
            if self.kind[name] != "x" or name in self.folded:
                continue
            step_reader = any(
                u not in self.nodes  # a state write or the output
                or (self.kind[u] == "step" and not (
                    name in absorbed and (u in self.folded or u in self.roots)))
                for u in readers[name]
            )
            if step_reader and name in g.live:
                self.xs_index[name] = len(out)
                out.append(xvalue(name))
        return out

    def _step(self, code: list, xs_widths: list[int]):
        g, H = self.g, self.g.hidden_size
        xs = [self.emit(code, "xs", width=w, value=k) for k, w in enumerate(xs_widths)]
        states = {s: self.emit(code, "state", width=H, value=j) for j, s in enumerate(g.states)}
        emitted: dict[str, int] = {}
        group_pieces: dict[int, dict[str, int]] = {}

        def emit_group(gi: int) -> dict[str, int]:
            """The per-step GEMM of a group; returns root/activation -> value id."""
            if gi in group_pieces:
                return group_pieces[gi]
            group = self.groups[gi]
            args = [value(a) for a in group.args]
            rows = []
            for r in group.roots:
                by_arg: dict[str, list[str]] = {}
                for t in self.roots[r].step_linear:
                    by_arg.setdefault(self.nodes[t].args[0], []).append(self.nodes[t].ref)
                rows.append(tuple(tuple(by_arg.get(a, [])) for a in group.args))
            key = self._weight(f"R{gi}", WeightSpec(
                "recurrent", tuple(rows), tuple(g.sizes[a] for a in group.args)))
            bias = xs[group.xpart] if group.xpart is not None else None
            pre = self.emit(code, "gemm", args, len(group.roots) * H, key=key, bias=bias)
            # runs: consecutive roots read by the same activation share one call
            runs: list[list[str]] = []
            for r in group.roots:
                act = self._sole_activation(r)
                if runs and act is not None and self._sole_activation(runs[-1][-1]) == act:
                    runs[-1].append(r)
                else:
                    runs.append([r])
            ids: dict[str, int] = {}
            start = 0
            for run in runs:
                piece = pre if len(runs) == 1 else self.emit(code, "cols", (pre,), len(run) * H,
                                                            value=start)
                start += len(run) * H
                act = self._sole_activation(run[0])
                if act is not None:
                    piece = self.emit(code, act, (piece,))
                    names = [g.consumers[r][0] for r in run]
                else:
                    names = run
                for k, n in enumerate(names):
                    ids[n] = piece if len(run) == 1 else self.emit(code, "cols", (piece,), H,
                                                                   value=k * H)
            group_pieces[gi] = ids
            return ids

        def value(name: str) -> int:
            node = self.nodes[name]
            if node.op == "state":
                return states[node.ref]
            if self.kind[name] == "static":
                return self._static(code, name)
            if name in emitted:
                return emitted[name]
            if self.kind[name] == "x":
                return xs[self.xs_index[name]]
            if OPS[node.op].kind == "activation" and node.args[0] in self.group_of:
                pieces = emit_group(self.group_of[node.args[0]])
                if name in pieces:  # the activation was applied to the GEMM output directly
                    emitted[name] = pieces[name]
                    return pieces[name]
            if name in self.roots:
                root = self.roots[name]
                terms = []
                if name in self.group_of:
                    terms.append(emit_group(self.group_of[name])[name])
                elif name in self.xs_index:
                    terms.append(xs[self.xs_index[name]])
                terms += [value(t) for t in root.step_other]
                v = self._sum(code, terms)
            else:
                v = self._expr(code, name, value)
            emitted[name] = v
            return v

        def batched(name: str) -> int:
            """Outputs and new state always have batch rows, even if made of parameters."""
            if self.kind[name] != "static":
                return value(name)
            return self.emit(code, "expand", (value(name),), H)

        output = batched(g.output)
        writes = [batched(g.writes[s]) for s in g.states]
        return output, writes
