"""The fused engine's plan is typed: lane sources, buffer slices and absent buffers.

Lane sources are ``Source`` values with a ``SourceKind``, buffer lengths a ``Slices`` with one
``size(T)`` that every executor uses, a buffer the plan does not have is None (never -1), and the
engine's caches live in the engine, not on the compiled ``Program``.
"""

import ast
import dataclasses
import gc
import weakref
from pathlib import Path

import pytest
import torch

import rnnlab
from rnnlab import cells
from rnnlab.engine import custom_op, fused
from rnnlab.engine.fast.lanes import Ew, Gemm, Source, SourceKind, hoist_lanes, step_lanes
from rnnlab.engine.fast.native import NativeLoops
from rnnlab.engine.fast.plan import GemmI, Op, Plan, Ref, Refill, Slices, make_plan
from rnnlab.engine.fast.pyexec import PythonLoops
from rnnlab.lang.compile import compile_graph

FAST = Path(rnnlab.__file__).parent / "engine" / "fast"
STEP_KINDS = {SourceKind.STEP_INPUT, SourceKind.STATE, SourceKind.GEMM, SourceKind.OP}
HOIST_KINDS = {SourceKind.PROJECTION, SourceKind.INPUT, SourceKind.OP}
BUFFER_FIELDS = ("X", "xin", "bx", "x", "dX", "dx", "S", "Y", "dY", "dF", "dS")


def _program(name: str):
    options = {"raw_input": "project"} if name in ("mut1", "mut2") else {}
    return cells.make(name, 8, 8, **options).program


def _plans(name: str):
    """Every plan of a zoo cell: training or not, lengths or not, with and without its hoist."""
    program = _program(name)
    ir, hoist = step_lanes(program), hoist_lanes(program)
    for training in (False, True):
        for lengths in (False, True):
            for own in ((None, hoist) if hoist is not None else (None,)):
                yield make_plan(ir, training, lengths, own)


@pytest.mark.parametrize("name", cells.names())
def test_every_lane_source_is_typed_and_points_at_what_made_it(name):
    program = _program(name)
    ir = step_lanes(program)
    assert all(isinstance(s, Source) and s.kind in STEP_KINDS for s in ir.sources)
    for lane, s in enumerate(ir.sources):
        if s.kind is SourceKind.OP:
            assert isinstance(ir.ops[s.index], Ew) and ir.ops[s.index].out == lane
        elif s.kind is SourceKind.GEMM:
            assert ir.gemms[s.index].out[s.lane] == lane
        elif s.kind is SourceKind.STATE:
            assert 0 <= s.index < ir.num_states and s.lane == 0
        else:
            assert s.lane * ir.hidden_size < ir.xs_widths[s.index]
    hoist = hoist_lanes(program)
    if hoist is not None:
        assert all(isinstance(s, Source) and s.kind in HOIST_KINDS for s in hoist.sources)
        for lane, s in enumerate(hoist.sources):
            if s.kind is SourceKind.PROJECTION:
                assert s.lane * hoist.hidden_size < hoist.width
            elif s.kind is SourceKind.OP:
                assert hoist.ops[s.index].out == lane


