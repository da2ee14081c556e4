"""The engine's fast paths for regularised cells, checked for behaviour and equality (speed is
measured by ``benchmarks/speed.py --regularisers``, never asserted here):

* zoneout: the engine's own hoist with the step masks read beside x (a buffer of the input
  row's columns), the masks constants of the loss (no adjoint);
* layer norm: the native row kernels on every build, norm results recomputed in the backward
  pass instead of kept, and the hoist's epilogue run inside the backward loop.
"""

import pytest
import torch

from rnnlab import cells, engine
from rnnlab.engine import custom_op, fused
from rnnlab.engine.fast import native
from rnnlab.engine.fast import plan as fused_plan
from rnnlab.engine.unroll import reference_unroll, unroll
from rnnlab.lang import cell, tanh
from rnnlab.lang.ops import CODE

I, H, T, B = 6, 8, 5, 3
ZONE = {"h": 0.3, "c": 0.5}


def _plan(c, training=True, lengths=False):
    comp = fused.compiled(c.program, training, lengths)
    assert isinstance(comp, fused.Compiled), comp
    return comp.plan


def _names(plan) -> dict:
    return {b.name: b for b in plan.buffers}


def _inputs(c, seed=0, rows=True):
    """A float64 zoned-out call's input rows (x then the masks), state and parameters."""
    torch.manual_seed(seed)
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    state = tuple(torch.randn(B, H, dtype=torch.double, requires_grad=True)
                  for _ in c.program.graph.states)
    row = c.with_step_masks(x) if rows else x
    return x, row, state


def _grads(result, inputs, seed=1):
    """Values and gradients of a random projection of a run's output and final state."""
    output, final = result
    outputs = (output, *final)
    g = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in outputs)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [t.detach() for t in outputs], grads


def _assert_same(got, expected):
    for a, b in zip(got, expected, strict=True):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            torch.testing.assert_close(a, b)


# ---- zoneout: the masks beside x --------------------------------------------------------------
def test_zoneout_runs_the_engine_s_own_hoist_with_the_masks_beside_x():
    c = cells.make("lstm", I, H, zoneout=ZONE).train()
    plain = _names(_plan(cells.make("lstm", I, H)))
    plan = _plan(c)
    names = _names(plan)
    assert plan.hoist is not None and plan.hoist.masks == 2
    assert plan.masks is not None and names["masks"].given and names["masks"].width == 2 * H
    assert plan.hoisted_forward  # the input GEMM inside the native loop, as for any cell
    assert not plan.dxs  # the masks get no adjoint ...
    assert names["P"].width == plain["P"].width  # ... so nothing more is kept for one
    assert "hoist by the engine" in engine.explain(c)


@pytest.mark.parametrize("backend", ["native", "python"])
@pytest.mark.parametrize("lengths", [None, torch.tensor([5, 4, 2])])
def test_zoneout_with_the_masks_beside_x_equals_the_reference(backend, lengths):
    """Values and gradients (x, state, parameters), with the hoist inside the native loop
    (all sequences whole) and before it (variable lengths, in the engine's order)."""
    c = cells.make("lstm", I, H, zoneout=ZONE).double().train()
    x, row, state = _inputs(c)
    inputs = [x, *state, *c.parameters()]
    expected = _grads(reference_unroll(c, row, state) if lengths is None else
                      _reference_with_lengths(c, row, state, lengths), inputs)
    with engine.backend(backend):
        out, final = unroll(c, row, state, lengths)
    assert type(out.grad_fn).__name__ == "FusedSequenceBackward"
    got = _grads((out, final), inputs)
    _assert_same(got[0], expected[0])
    _assert_same(got[1], expected[1])


def _reference_with_lengths(c, row, state, lengths):
    with engine.backend("reference"):
        return unroll(c, row, state, lengths)


def test_the_masks_are_constants_their_columns_of_the_row_get_no_gradient():
    c = cells.make("lstm", I, H, zoneout=ZONE).double().train()
    _, row, state = _inputs(c)
    row = row.detach().requires_grad_()
    with engine.backend("native"):
        out, _ = unroll(c, row, state)
    (grad,) = torch.autograd.grad(out.sum(), [row])
    assert not grad[..., I:].any()
    expected = torch.autograd.grad(reference_unroll(c, row, state)[0].sum(), [row])[0]
    torch.testing.assert_close(grad[..., :I], expected[..., :I])


