"""The native step: one step without gradients on the native loop's prepared tables
(``rnnlab.engine.fused.one_step``, the route table's ``NATIVE_STEP``).

It keeps scratch buffers and tables between calls, so these tests check what such a cache can
get wrong: values against the reference loop for every zoo cell, outputs that later calls do
not overwrite, the layers of a stack (one shared plan, different weights), weights changed in
place, batch sizes and dtypes changing between calls, threads, and cells with static vectors,
layer norm, zoneout and a hoist without a GEMM (the grid's transforms)."""

import threading

import pytest
import torch

import rnnlab
from rnnlab import cells, engine
from rnnlab.engine import fused
from rnnlab.engine.fast import native
from rnnlab.engine.route import Executor, route
from rnnlab.engine.unroll import reference_unroll, unroll

pytestmark = pytest.mark.skipif(native.load() is None, reason="the native loop does not build")


def _stepped(cell, x, state):
    """x (T, B, I) one step at a time through ``unroll`` without gradients."""
    outs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = unroll(cell, x[t:t + 1], state)
            outs.append(out)
    return torch.cat(outs), state


def _state(cell, B, dtype=torch.float32):
    return tuple(torch.randn(B, cell.hidden_size, dtype=dtype)
                 for _ in cell.graph.states)


def _assert_steps_equal_the_sequence(model, steps=4, batch=3):
    """A module stepped one step at a time equals the reference loop over the sequence."""
    xs = torch.randn(steps, batch, model.input_size)
    with torch.no_grad():
        with engine.backend("reference"):
            ref, ref_state = model(xs)
        outs, s = [], None
        for t in range(steps):
            o, s = model(xs[t:t + 1], s)
            outs.append(o)
    torch.testing.assert_close(torch.cat(outs), ref)
    torch.testing.assert_close(tuple(s), tuple(ref_state))


def _route_of(cell, B, dtype=torch.float32):
    return route(cell.program, 1, B, torch.device("cpu"), dtype, False, False).executor


