"""Lower a cell graph to fast PyTorch code.

The plan, for a sequence x of shape (T, B, I):

1. **Hoist.** Every node that depends on ``x`` but not on the state is computed for all T steps
   before the loop. All linear maps of ``x`` (plus the biases added next to them) become ONE
   GEMM over the (T·B, I) input.
2. **Fuse pre-activations.** A sum such as ``W_i x + R_i h + p_i ⊙ c + b_i`` is split into its
   part that depends only on x (read from the hoisted GEMM) and its recurrent linear terms. All
   recurrent linear maps of one dependency level become one GEMM per step,
   ``pre = addmm(xpart[t], [h; …], R_catᵀ)``; an LSTM therefore does one ``addmm`` per step.
   Sums with the same activation are laid side by side so one ``sigmoid`` covers several gates.
3. **Generate code.** The step is emitted as Python source (``Program.source``), one line per
   remaining node, and compiled with ``compile``/``exec``; the hoisting likewise.

Weights are assembled from the named parameters once per call (``Program.prepare``), so
gradients flow to ``W_i``, ``R_i`` … as written in the paper.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from dataclasses import dataclass, field

import torch

from .graph import Graph

_ACT = {"tanh": "torch.tanh", "sigmoid": "torch.sigmoid", "relu": "torch.relu"}
_BIN = {"add": "+", "sub": "-", "mul": "*"}
# Merge recurrent GEMMs of one level into a single block matrix while at most this share of it
# would be zero blocks (an argument a gate does not read); above it, one GEMM per argument set.
MAX_ZERO_SHARE = 0.25


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


@dataclass
class Program:
    """Generated code for one graph: ``prepare`` weights, ``hoist`` over time, ``step``."""

    graph: Graph
    source: str
    hoist_fn: object
    step_fn: object
    weight_specs: dict  # prepared name -> how to build it from parameters
    num_xs: int  # number of hoisted tensors handed to each step

    def prepare(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Assemble the fused weight matrices from the named parameters."""
        return {name: build(params) for name, build in self.weight_specs.items()}

    def hoist(self, x: torch.Tensor, weights: dict) -> list[torch.Tensor]:
        """x (T, B, I) -> the per-step inputs of ``step``, each (T, B, n)."""
        T, B, _ = x.shape
        flat = self.hoist_fn(x.reshape(T * B, x.shape[-1]), weights)
        return [t.reshape(T, B, t.shape[-1]) for t in flat]

    def step(self, xs: tuple, state: tuple, weights: dict):
        """One step: xs (the hoisted tensors at t, each (B, n)), state -> (output, state)."""
        return self.step_fn(xs, state, weights)