def test_zoneout_double_backward_through_the_fused_engine():
    """create_graph: the reference loop under autograd inside the op's backward, fed the row
    put back together from x and the masks."""
    c = cells.make("lstm", I, H, zoneout=ZONE).double().train()
    x, row, state = _inputs(c)

    def second(run):
        out, _ = run(c, row, state)
        (gx,) = torch.autograd.grad((out ** 2).sum(), [x], create_graph=True)
        return torch.autograd.grad(gx.pow(2).sum(), [x, *c.parameters()])

    with engine.backend("native"):
        got = second(unroll)
    _assert_same(got, second(reference_unroll))


def test_zoneout_through_the_custom_op():
    """The custom op (the route under torch.compile) takes the input row: the engine reads x
    and the masks from it, and x's columns get the gradient, the masks' columns zeros."""
    c = cells.make("lstm", I, H, zoneout=ZONE).double().train()
    x, row, state = _inputs(c)
    result = custom_op.call(c.program, c.weights(), row, state, True)
    inputs = [x, *state, *c.parameters()]
    got = _grads(result, inputs)
    expected = _grads(reference_unroll(c, row, state), inputs)
    _assert_same(got[0], expected[0])
    _assert_same(got[1], expected[1])


# ---- layer norm: the row kernels ---------------------------------------------------------------
@cell("tanh_rnn_ln_test", state=("h",))
def tanh_rnn(x, state, p):
    h = tanh(p.W @ x + p.R @ state.h)
    return h, (h,)


VARIANTS = {"default": None, "avx2": ["-march=haswell"], "generic": []}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, tmp_path_factory):
    """The native library as built here, for AVX2 machines and for a generic x86-64."""
    if native.load() is None:
        pytest.skip(f"native engine unavailable: {native.why_unavailable()}")
    extra = VARIANTS[request.param]
    if extra is None:
        return native.load()
    if request.param == "avx2" and not {"avx2", "fma"} <= set(native._cpu_signature().split()):
        pytest.skip("this CPU has no AVX2/FMA: an AVX2 build cannot run here")
    import ctypes

    flags = [f for f in native.FLAGS if f not in native._NATIVE_ONLY] + extra
    path = tmp_path_factory.mktemp(request.param) / "rnnlab_native_variant.so"
    native.build(native.compiler(), path, flags)
    lib = ctypes.CDLL(str(path))
    native.bind(lib, path)
    return lib


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hidden", [5, 67, 256])
def test_norm_rows_match_torch_on_every_build(variant, dtype, hidden, monkeypatch):
    """norm and norm_bwd (in the hoist, the step and the epilogue) against torch's layer norm
    under autograd, on rows far from zero next to their spread, constant rows and a width
    with a tail after the vectors."""
    c = cells.make(tanh_rnn, hidden, hidden, layer_norm=True).to(dtype).train()
    monkeypatch.setattr(fused.compiled(c.program, True, False).native(), "lib", variant)
    g = torch.Generator().manual_seed(hidden)
    with torch.no_grad():
        for p in c.parameters():
            p.uniform_(-0.5, 0.5, generator=g)
    x = torch.randn(4, 6, hidden, generator=g, dtype=dtype)
    x[:, 0] += 1000.0  # a mean far from zero next to the spread
    x[:, 1] = 0.25  # constant rows: norm gives zeros
    x[:, 2] *= 1e-3
    x.requires_grad_()
    state = (torch.randn(6, hidden, generator=g, dtype=dtype, requires_grad=True),)
    inputs = [x, *state, *c.parameters()]
    with engine.backend("native"):
        got = _grads(unroll(c, x, state), inputs)
    expected = _grads(reference_unroll(c, x, state), inputs)
    tol = {} if dtype == torch.float64 else {"rtol": 2e-4, "atol": 2e-4}
    for a, b in zip([*got[0], *got[1]], [*expected[0], *expected[1]], strict=True):
        torch.testing.assert_close(a, b, **tol)


