"""Run a plan's instructions with torch ops: the fused engine without a compiler.

Each instruction becomes one torch call over all active rows, written straight into its
destination (``out=``), and the whole time loop is generated as Python source (see
``PythonLoops.source``) so that a step costs one call per instruction and nothing else. Works on
any device and dtype torch does.
"""

from __future__ import annotations

import torch

from ...lang.ops import INSTRUCTIONS, TORCH_HELPERS
from .plan import ADD, COPY, FILL, MUL, NEG, SUB, GemmI, Op, Plan, Ref, Refill, Slices

_aten = torch.ops.aten
# code -> (value without out=, call writing into D), from the op table; A, B are the operands,
# D the destination
_CALLS = {code: (ins.torch_value, ins.torch_out) for code, ins in enumerate(INSTRUCTIONS)
          if ins.torch_out is not None}
# accumulating forms that need no temporary
_ACCUMULATE = {COPY: "{D}.add_({A})", NEG: "{D}.sub_({A})", MUL: "{D}.addcmul_({A}, {B})",
               ADD: "{D}.add_({A}).add_({B})", SUB: "{D}.add_({A}).sub_({B})"}


class PythonLoops:
    """The forward and backward loops of a plan as generated Python functions."""

    hoists_in_loop = False  # the hoist is one torch GEMM over all T·B rows before the loop

    def __init__(self, plan: Plan):
        self.plan = plan
        self.loops = {name: _Loop(plan, name, getattr(plan, name), reverse=name == "backward")
                      for name in ("prologue", "forward", "backward", "epilogue")
                      if getattr(plan, name) or name == "forward"}

    @property
    def source(self) -> str:
        return "\n".join(loop.source for loop in self.loops.values())

    def buffer_shape(self, index: int, T: int, B: int, threads: int) -> tuple[int, ...]:
        """Shape of a buffer for this executor: shared ones are vectors, others (slices, B, w)."""
        buf = self.plan.buffers[index]
        return (buf.width,) if buf.shared else (buf.slices.size(T), B, buf.width)

    def run(self, name: str, tensors: list, weights: dict, sizes: list[int] | None, B: int,
            steps: int, threads: int):
        """Run one loop ("prologue", "forward", "backward", "epilogue") on the buffers."""
        self.loops[name].run(tensors, weights, sizes, B, steps)


class _Loop:
    """One generated loop: its source, the operand views it reads and its constants."""

    def __init__(self, plan: Plan, name: str, code: list, reverse: bool):
        self.plan = plan
        self.operands: list[tuple[int, int, int]] = []  # (buffer, column, width) per view
        self._index: dict[tuple[int, int, int], int] = {}
        self.consts: list[float] = []
        full = [self._line(ins, rows=False) for ins in code]
        part = [self._line(ins, rows=True) for ins in code]
        steps = "range(steps - 1, -1, -1)" if reverse else "range(steps)"
        lines = [f"def {name}(V, W, C, sizes, B, steps):"]
        lines += [f"    v{k} = V[{k}]" for k in range(len(self.operands))]
        lines += [f"    c{k} = C[{k}]" for k in range(len(self.consts))]
        lines.append(f"    for t in {steps}:")
        lines.append("        n = B if sizes is None else sizes[t]")
        if reverse:
            lines.append("        n1 = 0 if t + 1 == steps else (B if sizes is None else "
                         "sizes[t + 1])")
        lines.append("        if n == B:")
        lines += ["            " + s for s in full] or ["            pass"]
        lines.append("        else:")
        lines += ["            " + s for s in part] or ["            pass"]
        self.source = "\n".join(lines) + "\n"
        namespace = {"torch": torch, "aten": _aten, **TORCH_HELPERS}
        exec(compile(self.source, f"<rnnlab fused {name} loop>", "exec"), namespace)
        self.fn = namespace[name]

    def _view(self, ref: Ref, width: int) -> int:
        key = (ref.buf, ref.col, width)
        if key not in self._index:
            self._index[key] = len(self.operands)
            self.operands.append(key)
        return self._index[key]

    def _expr(self, x, width: int, rows: bool) -> str:
        """Source for an operand at step t (``rows``: only the n active rows)."""
        if isinstance(x, float):
            if x not in self.consts:
                self.consts.append(x)
            return f"c{self.consts.index(x)}"
        buf = self.plan.buffers[x.buf]
        v = f"v{self._view(x, width)}"
        if buf.shared:
            return v
        if buf.slices is Slices.ONE:
            e = f"{v}[0]"
        elif buf.slices is Slices.TWO:
            e = f"{v}[(t + {x.toff}) & 1]"
        else:
            e = f"{v}[t + {x.toff}]" if x.toff else f"{v}[t]"
        return e + "[:n]" if rows else e

    def _line(self, ins, rows: bool) -> str:
        if isinstance(ins, Refill):
            d = self._expr(ins.dst, ins.width, False)
            s = self._expr(ins.src, ins.width, False)
            return f"if n1 < n: {d}[n1:n].copy_({s}[n1:n])"
        if isinstance(ins, GemmI):
            w = f"W[{ins.weight!r}]" + (".t()" if ins.transpose else "")
            d = self._expr(ins.dst, ins.n, rows)
            a = self._expr(ins.a, ins.k, rows)
            if ins.bias is not None:
                bias = self._expr(ins.bias, ins.n, rows)
                if ins.acc:
                    return f"{d}.add_({bias}).addmm_({a}, {w})"
                return f"torch.addmm({bias}, {a}, {w}, out={d})"
            if ins.acc:
                return f"{d}.addmm_({a}, {w})"
            return f"torch.mm({a}, {w}, out={d})"
        assert isinstance(ins, Op)
        d = self._expr(ins.dst, ins.width, rows)
        if ins.code == FILL:
            return f"{d}.fill_({ins.a!r})"
        a = self._expr(ins.a, ins.width, rows)
        b = self._expr(ins.b, ins.width, rows) if ins.b is not None else None
        c = self._expr(ins.c, ins.width, rows) if ins.c is not None else None
        value, into = _CALLS[ins.code]
        value = value.format(A=a, B=b, C=c)
        if self.plan.buffers[ins.dst.buf].shared:  # a gradient sum over the rows
            assert ins.acc, "a shared destination only accumulates"
            return f"{d}.add_(({value}).sum(0))"
        if ins.acc:
            if ins.code in _ACCUMULATE:
                return _ACCUMULATE[ins.code].format(D=d, A=a, B=b)
            return f"{d}.add_({value})"
        return into.format(D=d, A=a, B=b, C=c)

    def run(self, tensors: list, weights: dict, sizes: list[int] | None, B: int, steps: int):
        """Run the loop over ``steps`` steps on the buffers (``sizes``: active rows per step)."""
        views = []
        for buf, col, width in self.operands:
            t = tensors[buf]
            if self.plan.buffers[buf].shared:
                views.append(t[col:col + width])
            else:
                views.append(t[:, :, col:col + width].unbind(0))
        like = tensors[self.plan.S]
        consts = [torch.tensor(c, dtype=like.dtype, device=like.device) for c in self.consts]
        self.fn(views, weights, consts, sizes, B, steps)