def _total(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The sum of parameters sharing a block (usually just one: no copy, unlike ``sum``)."""
    return functools.reduce(operator.add, tensors)


def _fold(node, args: list[float]) -> float:
    """The value of an op over constants, computed once at compile time."""
    a = args[0]
    if node.op == "add":
        return a + args[1]
    if node.op == "sub":
        return a - args[1]
    if node.op == "mul":
        return a * args[1]
    if node.op == "tanh":
        return math.tanh(a)
    if node.op == "sigmoid":
        return 1.0 / (1.0 + math.exp(-a)) if a >= 0 else math.exp(a) / (1.0 + math.exp(a))
    if node.op == "relu":
        return max(a, 0.0)
    if node.op == "scale":
        return float(node.value) * a
    return a  # identity


def _ident(name: str, taken: set[str]) -> str:
    base = "v_" + re.sub(r"\W", "_", name.replace("'", "_new"))
    ident, k = base, 1
    while ident in taken:
        ident, k = f"{base}_{k}", k + 1
    taken.add(ident)
    return ident


def compile_graph(graph: Graph) -> Program:
    """Plan and generate the code for a validated graph."""
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
            if node.op == "input":
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
                self.constant[name] = _fold(node, [self.constant[a] for a in node.args])
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
        return op if op in _ACT else None

    def _merge_key(self, root: str) -> int:
        order = {"sigmoid": 0, "tanh": 1, "relu": 2}
        return order.get(self._sole_activation(root), 3)

    # ---- code generation ------------------------------------------------------------------
    def build(self) -> Program:
        g = self.g
        self.idents: dict[str, str] = {}
        taken: set[str] = {"torch", "xs", "state", "w", "x2d", "X"}
        for name in g.order:
            self.idents[name] = _ident(name, taken)
        self.weight_specs: dict = {}
        hoist_lines, xs_names = self._hoist_code()
        step_lines = self._step_code(xs_names)
        source = "\n".join(
            ["def hoist(x2d, w):", *hoist_lines, "", "def step(xs, state, w):", *step_lines]
        )
        namespace: dict = {"torch": torch}
        exec(compile(source, f"<rnnlab cell {g.name}>", "exec"), namespace)
        return Program(g, source, namespace["hoist"], namespace["step"], self.weight_specs,
                       len(xs_names))

    def _weight(self, key: str, build) -> str:
        self.weight_specs.setdefault(key, build)
        return f"w[{key!r}]"

    def _hoist_code(self):
        """Lines of ``hoist``: the one input GEMM, then x-only nodes and step x-parts."""
        g, H = self.g, self.g.hidden_size
        lines: list[str] = []
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
        self.block_cols: dict[str, tuple[int, int]] = {}
        if blocks:
            refs = [[self.nodes[m].ref for m in mats] for _, mats, _ in blocks]
            biases = [[self.nodes[b].ref for b in bs] for _, _, bs in blocks]

            def build_wx(params, refs=refs):
                return torch.cat([_total([params[r] for r in rs]) for rs in refs]).t()

            wx = self._weight("Wx", build_wx)
            if any(biases):
                def build_bx(params, biases=biases, H=H, refs=refs):
                    like = params[refs[0][0]]
                    return torch.cat([
                        _total([params[b] for b in bs]) if bs else like.new_zeros(H)
                        for bs in biases
                    ])

                lines.append(f"    X = torch.addmm({self._weight('bx', build_bx)}, x2d, {wx})")
            else:
                lines.append(f"    X = torch.mm(x2d, {wx})")
            col = 0
            for owner, _, _ in blocks:
                self.block_cols[owner] = (col, col + H)
                col += H
        # x-only nodes that the step phase reads
        emitted: set[str] = set()
        hoisted_out: list[str] = []  # expressions handed to the step

        def xvalue(name: str) -> str:
            """Emit an x-only node in the hoisting code; returns its identifier."""
            if name in emitted:
                return self.idents[name]
            node = self.nodes[name]
            ident = self.idents[name]
            if node.op == "input":
                return "x2d"
            if node.op == "param" or name in self.constant:
                return self._static(name)
            if name in self.roots and name in self.block_cols:
                a, b = self.block_cols[name]
                expr = " + ".join([f"X[:, {a}:{b}]"] + [self._xterm(t, xvalue)
                                                        for t in self.roots[name].x_extra])
            elif name in self.block_cols:
                a, b = self.block_cols[name]
                expr = f"X[:, {a}:{b}]"
            else:
                expr = self._expr(name, xvalue)
            lines.append(f"    {ident} = {expr}")
            emitted.add(name)
            return ident

        self.xs_index: dict[str, int] = {}
        # 1) per recurrent group: its x-part, (T·B, rows·H)
        for group in self.groups:
            roots = [self.roots[r] for r in group.roots]
            if not any(r.has_xpart for r in roots):
                continue
            cols = [self.block_cols.get(r.name) for r in roots]
            contiguous = all(c is not None for c in cols) and all(
                cols[k][1] == cols[k + 1][0] for k in range(len(cols) - 1)
            )
            if contiguous and not any(r.x_extra for r in roots):
                expr = f"X[:, {cols[0][0]}:{cols[-1][1]}]"
            else:
                pieces = [self._xpart_piece(r, xvalue) for r in roots]
                expr = pieces[0] if len(pieces) == 1 else f"torch.cat([{', '.join(pieces)}], 1)"
            group.xpart = len(hoisted_out)
            hoisted_out.append(expr)
        # 2) fused step roots outside groups (x-part plus per-step terms only)
        for name, root in self.roots.items():
            if self.kind[name] == "step" and name not in self.group_of and root.has_xpart:
                self.xs_index[name] = len(hoisted_out)
                hoisted_out.append(self._xpart_piece(root, xvalue))
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
                self.xs_index[name] = len(hoisted_out)
                hoisted_out.append(xvalue(name))
        lines.append(f"    return ({''.join(e + ', ' for e in hoisted_out)})")
        return lines, hoisted_out

    def _xterm(self, name: str, value) -> str:
        return value(name)

    def _xpart_piece(self, root: _Root, xvalue) -> str:
        """The x-dependent part of one fused sum over all steps, (T·B, H)."""
        terms = []
        if root.name in self.block_cols:  # matrices and biases are in the input GEMM
            a, b = self.block_cols[root.name]
            terms.append(f"X[:, {a}:{b}]")
        else:
            terms += [self._static(p) for p in root.x_params]
        terms += [xvalue(t) for t in root.x_extra]
        H = self.g.hidden_size
        base = f"x2d.new_zeros(x2d.shape[0], {H})"
        if not terms:
            return base
        if not any(t.startswith("X[") for t in terms) and all(
            self.kind[t] == "static" for t in root.x_params + root.x_extra
        ):
            terms.insert(0, base)  # a bias alone: broadcast it over the rows
        return " + ".join(terms)

    def _static(self, name: str) -> str:
        node = self.nodes[name]
        if name in self.constant:
            return repr(self.constant[name])
        ref = node.ref
        return self._weight(ref, lambda params, ref=ref: params[ref])

    def _expr(self, name: str, value) -> str:
        node = self.nodes[name]
        args = [value(a) for a in node.args]
        if node.op == "linear":
            ref = node.ref
            w = self._weight(f"{ref}^T", lambda params, ref=ref: params[ref].t())
            return f"torch.matmul({args[0]}, {w})"  # a parameter-only argument is 1-D
        if node.op in _BIN:
            return f"{args[0]} {_BIN[node.op]} {args[1]}"
        if node.op in _ACT:
            return f"{_ACT[node.op]}({args[0]})"
        if node.op == "identity":
            return args[0]
        if node.op == "scale":
            return f"{float(node.value)!r} * {args[0]}"
        raise AssertionError(f"cannot emit op {node.op}")

    def _step_code(self, xs_names):
        g = self.g
        lines: list[str] = []
        if self.xs_index or any(gr.xpart is not None for gr in self.groups):
            n = len(xs_names)
            lines.append(f"    ({''.join(f'xs{k}, ' for k in range(n))}) = xs")
        lines.append(f"    ({''.join(self.idents[s] + ', ' for s in g.states)}) = state")
        emitted: set[str] = set(g.states)
        group_pieces: dict[int, dict[str, str]] = {}

        def emit_group(gi: int) -> dict[str, str]:
            """The per-step GEMM of a group; returns root/activation -> identifier."""
            if gi in group_pieces:
                return group_pieces[gi]
            group = self.groups[gi]
            args = [value(a) for a in group.args]
            sizes = [g.sizes[a] for a in group.args]
            rows = []
            for r in group.roots:
                by_arg: dict[str, list[str]] = {}
                for t in self.roots[r].step_linear:
                    by_arg.setdefault(self.nodes[t].args[0], []).append(self.nodes[t].ref)
                rows.append([by_arg.get(a, []) for a in group.args])
            H = g.hidden_size

            def build(params, rows=rows, sizes=sizes, H=H):
                like = next(params[rs[0]] for row in rows for rs in row if rs)
                return torch.cat([
                    torch.cat([_total([params[r] for r in rs]) if rs else like.new_zeros(H, n)
                               for rs, n in zip(row, sizes)], 1)
                    for row in rows
                ]).t()

            w = self._weight(f"R{gi}", build)
            arg = args[0] if len(args) == 1 else f"torch.cat([{', '.join(args)}], 1)"
            pre = f"pre{gi}"
            if group.xpart is not None:
                lines.append(f"    {pre} = torch.addmm(xs{group.xpart}, {arg}, {w})")
            else:
                lines.append(f"    {pre} = torch.mm({arg}, {w})")
            # split into runs: consecutive roots read by the same activation share one call
            runs: list[list[str]] = []
            for r in group.roots:
                act = self._sole_activation(r)
                if runs and act is not None and self._sole_activation(runs[-1][-1]) == act:
                    runs[-1].append(r)
                else:
                    runs.append([r])
            idents: dict[str, str] = {}
            names = [f"{pre}_{k}" for k in range(len(runs))]
            if len(runs) == 1:
                names = [pre]
            else:
                widths = [len(run) * H for run in runs]
                lines.append(f"    {', '.join(names)}, = {pre}.split({widths}, 1)")
            for run, piece in zip(runs, names):
                act = self._sole_activation(run[0])
                if act is not None:
                    acted = f"{piece}_{act}"
                    lines.append(f"    {acted} = {_ACT[act]}({piece})")
                    outs = [self.g.consumers[r][0] for r in run]
                    if len(run) == 1:
                        idents[outs[0]] = acted
                    else:
                        targets = [self.idents[o] for o in outs]
                        lines.append(f"    {', '.join(targets)}, = {acted}.split({H}, 1)")
                        for o, t in zip(outs, targets):
                            idents[o] = t
                else:
                    if len(run) == 1:
                        idents[run[0]] = piece
                    else:
                        targets = [self.idents[r] + "_gemm" for r in run]
                        lines.append(f"    {', '.join(targets)}, = {piece}.split({H}, 1)")
                        for r, t in zip(run, targets):
                            idents[r] = t
            group_pieces[gi] = idents
            return idents

        def value(name: str) -> str:
            node = self.nodes[name]
            if node.op == "param" or name in self.constant:
                return self._static(name)
            if name in emitted:
                return self.idents[name]
            if self.kind[name] == "x":
                return f"xs{self.xs_index[name]}"
            ident = self.idents[name]
            if node.op in _ACT and node.args[0] in self.group_of:
                pieces = emit_group(self.group_of[node.args[0]])
                if name in pieces:  # the activation was applied to the GEMM output directly
                    emitted.add(name)
                    if pieces[name] != ident:
                        lines.append(f"    {ident} = {pieces[name]}")
                    return ident
            if name in self.roots:
                root = self.roots[name]
                terms = []
                if name in self.group_of:
                    terms.append(emit_group(self.group_of[name])[name])
                elif name in self.xs_index:
                    terms.append(f"xs{self.xs_index[name]}")
                terms += [value(t) for t in root.step_other]
                expr = " + ".join(terms)
            else:
                expr = self._expr(name, value)
            lines.append(f"    {ident} = {expr}")
            emitted.add(name)
            return ident

        batch = f"{self.idents[g.states[0]]}.shape[0]"

        def batched(name: str) -> str:
            """Outputs and new state always have batch rows, even if made of parameters."""
            if self.kind[name] != "static":
                return value(name)
            return f"({value(name)}).expand({batch}, {g.hidden_size})"

        out = batched(g.output)
        writes = [batched(g.writes[s]) for s in g.states]
        lines.append(f"    return {out}, ({''.join(w + ', ' for w in writes)})")
        return lines