# ---- layer norm: what the backward keeps -------------------------------------------------------
def test_layer_norm_recomputes_its_norms_in_the_backward_instead_of_keeping_them():
    plain = _names(_plan(cells.make("lstm", I, H)))
    names = _names(_plan(cells.make("lstm", I, H, layer_norm=True)))
    # the LSTM's gate values and tanh(c) are kept; the five norm results of a step and the
    # hoist's four are computed again from the pre-activations (kept for norm_bwd anyway)
    assert names["P"].width == plain["P"].width == 5 * H
    assert "Ph" not in names
    assert names["Pr"].width == 5 * H and names["Prh"].width == 4 * H


def test_joint_layer_norm_is_one_norm_over_the_gates_made_again_not_kept():
    """The pooled statistics (``pnorm``) are one row instruction over the recurrent GEMM's 4H
    columns and one over X's in the hoist, read where they are (no copies); the normalised
    blocks are made again in the backward step (``Pr``: the four blocks and the memory cell's
    norm; ``Prh``: the input parts'), so the step keeps what per-gate layer norm keeps (the
    gates and tanh(c_ln)), and each pool's adjoint is one ``norm_bwd`` over 4H columns."""
    plan = _plan(cells.make("lstm", I, H, layer_norm="joint"))
    names = _names(plan)
    assert names["P"].width == 5 * H and "Ph" not in names
    assert names["Pr"].width == 5 * H and names["Prh"].width == 4 * H
    assert not {"Q0", "Qh0"} & set(names)

    def wide(code, name):
        return sum(getattr(ins, "code", None) == CODE[name] and ins.width == 4 * H
                   for ins in code)

    assert (wide(plan.forward, "norm"), wide(plan.prologue, "norm")) == (1, 1)
    assert (wide(plan.backward, "norm"), wide(plan.epilogue, "norm")) == (1, 1)  # made again
    assert (wide(plan.backward, "norm_bwd"), wide(plan.epilogue, "norm_bwd")) == (1, 1)
    assert "mean" not in _codes(plan.forward + plan.backward)


@pytest.mark.parametrize("cell", ["gru"])
def test_recomputed_products_give_the_same_numbers_bit_for_bit(cell, monkeypatch):
    """A plan with products made again in the backward (the joint-normalised GRU's) against
    the same plan with them kept (only row results remade): the same operations, so equal,
    not close."""
    from collections import OrderedDict

    def results(remake_products: bool) -> tuple:
        if not remake_products:
            monkeypatch.setattr(fused_plan, "_CHEAP", fused_plan.ROW_CODES)
        monkeypatch.setattr(fused, "_CACHE", OrderedDict())  # plans made anew
        torch.manual_seed(0)
        c = cells.make(cell, I, H, layer_norm="joint").train()
        with torch.no_grad():
            for p in c.parameters():
                p.uniform_(-0.5, 0.5)
        width = _names(_plan(c))["P"].width
        x = torch.randn(T, B, I, requires_grad=True)
        state = tuple(torch.randn(B, H, requires_grad=True) for _ in c.program.graph.states)
        with engine.backend("native"):
            return width, _grads(unroll(c, x, state), [x, *state, *c.parameters()])

    (kept_less, remade), (kept_more, kept) = results(True), results(False)
    assert kept_less < kept_more
    for a, b in zip([*remade[0], *remade[1]], [*kept[0], *kept[1]], strict=True):
        assert torch.equal(a, b)


def test_inference_keeps_nothing_for_a_backward():
    names = _names(_plan(cells.make("lstm", I, H, layer_norm=True), training=False))
    assert not {"P", "Pr", "Prh", "Ph"} & set(names)


@pytest.mark.parametrize("options", [{"layer_norm": True}, {"layer_norm": True, "zoneout": ZONE}])
def test_the_epilogue_inside_the_backward_loop_equals_it_after_the_loop(options, monkeypatch):
    c = cells.make("lstm", I, H, **options).double().train()
    plan = _plan(c)
    assert plan.hoisted_backward and plan.back_twins  # the hoisted inputs' adjoints: a slice
    x, row, state = _inputs(c, rows=bool(c.program.step_masks))
    inputs = [x, *state, *c.parameters()]
    with engine.backend("native"):
        inside = _grads(unroll(c, row, state), inputs)
        monkeypatch.setattr(plan, "hoisted_backward", [])
        after = _grads(unroll(c, row, state), inputs)
    _assert_same(inside[0], after[0])
    _assert_same(inside[1], after[1])