def test_sources_compare_and_match_by_value():
    source = Source(SourceKind.GEMM, 2, 1)
    assert source == Source(SourceKind.GEMM, index=2, lane=1) != Source(SourceKind.GEMM, 2, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.lane = 0
    match source:
        case Source(SourceKind.GEMM, g, i):
            assert (g, i) == (2, 1)
        case _:
            raise AssertionError("a GEMM source did not match its pattern")


def test_slices_turn_into_sizes_in_one_place():
    assert [s.size(7) for s in Slices] == [7, 8, 1, 2]
    assert [s.size(0) for s in Slices] == [0, 1, 1, 2]
    assert Slices("T+1") is Slices.HISTORY  # the values are the ones the module doc writes


@pytest.mark.parametrize("name", ["lstm", "gru", "mut1", "gru_torch"])
def test_executors_shape_buffers_by_their_slices(name):
    T, B = 5, 3
    for plan in _plans(name):
        python, native = PythonLoops(plan), NativeLoops(plan, None)  # encoding needs no library
        for i, buf in enumerate(plan.buffers):
            assert isinstance(buf.slices, Slices)
            if buf.shared:
                assert python.buffer_shape(i, T, B, 1) == (buf.width,)
                continue
            assert python.buffer_shape(i, T, B, 1) == (buf.slices.size(T), B, buf.width)
            if not native.per_thread(i):
                assert native.buffer_shape(i, T, B, 2) == (buf.slices.size(T), B, buf.width)


def _refs(code: list):
    for ins in code:
        for name in ("dst", "a", "b", "src", "bias"):
            ref = getattr(ins, name, None)
            if isinstance(ref, Ref):
                yield ref


@pytest.mark.parametrize("name", cells.names())
def test_absent_buffers_are_none_and_present_ones_are_indices(name):
    for plan in _plans(name):
        n = len(plan.buffers)
        for field in BUFFER_FIELDS:
            value = getattr(plan, field)
            assert value is None or 0 <= value < n, (field, value)
        assert plan.S is not None and plan.Y is not None
        assert (plan.dY is not None) == plan.training == (plan.dS is not None)
        if plan.hoist is None:
            assert None not in plan.xs and plan.X is None and plan.x is None
        else:  # a hoisted input that is columns of X has no buffer of its own
            assert (plan.X is None) == (plan.hoist.weight is None)
            assert all(i is None or 0 <= i < n for i in plan.xs)
        code = plan.prologue + plan.forward + plan.backward + plan.epilogue + plan.hoisted_forward
        assert all(isinstance(ins, Op | GemmI | Refill) for ins in code)
        assert all(0 <= ref.buf < n for ref in _refs(code))


def test_lstm_plan_layout_is_pinned():
    """The LSTM's buffers, as the plan laid them out before it was typed."""
    program = cells.make("lstm", 6, 5).program
    ir, hoist = step_lanes(program), hoist_lanes(program)
    plan = make_plan(ir, True, False, hoist)
    assert [(b.name, b.slices.value) for b in plan.buffers] == [
        ("X", "T"), ("xin", "T"), ("bx", "1"), ("X_step", "1"), ("S", "T+1"), ("Y", "T"),
        ("P", "T"), ("R", "1"), ("dY", "T"), ("dF", "1"), ("dS", "2"), ("dX", "T"), ("dR", "1"),
        ("dRh", "T")]
    assert plan.xs == [None]  # its one hoisted input (the gates' x W + b) is all of X
    assert (plan.X, plan.x, plan.dX, plan.dx) == (0, None, 11, None)
    assert [g.kind for g in map(ir.sources.__getitem__, ir.gemms[0].args)] == [SourceKind.STATE]
    assert sum(isinstance(op, Gemm) for op in ir.ops) == 1


_TAGS = {"xs", "ew", "gemm", "state", "X", "x", "T", "T+1", "1", "2"}


def _tagged(side) -> bool:
    """A source's tag (``src[0]``) or a buffer's ``slices``: what used to be compared with a
    string."""
    return ((isinstance(side, ast.Subscript) and isinstance(side.slice, ast.Constant)
             and side.slice.value == 0)
            or (isinstance(side, ast.Attribute) and side.attr == "slices"))


@pytest.mark.parametrize("path", sorted(FAST.glob("*.py")) + [FAST.parent / "fused.py"],
                         ids=lambda p: p.name)
def test_no_string_tags_are_compared(path):
    """Sources and slices are checked by type, never against their old string tags."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = (node.left, *node.comparators)
            tags = [s.value for s in sides if isinstance(s, ast.Constant) and s.value in _TAGS]
            assert not (tags and any(_tagged(s) for s in sides)), (
                f"{path.name}:{node.lineno} compares with {tags}")
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict):
            keys = {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            assert not keys & _TAGS, f"{path.name}:{node.lineno} looks up {keys}"


def test_the_engine_s_caches_let_a_program_go():
    """Plans and custom-op handles are the engine's, kept per program only while it lives."""
    program = compile_graph(cells.graph("lstm", 4, 4))
    assert not any(f.name in ("plans", "handle") for f in dataclasses.fields(program))
    comp = fused.compiled(program, True, False)
    assert isinstance(comp.plan, Plan)
    handle = custom_op.handle_of(program)
    assert custom_op.program_by_handle(handle) is program
    assert fused.compiled(program, True, False) is comp  # found again without re-planning
    alive = weakref.ref(program)
    del program
    gc.collect()
    assert alive() is None
    with pytest.raises(KeyError):
        custom_op.program_by_handle(handle)


def test_a_typed_plan_runs_as_before():
    """The fused loop (python executor) still equals the reference loop on the typed plan."""
    from rnnlab import engine
    from rnnlab.engine.unroll import reference_unroll, unroll

    torch.manual_seed(0)
    c = cells.make("gru_torch", 8, 8).double()
    x = torch.randn(4, 3, 8, dtype=torch.double, requires_grad=True)
    state = (torch.randn(3, 8, dtype=torch.double, requires_grad=True),)
    with engine.backend("python"):
        out, final = unroll(c, x, state, torch.tensor([4, 3, 2]))
    expected, expected_final = reference_unroll(c, x, state, torch.tensor([4, 3, 2]))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(final[0], expected_final[0])
    grads = torch.autograd.grad(out.sum(), [x, *state])
    expected_grads = torch.autograd.grad(expected.sum(), [x, *state])
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)
