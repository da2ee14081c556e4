"""Laying plans out as lanes and planning loops: the zoo, the LSTM's shape, search-made cells."""

import pytest
import torch

from rnnlab import cells, engine
from rnnlab.engine import fused
from rnnlab.engine.fast.lanes import Gemm, Unsupported, hoist_lanes, step_lanes
from rnnlab.engine.fast.plan import SIGMOID, GemmI, Op, make_plan
from rnnlab.engine.unroll import reference_unroll, unroll
from rnnlab.lang import cell, sigmoid


def lanes_of(c):
    return step_lanes(c.program)


@pytest.mark.parametrize("name", cells.names())
def test_every_zoo_cell_is_read(name):
    options = {"raw_input": "project"} if name in ("mut1", "mut2") else {}
    ir = lanes_of(cells.make(name, 6, 5, **options))
    assert len(ir.writes) == len(cells.make(name, 5, 5).graph.states)
    for training in (True, False):
        for lengths in (True, False):
            make_plan(ir, training, lengths)


def test_lstm_plan_is_one_gemm_per_step_each_way():
    ir = lanes_of(cells.make("lstm", 6, 5))
    assert len(ir.gemms) == 1
    plan = make_plan(ir, training=True, lengths=False)
    assert sum(isinstance(i, GemmI) for i in plan.forward) == 1
    # backward per step: only dh = dG Rᵀ; dR is one GEMM over all steps after the loop
    assert sum(isinstance(i, GemmI) for i in plan.backward) == 1
    # the three sigmoid gates are one instruction over three lanes
    sig = [i for i in plan.forward if isinstance(i, Op) and i.code == SIGMOID]
    assert [i.width for i in sig] == [15]


def test_gru_plan_reads_hidden_state_from_the_history():
    ir = lanes_of(cells.make("gru", 6, 5))
    plan = make_plan(ir, training=True, lengths=False)
    gemms = [i for i in plan.forward if isinstance(i, GemmI)]
    assert len(gemms) == 2
    assert gemms[0].a.buf == plan.S  # R0 reads h straight from the state history
    assert plan.buffers[gemms[1].a.buf].name == "A1"  # R1 reads r ⊙ h, kept for dR


def test_unsupported_step_falls_back_to_reference(monkeypatch):
    @cell("gated_product", state=("h",))
    def gated_product(x, state, p):
        h = sigmoid(p.W @ x + p.R @ state.h) * (p.a * p.b)
        return h, (h,)

    c = cells.make(gated_product, 3, 3).double()
    x = torch.randn(4, 2, 3, dtype=torch.double, requires_grad=True)
    state = (torch.zeros(2, 3, dtype=torch.double),)
    expected = reference_unroll(c, x, state)[0]

    def refuse(*args, **kwargs):
        raise Unsupported("a form the engine does not know")

    monkeypatch.setattr(fused, "step_lanes", refuse)
    monkeypatch.setattr(fused, "_CACHE", type(fused._CACHE)())
    monkeypatch.setattr(engine.entry, "_WARNED", set())
    with engine.backend("auto"), pytest.warns(RuntimeWarning, match="does not know"):
        out, _ = unroll(c, x, state)
    assert type(out.grad_fn).__name__ != "FusedSequenceBackward"
    torch.testing.assert_close(out, expected)
    assert engine.explain(c) == "reference: a form the engine does not know"


def test_layout_refuses_unknown_instructions():
    from dataclasses import replace

    from rnnlab.lang.compile import Instr

    program = cells.make("rnn", 4, 4).program
    odd = replace(program, step_code=program.step_code + (Instr(999, "exp", (0,), 4),), _key=None)
    with pytest.raises(Unsupported, match="exp in a step"):
        step_lanes(odd)


def test_gemm_ops_keep_their_order_and_bias():
    ir = lanes_of(cells.make("mut3", 4, 4))
    gemms = [op for op in ir.ops if isinstance(op, Gemm)]
    assert [g.index for g in gemms] == [0, 1, 2]
    assert all(g.bias is not None for g in gemms)



@pytest.mark.parametrize("name, prologue", [("lstm", False), ("gru", False),
                                            ("gru_torch", True), ("mut1", True)])
def test_the_engine_computes_the_hoist(name, prologue):
    """x W + b and the hoist's x-only work (zeros, concatenation, σ, tanh) over all T·B rows."""
    c = cells.make(name, 8, 8)
    hoist = hoist_lanes(c.program)
    assert hoist is not None and hoist.weight == "Wx"
    plan = make_plan(lanes_of(c), training=True, lengths=False, hoist=hoist)
    assert bool(plan.prologue) == prologue and bool(plan.epilogue) == prologue
    if not prologue:  # every hoisted input is columns of X: the GEMMs add to X in place
        assert all(i.dst.buf == plan.X for i in plan.forward if isinstance(i, GemmI))