def test_hoisted_inputs_adjoints_start_at_zero_only_with_variable_lengths():
    c = cells.make("lstm", I, H, layer_norm=True)
    for lengths in (False, True):
        plan = _plan(c, lengths=lengths)
        assert plan.dxs and all(plan.buffers[b].zeros is lengths for b in plan.dxs.values())


# ---- layer norm: a norm and its gain in one pass (plan.fuse_norms) ----------------------------
def _codes(code) -> list[str]:
    from rnnlab.lang.ops import INSTRUCTIONS

    return [INSTRUCTIONS[ins.code].name for ins in code if hasattr(ins, "code")]


def test_each_norm_read_by_its_gain_alone_is_fused_with_it():
    plan = _plan(cells.make("lstm", I, H, layer_norm=True))
    # forward: the four recurrent parts, each added to its gate's hoisted part, and the memory
    # cell plus its shift; the hoist: the four input parts plus their biases
    forward, prologue = _codes(plan.forward), _codes(plan.prologue)
    assert forward.count("mul_norm_add") == 5 and "norm" not in forward
    assert "mul_norm" not in forward and "add" in forward  # c' = f ⊙ c + i ⊙ z stays
    assert prologue.count("mul_norm_add") == 4 and "norm" not in prologue
    # backward: each gain's gradient dy ⊙ norm(x) (the norm remade) in one pass; the
    # adjoint of each normalised row takes dy ⊙ g where it reads it (norm_bwd_mul)
    backward = _codes(plan.backward)
    assert backward.count("mul_norm") == 5 and "norm" not in backward
    assert backward.count("norm_bwd_mul") == 5 and "norm_bwd" not in backward
    assert all(ins.acc for ins in plan.backward
               if getattr(ins, "code", None) == fused_plan.MUL_NORM)
    # one step: 16 instructions forward (21 with the norms and gains apart), 30 backward (35)
    assert (len(plan.forward), len(plan.backward)) == (16, 30)


@pytest.mark.parametrize("executor", ["native", "python"])
def test_the_fused_norms_give_the_same_numbers_bit_for_bit(monkeypatch, executor):
    """Float32 values and gradients with and without each fusion (a norm and its gain; the
    gain and the sum's other term; the adjoint's product): the same roundings (the normalised
    value, then the product, then the sum), so equal, not close — except where the C++
    compiler contracts a product and the sum that reads it into one fused multiply-add, which
    rounds once instead of twice (the three-operand fusions in the native loop): there the
    numbers agree to float32's last digits."""
    from collections import OrderedDict

    def results(norms: bool, gains: bool) -> tuple:
        monkeypatch.undo()
        if not norms:
            monkeypatch.setattr(fused_plan, "fuse_norms", lambda code, *_: code)
        if not gains:
            monkeypatch.setattr(fused_plan, "fuse_gains", lambda code, *_: code)
        monkeypatch.setattr(fused, "_CACHE", OrderedDict())  # plans made anew
        torch.manual_seed(0)
        c = cells.make("lstm", I, H, layer_norm=True, zoneout=ZONE).train()
        with torch.no_grad():
            for p in c.parameters():
                p.uniform_(-0.5, 0.5)
        codes = _codes(_plan(c).forward) + _codes(_plan(c).backward)
        assert codes.count("mul_norm") == (0 if not norms else 5 if gains else 10)
        assert codes.count("mul_norm_add") == (5 if norms and gains else 0)
        assert codes.count("norm_bwd_mul") == (5 if gains else 0)
        x = torch.randn(T, B, I, requires_grad=True)
        state = tuple(torch.randn(B, H, requires_grad=True) for _ in c.program.graph.states)
        torch.manual_seed(1)  # the zoneout masks
        row = c.with_step_masks(x)
        with engine.backend(executor):
            return _grads(unroll(c, row, state), [x, *state, *c.parameters()])

    plain_run = results(False, False)
    for norms, gains in ((True, False), (False, True), (True, True)):
        run = results(norms, gains)
        for a, b in zip([*run[0], *run[1]], [*plain_run[0], *plain_run[1]], strict=True):
            if executor == "native" and gains:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            else:
                assert torch.equal(a, b), (norms, gains)