@pytest.mark.parametrize("name", cells.names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_zoo_cell_one_step_at_a_time_equals_the_reference(name, dtype):
    torch.manual_seed(0)
    cell = cells.make(name, 8, 8).to(dtype)  # (I = H: MUT1-2's raw input adds x)
    x = torch.randn(4, 3, 8, dtype=dtype)
    state = _state(cell, 3, dtype)
    assert _route_of(cell, 3, dtype) is Executor.NATIVE_STEP
    out, finals = _stepped(cell, x, state)
    with torch.no_grad():
        ref, ref_finals = reference_unroll(cell, x, state)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(finals, ref_finals)


def test_outputs_and_states_are_the_callers_and_later_calls_leave_them():
    torch.manual_seed(0)
    cell = cells.make("lstm", 8, 8)
    x = torch.randn(1, 2, 8)
    state = _state(cell, 2)
    with torch.no_grad():
        out1, s1 = unroll(cell, x, state)
        kept = (out1.clone(), *(s.clone() for s in s1))
        out2, s2 = unroll(cell, torch.randn(1, 2, 8), s1)  # the state handed back in
        unroll(cell, torch.randn(1, 2, 8), s2)
    for a, b in zip((out1, *s1), kept):
        assert torch.equal(a, b)
    assert out1.data_ptr() != out2.data_ptr()
    ref, _ = reference_unroll(cell, x, state)
    torch.testing.assert_close(out1, ref)


def test_cells_sharing_one_plan_keep_their_own_weights():
    """Two cells of one structure share one compiled plan (and its prepared step); each call
    must read its own weights, whichever ran last."""
    torch.manual_seed(0)
    a, b = cells.make("gru", 8, 8), cells.make("gru", 8, 8)
    assert fused.compiled(a.program, False, False) is fused.compiled(b.program, False, False)
    x = torch.randn(1, 2, 8)
    state = _state(a, 2)
    for cell in (a, b, a, b):
        with torch.no_grad():
            out, _ = unroll(cell, x, state)
            ref, _ = reference_unroll(cell, x, state)
        torch.testing.assert_close(out, ref)
    stack = rnnlab.RNN("lstm", 8, 8, num_layers=3)
    xs = torch.randn(5, 2, 8)
    with torch.no_grad():
        full, full_state = stack(xs)
        with engine.backend("reference"):
            ref, ref_state = stack(xs)
        outs, s = [], None
        for t in range(5):
            o, s = stack(xs[t:t + 1], s)
            outs.append(o)
    torch.testing.assert_close(torch.cat(outs), ref)
    torch.testing.assert_close(tuple(s), tuple(ref_state))
    torch.testing.assert_close(full, ref)


def test_weights_changed_in_place_are_read_by_the_next_step():
    torch.manual_seed(0)
    net = rnnlab.RNN("lstm", 8, 8)
    x = torch.randn(1, 2, 8)
    with torch.no_grad():
        before, _ = net(x)
        for p in net.parameters():
            p.mul_(0.5)
        after, _ = net(x)
        with engine.backend("reference"):
            ref, _ = net(x)
    torch.testing.assert_close(after, ref)
    assert not torch.allclose(before, after)


def test_batch_sizes_dtypes_and_threads_changing_between_calls():
    torch.manual_seed(0)
    cell = cells.make("lstm", 8, 8)
    for B, dtype in ((1, torch.float32), (5, torch.float32), (1, torch.float64),
                     (5, torch.float32), (2, torch.float64)):
        c = cell.to(dtype)
        x = torch.randn(1, B, 8, dtype=dtype)
        state = _state(c, B, dtype)
        with torch.no_grad():
            out, finals = unroll(c, x, state)
            ref, ref_finals = reference_unroll(c, x, state)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(finals, ref_finals)
    comp = fused.compiled(cell.program, False, False)
    assert len(comp.steps) >= 2  # one prepared step per batch size and dtype


def test_threads_stepping_one_plan_at_once_get_their_own_results():
    torch.manual_seed(0)
    nets = [cells.make("lstm", 8, 8) for _ in range(4)]
    inputs = [(torch.randn(1, 3, 8), _state(nets[0], 3)) for _ in nets]
    expected = [reference_unroll(net, x, s)[0] for net, (x, s) in zip(nets, inputs)]
    errors, results = [], {}

    def work(k):
        try:
            with torch.no_grad():
                for _ in range(200):
                    out, _ = unroll(nets[k], *inputs[k])
                    if not torch.allclose(out, expected[k], atol=1e-6):
                        errors.append(k)
                results[k] = out
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 4


@pytest.mark.parametrize("options", [{"layer_norm": True}, {"layer_norm": "joint"},
                                     {"zoneout": 0.3}, {"recurrent_dropout": 0.3},
                                     {"weight_drop": 0.2}],
                         ids=["layer_norm", "joint", "zoneout", "dropout", "weight_drop"])
def test_regularised_cells_in_evaluation_one_step_at_a_time(options):
    torch.manual_seed(0)
    _assert_steps_equal_the_sequence(rnnlab.RNN("lstm", 8, 8, num_layers=2, **options).eval())


def test_a_cell_with_static_vectors_one_step_at_a_time():
    """A cell whose plan reads vectors of parameters alone (statics, as the search makes)."""
    from rnnlab.lang import cell as define
    from rnnlab.lang import sigmoid, tanh

    @define("static_terms", state=("h",))
    def static_terms(x, state, p):
        g = sigmoid(p.W @ x + p.R @ state.h + p.U @ tanh(p.c))
        h = g * (p.a * p.b) + (1 - g) * state.h
        return h, (h,)

    torch.manual_seed(0)
    c = cells.make(static_terms, 8, 8)
    assert fused.compiled(c.program, False, False).statics
    x = torch.randn(3, 2, 8)
    state = _state(c, 2)
    out, finals = _stepped(c, x, state)
    with torch.no_grad():
        ref, ref_finals = reference_unroll(c, x, state)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(finals, ref_finals)


@pytest.mark.parametrize("transforms", ["lstm", "cell:gru"])
def test_the_grid_one_step_at_a_time_equals_its_sequence(transforms):
    """The grid's LSTM transforms read their pre-activations elementwise (a hoist without a
    GEMM: the prologue and the step, two loops on one table)."""
    torch.manual_seed(0)
    _assert_steps_equal_the_sequence(
        rnnlab.GridLSTM(8, 8, 3, time_transform=transforms, depth_transform=transforms))


def test_a_model_made_under_inference_mode_runs():
    """Parameters made under torch.inference_mode keep no version counter (the prepared
    weights' cache cannot tell an in-place update by it): such a model still runs, and
    assembles its weights on each call."""
    torch.manual_seed(0)
    with torch.inference_mode():
        net = rnnlab.RNN("lstm", 8, 8, num_layers=2)
        grid = rnnlab.GridLSTM(8, 8, 2)
        xs = torch.randn(3, 2, 8)
        for model in (net, grid):
            full, _ = model(xs)
            step, _ = model(xs[:1])
            with engine.backend("reference"):
                ref, _ = model(xs)
            torch.testing.assert_close(full, ref)
            torch.testing.assert_close(step, ref[:1])
            for p in model.parameters():
                p.mul_(0.5)
            with engine.backend("reference"):
                ref, _ = model(xs)
            torch.testing.assert_close(model(xs)[0], ref)


def test_prepared_steps_do_not_keep_replaced_weights_alive():
    """Weights replaced after every optimiser step (a decoder stepping during validation)
    must not pile up in the prepared step's bindings: they are referred to weakly, and a
    binding is used only for the very tensors it was made for."""
    import gc
    import weakref

    torch.manual_seed(0)
    cell = cells.make("lstm", 8, 8)
    x, state = torch.randn(1, 2, 8), _state(cell, 2)
    refs = []
    for _ in range(3):
        weights = {k: v.clone() for k, v in cell.weights().items()}  # new tensors each time
        with torch.no_grad():
            out, _ = rnnlab.engine.run(cell.program, weights, x, state)
            ref, _ = reference_unroll(cell, x, state)
        torch.testing.assert_close(out, ref)
        refs += [weakref.ref(t) for t in weights.values() if t.dim() == 2]  # (vectors:
        del weights  # the binding may hold the static ones, as small as a state row)
    gc.collect()
    assert refs and all(r() is None for r in refs)
    prepared = next(iter(fused.compiled(cell.program, False, False).steps.values()))
    binding = next(iter(prepared.bindings.values()))
    assert not binding.alive() and not binding.holds(cell.weights())


@pytest.mark.parametrize("options", [{"zoneout": 0.3}, {"recurrent_dropout": 0.3},
                                     {"input_dropout": 0.3}], ids=["zoneout", "dropout",
                                                                   "input_dropout"])
def test_regularised_cells_in_training_mode_without_gradients(options):
    """Masks drawn in training mode (one step at a time under no_grad, as a sampler with the
    model left in training mode) reach the native step as inputs: the same values as the
    reference loop with the same draws."""
    torch.manual_seed(0)
    net = rnnlab.RNN("lstm", 8, 8, **options).train()
    x = torch.randn(1, 3, 8)
    with torch.no_grad():
        torch.manual_seed(5)
        out, state = net(x)
        torch.manual_seed(5)
        with engine.backend("reference"):
            ref, ref_state = net(x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(tuple(state), tuple(ref_state))
