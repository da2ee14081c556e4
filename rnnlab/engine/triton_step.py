"""Generated Triton kernels for a cell's step: the fused engine's route for CUDA.

The fused engine's plan (``fast.plan``) lists the instructions of one forward and one backward
step over (slices, B, columns) buffers. This module turns each run of elementwise instructions
between two GEMMs into ONE Triton kernel, written from the op table's Triton expressions
(``rnnlab.lang.ops.INSTRUCTIONS``, field ``triton``), and runs the GEMMs with ``torch.mm``. A
cell whose step has one recurrent GEMM (LSTM, peephole, Greff's variants, ``gru_torch``,
MUT1-3 …) thus costs per step one GEMM and one kernel forward, one kernel and one GEMM backward;
a step with several GEMMs (GRU in the seed's form reads ``(r ⊙ h) R``) gets one kernel between
each pair.

The sequence around the loop is the CPU engine's (``rnnlab.engine.fused.sequence``): the input
projection ``X = x W + b`` as one GEMM over all T·B rows, the forward loop, the whole sequence
one autograd node, and after the backward loop every weight gradient as one GEMM over T·B rows.
This module only supplies the loops (``TritonLoops``, the interface of ``fast.pyexec``'s
``PythonLoops`` and ``fast.native``'s ``NativeLoops``).

Kernel layout: program (r, j) computes columns ``j·BLOCK … (j+1)·BLOCK − 1`` of every H-wide
lane for batch row r. An instruction over k merged lanes becomes k block operations; a value
written or read once stays in registers for the rest of the kernel, and each written block is
stored once at the end (scratch buffers that no other stage reads, never). The step index t is
an argument, so one compiled kernel serves every step. A row instruction (layer norm) needs the
whole row in one program: its kernels use one block of ``next_pow2(H)`` columns per row.
Gradient sums of parameter vectors go to one partial row per batch row (shape (B, width), summed
after the loop); the prologue and epilogue, which see all T·B rows as one step, add to those
rows atomically.

Tested without a GPU: Triton's interpreter (``TRITON_INTERPRET=1`` before Triton is imported)
runs the same kernels on CPU tensors (``tests/engine/test_triton_step.py``).

CUDA graphs (``RNNLAB_CUDA_GRAPHS=1`` or ``rnnlab.engine.backend(cuda_graphs=True)``; off by
default): a loop launches T steps of GEMMs and kernels from Python, each costing host time that a
GPU finishing a small step faster than Python can launch it would wait for. With the switch on, a
loop on CUDA is captured in a CUDA graph and replayed with one call. A graph records the
addresses its launches read and write, so it is keyed by the layout of every buffer the loop
touches (address, shape, strides, dtype), the weights, T, B and the batch sizes per step, and
replayed only for exactly that layout — the fused engine's workspace and torch's caching
allocator hand a training loop the same memory step after step, so the key repeats. The first
call with a key runs eagerly (it compiles the kernels and initialises cuBLAS, which a capture
must not do); the second captures (which executes nothing) and replays; later ones replay. At
most ``GRAPHS_PER_LOOP`` graphs are kept per loop, the least recently used dropped first. The
capture is one function (``_capturer``), so the tests swap in a recorder with a graph's
semantics (launches recorded, not run; replay runs them on the recorded buffers) and check the
keying and the replayed values on CPU under the interpreter; the switch is off by default
because no capture has yet run on a device.

Not done: BLOCK and the number of warps are not tuned on a device; the graphs are not measured.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import textwrap
import threading
import weakref
from collections import OrderedDict

import torch

from ..lang.ops import CODE, INSTRUCTIONS, NORM_EPS
from . import settings
from .fast.plan import FILL, ROW_CODES, GemmI, Op, Plan, Ref, Refill, Slices, reads

NORM, NORM_BWD = CODE["norm"], CODE["norm_bwd"]

# the dtypes the kernels compute in (their loads and stores keep the buffers' dtype)
DTYPES = (torch.float32, torch.float64)
# columns per program when no row instruction needs the whole row in one block
MAX_BLOCK = 256
# captured CUDA graphs kept per loop (one per buffer layout, least recently used dropped)
GRAPHS_PER_LOOP = 16


def _triton():
    """The ``triton`` module (imported on first use)."""
    try:
        import triton
    except ImportError:
        raise ImportError("the generated fused kernels need Triton: pip install -e '.[gpu]' "
                          "(or pip install triton)") from None
    return triton


def triton_missing() -> str | None:
    """None when Triton imports, else why it does not and how to install it."""
    try:
        _triton()
    except ImportError as error:
        return str(error)
    return None


def unsupported(plan: Plan) -> str | None:
    """Why the generator cannot run ``plan`` (an instruction without a Triton form), or None."""
    for name in ("prologue", "forward", "backward", "epilogue"):
        for ins in getattr(plan, name):
            if isinstance(ins, Op) and ins.code != FILL and INSTRUCTIONS[ins.code].triton is None:
                return (f"instruction {INSTRUCTIONS[ins.code].name!r} has no Triton expression "
                        "in the op table (rnnlab.lang.ops.INSTRUCTIONS)")
    return None


_LOOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOOPS_LOCK = threading.Lock()


def loops_of(comp) -> TritonLoops:
    """The Triton loops of a compiled plan (``fused.Compiled``), generated once per plan."""
    with _LOOPS_LOCK:
        loops = _LOOPS.get(comp)
        if loops is None:
            loops = _LOOPS[comp] = TritonLoops(comp.plan)
        return loops


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


class TritonLoops:
    """The prologue, forward, backward and epilogue loops of a plan: GEMMs with torch, each run
    of elementwise instructions between them as one generated Triton kernel."""

    hoists_in_loop = False  # the hoist is one torch GEMM over all T·B rows before the loop

    def __init__(self, plan: Plan):
        self.plan = plan
        self.H = plan.ir.hidden_size
        # the constants the kernels read from C: layer norm's ε, then the plan's numbers
        self.consts: list[float] = [NORM_EPS]
        for name in ("prologue", "forward", "backward", "epilogue"):
            for ins in getattr(plan, name):
                for x in (getattr(ins, f, None) for f in ("a", "b", "c")):
                    if isinstance(x, float) and x not in self.consts:
                        self.consts.append(x)
        self.loops = {name: _Loop(self, name, getattr(plan, name))
                      for name in ("prologue", "forward", "backward", "epilogue")
                      if getattr(plan, name) or name == "forward"}
        self._module = None
        self._lock = threading.Lock()
        self._consts: dict = {}  # (dtype, device) -> the constants as a tensor

    @property
    def source(self) -> str:
        """The generated Triton module: every kernel of every loop."""
        consts = ", ".join(repr(c) for c in self.consts)
        head = ["import triton", "import triton.language as tl", "",
                f"# C: the constants, in the data's dtype: [{consts}]"]
        helpers = [_row_helper(code) for code in sorted(self._row_codes())]
        kernels = [k.source for loop in self.loops.values() for k in loop.kernels]
        return "\n".join(head) + "\n\n" + "\n\n".join(helpers + kernels)

    def _row_codes(self) -> set[int]:
        return {ins.code for loop in self.loops.values() for ins in loop.code
                if isinstance(ins, Op) and ins.code in ROW_CODES}

    def module(self):
        """The generated module, written to a file (Triton reads a kernel's source) and
        imported once."""
        with self._lock:
            if self._module is None:
                _triton()
                source = self.source
                digest = hashlib.sha256(source.encode()).hexdigest()[:20]
                folder = os.path.join(tempfile.gettempdir(), f"rnnlab-triton-{os.getuid()}")
                os.makedirs(folder, exist_ok=True)
                path = os.path.join(folder, f"step_{digest}.py")
                if not os.path.exists(path):
                    temporary = f"{path}.{os.getpid()}.tmp"
                    with open(temporary, "w") as f:
                        f.write(source)
                    os.replace(temporary, path)
                spec = importlib.util.spec_from_file_location(f"rnnlab_triton_{digest}", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                self._module = module
            return self._module

    @staticmethod
    def threads() -> int:
        return 1

    def buffer_shape(self, index: int, T: int, B: int, threads: int) -> tuple[int, ...]:
        """Shared buffers: a vector when given (a parameter), one partial row per batch row
        when the loops sum into it (a parameter's gradient); others (slices, B, width)."""
        buf = self.plan.buffers[index]
        if buf.shared:
            return (buf.width,) if buf.given else (B, buf.width)
        return (buf.slices.size(T), B, buf.width)

    def constants(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, like.device)
        c = self._consts.get(key)
        if c is None:
            c = self._consts[key] = torch.tensor(self.consts, dtype=like.dtype,
                                                 device=like.device)
        return c

    def run(self, name: str, tensors: list, weights: dict, sizes: list[int] | None, B: int,
            steps: int, threads: int):
        """Run one loop ("prologue", "forward", "backward", "epilogue") on the buffers."""
        self.loops[name].run(tensors, weights, sizes, B, steps)


def _row_helper(code: int) -> str:
    ins = INSTRUCTIONS[code]
    return (f"@triton.jit\ndef _row_{ins.name}(a, b, c, m, w, eps):\n"
            + textwrap.indent(ins.triton, "    "))


class _Loop:
    """One loop: its instructions cut at the GEMMs into stages, each stage one kernel."""

    def __init__(self, owner: TritonLoops, name: str, code: list):
        self.owner, self.name, self.code = owner, name, code
        self.reverse = name == "backward"
        stages: list[list] = [[]]
        self.items: list = []  # GemmI or stage index, in order
        for ins in code:
            if isinstance(ins, GemmI):
                if stages[-1]:
                    self.items.append(len(stages) - 1)
                    stages.append([])
                self.items.append(ins)
            else:
                stages[-1].append(ins)
        if stages[-1]:
            self.items.append(len(stages) - 1)
        else:
            stages.pop()
        plan = owner.plan
        # every buffer a launch of this loop reads or writes: what a captured graph is keyed by
        self.touches = sorted({r.buf for ins in code for f in ("a", "b", "c", "src", "dst", "bias")
                               if isinstance(r := getattr(ins, f, None), Ref)})
        self.graphs: OrderedDict = OrderedDict()  # key -> _SEEN or a captured graph's replay
        # buffers each stage reads; a scratch buffer written in one stage is stored only if a
        # GEMM or another stage reads it
        reads_of = [reads(s) for s in stages]
        gemm_reads = {r.buf for g in code if isinstance(g, GemmI)
                      for r in (g.a, g.bias) if isinstance(r, Ref)}
        self.kernels = []
        for k, stage in enumerate(stages):
            elsewhere = gemm_reads.union(*(r for j, r in enumerate(reads_of) if j != k))
            store = {b for b in range(len(plan.buffers))
                     if not plan.buffers[b].temp or b in elsewhere}
            self.kernels.append(_Kernel(owner, f"{name}_{k}", stage, store))

    def run(self, tensors: list, weights: dict, sizes, B: int, steps: int):
        """Run the loop: eagerly, or with CUDA graphs on (see the module) from a graph."""
        capture = (_capturer(tensors[self.owner.plan.S].device)
                   if settings.current().cuda_graphs else None)
        if capture is None:
            self._launch(_now, tensors, weights, sizes, B, steps)
            return
        key = self._key(tensors, weights, sizes, B, steps)
        with self.owner._lock:
            replay = self.graphs.get(key)
            if replay is not None:
                self.graphs.move_to_end(key)
        if replay is None:  # first sighting: eagerly (compiles kernels, initialises cuBLAS)
            self._keep(key, _SEEN)
            self._launch(_now, tensors, weights, sizes, B, steps)
            return
        if replay is _SEEN:
            replay = capture(lambda launch: self._launch(launch, tensors, weights, sizes, B,
                                                         steps))
            self._keep(key, replay)
        replay()

    def _keep(self, key, value) -> None:
        with self.owner._lock:
            self.graphs[key] = value
            self.graphs.move_to_end(key)
            while len(self.graphs) > GRAPHS_PER_LOOP:
                self.graphs.popitem(last=False)

    def _key(self, tensors: list, weights: dict, sizes, B: int, steps: int) -> tuple:
        """What a graph of this loop depends on: the layout of every buffer and weight its
        launches touch, the constants, T, B and the active rows per step."""
        return (steps, B, None if sizes is None else tuple(sizes),
                _layout(self.owner.constants(tensors[self.owner.plan.S])),
                tuple(_layout(tensors[i]) for i in self.touches),
                tuple((k, _layout(w)) for k, w in sorted(weights.items())))

    def _launch(self, launch, tensors: list, weights: dict, sizes, B: int, steps: int):
        """Every GEMM and kernel of the loop, each handed to ``launch(fn, *args, **kwargs)``."""
        owner, plan = self.owner, self.owner.plan
        like = tensors[plan.S]
        consts = owner.constants(like)
        module = owner.module()
        fns = [getattr(module, k.name) for k in self.kernels]
        args = [k.arguments(tensors, B if sizes is None else sizes[0]) for k in self.kernels]
        # rows of the parameters' gradient sums (B; fewer than the T·B rows of the epilogue)
        P = next((tensors[b].shape[0] for b in plan.dP.values() if tensors[b] is not None), 1)
        order = range(steps - 1, -1, -1) if self.reverse else range(steps)
        for t in order:
            n = B if sizes is None else sizes[t]
            n1 = n
            if self.reverse:
                n1 = 0 if t + 1 == steps else (B if sizes is None else sizes[t + 1])
            for item in self.items:
                if isinstance(item, GemmI):
                    launch(_gemm, plan, item, tensors, weights, t, n)
                else:
                    kernel = self.kernels[item]
                    launch(fns[item][(n, kernel.blocks)], t, n1, P, consts, *args[item],
                           H=owner.H, BLOCK=kernel.block)


_SEEN = object()  # a key seen once: the next call with it captures


def _now(fn, *args, **kwargs) -> None:
    """Launch at once (the eager loop; inside a CUDA graph's capture, recorded by CUDA)."""
    fn(*args, **kwargs)


def _layout(t) -> tuple | None:
    """Where and how a tensor lies: what a captured launch reads or writes."""
    if not isinstance(t, torch.Tensor):
        return None if t is None else ("value", t)
    return t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, t.device


def _cuda_graph(body):
    """Capture ``body(launch)`` in a CUDA graph (nothing runs while capturing); its replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body(_now)
    return graph.replay


def _capturer(device: torch.device):
    """How loops on ``device`` are captured: CUDA graphs on CUDA, else None (eager)."""
    return _cuda_graph if device.type == "cuda" else None


def _slice(plan: Plan, ref: Ref, t: int) -> int:
    kind = plan.buffers[ref.buf].slices
    return 0 if kind is Slices.ONE else (t + ref.toff) & 1 if kind is Slices.TWO else t + ref.toff


def _view(plan: Plan, tensors: list, ref: Ref, width: int, t: int, n: int) -> torch.Tensor:
    """Columns ``ref.col …`` of the n active rows of ``ref``'s slice at step t."""
    x = tensors[ref.buf]
    if plan.buffers[ref.buf].shared:
        return x[ref.col:ref.col + width]
    return x[_slice(plan, ref, t), :n, ref.col:ref.col + width]


def _gemm(plan: Plan, g: GemmI, tensors: list, weights: dict, t: int, n: int) -> None:
    """``dst (+)= [bias +] a @ op(W)`` on the n active rows (as ``fast.pyexec`` runs it)."""
    w = weights[g.weight]
    if g.transpose:
        w = w.t()
    d = _view(plan, tensors, g.dst, g.n, t, n)
    a = _view(plan, tensors, g.a, g.k, t, n)
    if g.bias is not None:
        bias = _view(plan, tensors, g.bias, g.n, t, n)
        if g.acc:
            d.add_(bias).addmm_(a, w)
        else:
            torch.addmm(bias, a, w, out=d)
    elif g.acc:
        d.addmm_(a, w)
    else:
        torch.mm(a, w, out=d)


class _Kernel:
    """The Triton source of one stage and how to hand it its buffers."""

    def __init__(self, owner: TritonLoops, name: str, code: list, store: set[int]):
        self.owner, self.name, self.code = owner, name, code
        self.plan, self.H = owner.plan, owner.H
        H = self.H
        whole_row = any(isinstance(ins, Op) and ins.code in ROW_CODES for ins in code)
        self.block = _next_pow2(H) if whole_row else min(_next_pow2(H), MAX_BLOCK)
        self.blocks = -(-H // self.block)
        self.buffers: list[int] = []  # kernel argument k: buffer self.buffers[k]
        self._store_ok = store
        self._lines: list[str] = []
        self._values: dict = {}  # block key -> the variable holding it
        self._stores: dict = {}  # block key -> (address, variable): stored at the end
        self._bases: dict = {}  # (buffer, slice key) -> the variable holding its row's address
        self._consts: dict = {}  # constant -> variable
        self._count = 0
        for ins in code:
            self._instruction(ins)
        params = ", ".join(f"p{k}, s{k}, r{k}" for k in range(len(self.buffers)))
        head = [
            "@triton.jit",
            f"def {name}(t, n1, P, C, {params}, H: tl.constexpr, BLOCK: tl.constexpr):",
            f"    # {len(code)} instruction(s) of the plan's {name.rsplit('_', 1)[0]} loop",
            "    row = tl.program_id(0).to(tl.int64)",
            "    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)",
            "    m = cols < H",
        ]
        tail = [f"    tl.store({addr}, {var}, mask=m)" for addr, var in self._stores.values()]
        self.source = "\n".join(head + ["    " + s for s in self._lines] + tail) + "\n"

    # ---- operands -------------------------------------------------------------------------
    def _fresh(self, expr: str) -> str:
        var = f"v{self._count}"
        self._count += 1
        self._lines.append(f"{var} = {expr}")
        return var

    def _arg(self, buf: int) -> int:
        if buf not in self.buffers:
            self.buffers.append(buf)
        return self.buffers.index(buf)

    def _key(self, ref: Ref, col: int) -> tuple:
        kind = self.plan.buffers[ref.buf].slices
        slice_key = 0 if kind is Slices.ONE else ref.toff % 2 if kind is Slices.TWO else ref.toff
        return ref.buf, slice_key, col

    def _address(self, ref: Ref, col: int) -> str:
        """The address block of columns ``col …`` of ``ref``'s buffer at this row and step."""
        buf = self.plan.buffers[ref.buf]
        k = self._arg(ref.buf)
        key = self._key(ref, col)[:2]
        base = self._bases.get(key)
        if base is None:
            if buf.shared:  # a parameter: one row; its gradient: the row's partial sum
                where = f"p{k}" if buf.given else f"p{k} + (row % P) * r{k}"
            elif buf.slices is Slices.ONE:
                where = f"p{k} + row * r{k}"
            elif buf.slices is Slices.TWO:
                where = f"p{k} + ((t + {ref.toff}) % 2) * s{k} + row * r{k}"
            else:
                where = f"p{k} + (t + {ref.toff}) * s{k} + row * r{k}"
            base = self._bases[key] = self._fresh(where)
        return f"{base} + {col} + cols"

    def _value(self, x, col_offset: int) -> str:
        """The variable holding an operand's block (``col_offset`` past its first column)."""
        if isinstance(x, float):
            var = self._consts.get(x)
            if var is None:
                index = self.owner.consts.index(x)
                var = self._consts[x] = self._fresh(f"tl.load(C + {index} + cols * 0)")
            return var
        col = x.col + col_offset
        key = self._key(x, col)
        if key not in self._values:
            self._values[key] = self._fresh(
                f"tl.load({self._address(x, col)}, mask=m, other=0.0)")
        return self._values[key]

    def _write(self, ref: Ref, col: int, var: str) -> None:
        key = self._key(ref, col)
        self._values[key] = var
        if ref.buf in self._store_ok:
            self._stores[key] = (self._address(ref, col), var)

    # ---- instructions -----------------------------------------------------------------------
    def _pooled(self, ins) -> None:
        """``norm`` or ``norm_bwd`` over the n lanes together (layer norm over all gates, the
        language's ``pnorm``): the statistics summed over the n blocks of the row this program
        holds, then each block written."""
        H, n = self.H, ins.width // self.H
        if ins.acc or ins.code not in (NORM, NORM_BWD):
            raise ValueError(f"instruction {ins} over {n} lanes together has no kernel")
        x = [self._value(ins.b if ins.code == NORM_BWD else ins.a, i * H) for i in range(n)]
        w = float(ins.width)
        mean = self._fresh("(" + " + ".join(f"tl.sum(tl.where(m, {v}, 0.0), 0)" for v in x)
                           + f") / {w!r}")
        dev = [self._fresh(f"tl.where(m, {v} - {mean}, 0.0)") for v in x]
        var = self._fresh("(" + " + ".join(f"tl.sum({d} * {d}, 0)" for d in dev) + f") / {w!r}")
        r = self._fresh(f"1.0 / tl.sqrt({var} + {NORM_EPS!r})")
        xh = [self._fresh(f"{d} * {r}") for d in dev]
        if ins.code == NORM:
            out = xh
        else:  # r (dy − mean(dy) − x̂ mean(dy ⊙ x̂))
            dy = [self._value(ins.a, i * H) for i in range(n)]
            g1 = self._fresh("(" + " + ".join(f"tl.sum(tl.where(m, {d}, 0.0), 0)" for d in dy)
                             + f") / {w!r}")
            g2 = self._fresh("(" + " + ".join(f"tl.sum(tl.where(m, {d} * {h}, 0.0), 0)"
                                              for d, h in zip(dy, xh)) + f") / {w!r}")
            out = [self._fresh(f"{r} * ({d} - {g1} - {h} * {g2})") for d, h in zip(dy, xh)]
        for i, v in enumerate(out):
            self._write(ins.dst, ins.dst.col + i * H, v)

    def _instruction(self, ins) -> None:
        H = self.H
        if ins.dst.col % H or ins.width % H:
            raise ValueError(f"instruction {ins} is not made of whole {H}-wide lanes")
        if isinstance(ins, Op) and ins.code in ROW_CODES and ins.width > H:
            self._pooled(ins)
            return
        for i in range(ins.width // H):
            col = ins.dst.col + i * H
            if isinstance(ins, Refill):  # rows from n1 on take the incoming gradient
                src = self._value(ins.src, i * H)
                old = self._value(ins.dst, i * H)
                self._write(ins.dst, col, self._fresh(f"tl.where(row >= n1, {src}, {old})"))
                continue
            if ins.code == FILL:
                self._write(ins.dst, col, self._value(float(ins.a), 0))
                continue
            a = self._value(ins.a, i * H)
            b = self._value(ins.b, i * H) if ins.b is not None else a
            spec = INSTRUCTIONS[ins.code]
            if ins.code in ROW_CODES:
                c = self._value(ins.c, i * H) if ins.c is not None else a
                eps = self._value(NORM_EPS, 0)
                value = self._fresh(f"_row_{spec.name}({a}, {b}, {c}, m, H, {eps})")
            else:
                value = self._fresh(spec.triton.format(a=a, b=b))
            if self.plan.buffers[ins.dst.buf].shared:  # a gradient sum over the rows
                if not ins.acc:
                    raise ValueError(f"instruction {ins} writes a shared buffer without adding")
                self._lines.append(f"tl.atomic_add({self._address(ins.dst, col)}, {value}, "
                                   "mask=m)")
                continue
            if ins.acc:
                old = self._value(ins.dst, i * H)
                value = self._fresh(f"{old} + {value}")
            self._write(ins.dst, col, value)

    # ---- launching --------------------------------------------------------------------------
    def arguments(self, tensors: list, rows: int) -> list:
        """(tensor, slice stride, row stride) of each buffer the kernel reads or writes."""
        out = []
        for b in self.buffers:
            x, buf = tensors[b], self.plan.buffers[b]
            if x.stride(-1) != 1:
                if not buf.given:
                    raise ValueError(f"buffer {buf.name} must have unit column stride")
                x = x.contiguous()
            if buf.shared:
                out += [x, 0, 0 if buf.given else x.stride(0)]
                continue
            if x.shape[1] < rows:
                raise ValueError(f"buffer {buf.name} has {x.shape[1]} rows, the loop runs "
                                 f"{rows}")
            out += [x, x.stride(0), x.stride(1)]
        return out