def test_a_norm_with_another_reader_or_outside_scratch_is_left_alone():
    from rnnlab.engine.fast.plan import MUL, NORM, Op, Ref

    norm = Op(NORM, Ref(0, 0), Ref(2, 0), None, H)
    gain = Op(MUL, Ref(0, H), Ref(1, 0), Ref(0, 0), H)
    fused_ops = fused_plan.fuse_norms([norm, gain], [norm, gain], {0})
    assert fused_ops == [Op(fused_plan.MUL_NORM, Ref(0, H), Ref(1, 0), Ref(2, 0), H)]
    second = Op(MUL, Ref(3, 0), Ref(0, 0), Ref(0, 0), H)  # n read again
    assert fused_plan.fuse_norms([norm, gain], [norm, gain, second], {0}) == [norm, gain]
    assert fused_plan.fuse_norms([norm, gain], [norm, gain], set()) == [norm, gain]  # kept
    apart = Op(MUL, Ref(0, H), Ref(1, 0), Ref(4, 0), H)  # the product reads something else
    assert fused_plan.fuse_norms([norm, apart], [norm, apart], {0}) == [norm, apart]


def test_a_gain_and_its_sum_or_its_adjoints_product_fuse_only_where_alone():
    from rnnlab.engine.fast.plan import ADD, MUL, MUL_NORM, NORM_BWD, Op, Ref

    fuse = fused_plan.fuse_gains
    # t = g ⊙ norm(v) in scratch buffer 0, then d = c + t (either order)
    gain = Op(MUL_NORM, Ref(0, 0), Ref(1, 0), Ref(2, 0), H)
    for add in (Op(ADD, Ref(3, 0), Ref(4, 0), Ref(0, 0), H),
                Op(ADD, Ref(3, 0), Ref(0, 0), Ref(4, 0), H)):
        assert fuse([gain, add], [gain, add], {0}) == [
            Op(fused_plan.MUL_NORM_ADD, Ref(3, 0), Ref(1, 0), Ref(2, 0), H, c=Ref(4, 0))]
        assert fuse([gain, add], [gain, add], set()) == [gain, add]  # t outside scratch
        again = Op(MUL, Ref(5, 0), Ref(0, 0), Ref(0, 0), H)  # t read again
        assert fuse([gain, add], [gain, add, again], {0}) == [gain, add]
    # accumulating adds keep their acc; a number as the other term is not fused
    add = Op(ADD, Ref(3, 0), Ref(4, 0), Ref(0, 0), H, acc=True)
    assert fuse([gain, add], [gain, add], {0})[0].acc
    number = Op(ADD, Ref(3, 0), 1.0, Ref(0, 0), H)
    assert fuse([gain, number], [gain, number], {0}) == [gain, number]
    # the destination may be an operand, but not overlap one at other columns
    shifted = Op(ADD, Ref(2, H // 2), Ref(4, 0), Ref(0, 0), H)
    assert fuse([gain, shifted], [gain, shifted], {0}) == [gain, shifted]
    in_place = Op(ADD, Ref(4, 0), Ref(4, 0), Ref(0, 0), H)
    assert len(fuse([gain, in_place], [gain, in_place], {0})) == 1
    # t = dy ⊙ g, then norm_bwd(t, x)
    product = Op(MUL, Ref(0, 0), Ref(6, 0), Ref(1, 0), H)
    adjoint = Op(NORM_BWD, Ref(7, 0), Ref(0, 0), Ref(2, 0), H)
    assert fuse([product, adjoint], [product, adjoint], {0}) == [
        Op(fused_plan.NORM_BWD_MUL, Ref(7, 0), Ref(6, 0), Ref(2, 0), H, c=Ref(1, 0))]
    # t as the norm's input (b), not its adjoint: left alone
    other = Op(NORM_BWD, Ref(7, 0), Ref(6, 0), Ref(0, 0), H)
    assert fuse([product, other], [product, other], {0}) == [product, other]
    # an accumulating product is not a value of its own
    summed = Op(MUL, Ref(0, 0), Ref(6, 0), Ref(1, 0), H, acc=True)
    assert fuse([summed, adjoint], [summed, adjoint], {0}) == [summed, adjoint]
