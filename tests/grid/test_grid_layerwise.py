"""The layerwise schedule of a sequence grid equals the naive and wavefront orders."""

import pytest
import torch
from grid_reference import grid as reference_grid
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

from rnnlab.grid import CellTransform, GridLSTM, GridLSTMNd, GridScan, State

T, B, I, H = 6, 3, 3, 4

CASES = [
    # layers, tied, (time, depth) transforms, priority
    (3, False, ("lstm", "lstm"), ()),
    (3, True, ("lstm", "lstm"), ()),
    (2, False, ("lstm", "lstm"), (0,)),  # time priority: time reads depth's new h
    (2, True, ("lstm", "lstm"), (1,)),  # depth priority: depth reads time's new h
    (3, False, ("lstm_standard", "lstm"), (1,)),
    (2, False, ("lstm", "tanh"), ()),
    (2, True, ("relu", "lstm_standard"), ()),  # a non-LSTM time dimension: the plain loop
    (2, False, ("tanh", "identity"), (0,)),
    (2, False, ("lstm_standard", "relu"), (0,)),
    (4, False, ("lstm", "lstm"), ()),  # more layers than steps below
    (2, False, ("lstm", "lstm"), (0, 1)),  # both priority: time first, then depth
    (2, False, ("lstm", "lstm"), (1, 0)),
]


def make(layers, tied, transforms, priority, batch=B, steps=T, seed=0):
    torch.manual_seed(seed)
    scan = GridScan(I, H, layers, 1, tied, list(transforms), priority).double()
    x = torch.randn(steps, batch, I, dtype=torch.float64)
    state = State(*(torch.randn(layers, batch, H, dtype=torch.float64) for _ in range(2)))
    return scan, x, state


def run(scan, x, state, lengths, schedule):
    """Output, final state and the gradients of a fixed random loss of all three."""
    scan.schedule = schedule
    scan.zero_grad()
    x = x.detach().requires_grad_()
    state = State(*(t.detach().requires_grad_() for t in state))
    output, final = scan(x, state, lengths)
    generator = torch.Generator().manual_seed(99)
    loss = sum(
        (t * torch.randn(t.shape, dtype=t.dtype, generator=generator)).sum()
        for t in (output, final.h, final.m)
    )
    loss.backward()
    grads = [x.grad, state.h.grad, state.m.grad] + [p.grad for p in scan.parameters()]
    return output, final, grads


def assert_same(a, b):
    (out_a, final_a, grads_a), (out_b, final_b, grads_b) = a, b
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(final_a.h, final_b.h)
    torch.testing.assert_close(final_a.m, final_b.m)
    assert len(grads_a) == len(grads_b)
    for grad_a, grad_b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(grad_a, grad_b)


@pytest.mark.parametrize("lengths", [None, [6, 2, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("layers, tied, transforms, priority", CASES)
def test_layerwise_equals_naive_and_wavefront(layers, tied, transforms, priority, lengths):
    """Outputs (past the ends too), final state and every gradient, in float64."""
    scan, x, state = make(layers, tied, transforms, priority)
    lengths = None if lengths is None else torch.tensor(lengths)
    layerwise = run(scan, x, state, lengths, "layerwise")
    assert_same(layerwise, run(scan, x, state, lengths, "naive"))
    assert_same(layerwise, run(scan, x, state, lengths, "wavefront"))


@pytest.mark.parametrize("layers, tied, transforms, priority", CASES[:5])
def test_layerwise_equals_the_reference_equations(layers, tied, transforms, priority):
    scan, x, state = make(layers, tied, transforms, priority)
    lengths = torch.tensor([6, 1, 3])
    expected, h, m = reference_grid(scan, list(transforms), x, state.h, state.m, lengths)
    output, final, _ = run(scan, x, state, lengths, "layerwise")
    valid = torch.arange(T)[:, None] < lengths  # (T, B): outputs past the end are unspecified
    torch.testing.assert_close(output[valid], expected[valid])
    torch.testing.assert_close(final.h, h)
    torch.testing.assert_close(final.m, m)


@pytest.mark.parametrize("depth", ["lstm", CellTransform("gru")], ids=["lstm", "zoo-gru"])
def test_packed_sequences_equal_each_sequence_alone(depth):
    torch.manual_seed(3)
    grid = GridLSTM(I, H, 2, depth_transform=depth, schedule="layerwise").double()
    sequences = [torch.randn(n, I, dtype=torch.float64, requires_grad=True) for n in (2, 5, 3)]
    output, final = grid(pack_sequence(sequences, enforce_sorted=False))
    padded, _ = pad_packed_sequence(output)
    (padded.square().sum() + final.h.sum()).backward()
    for b, sequence in enumerate(sequences):
        grad = sequence.grad
        sequence.grad = None
        alone, alone_final = grid(sequence[:, None])
        torch.testing.assert_close(padded[: len(sequence), b], alone[:, 0])
        torch.testing.assert_close(final.m[:, b], alone_final.m[:, 0])
        (alone.square().sum() + alone_final.h.sum()).backward()
        torch.testing.assert_close(sequence.grad, grad)


def test_zoo_cell_depth_dimension_equals_naive():
    torch.manual_seed(4)
    scan = GridScan(I, H, 2, 1, transforms=["lstm", CellTransform("gru")]).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    state = State(*(torch.randn(2, B, H, dtype=torch.float64) for _ in range(2)))
    assert_same(run(scan, x, state, None, "layerwise"), run(scan, x, state, None, "naive"))


def test_float32_agrees_with_float64():
    scan, x, state = make(3, False, ("lstm", "lstm"), ())
    expected, final, _ = run(scan, x, state, None, "layerwise")
    output, final32 = scan.float()(x.float(), State(state.h.float(), state.m.float()))
    torch.testing.assert_close(output, expected.float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(final32.m, final.m.float(), rtol=1e-4, atol=1e-5)


def graph_size(output: torch.Tensor) -> int:
    """Number of autograd nodes that the output's backward pass visits."""
    seen, stack = set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


@pytest.mark.parametrize("lengths", [False, True])
def test_an_lstm_time_loop_is_one_autograd_op(lengths):
    """The backward graph does not grow with T: each layer's time loop is a single node."""
    torch.manual_seed(5)
    grid = GridLSTM(I, H, 3, schedule="layerwise")
    sizes = []
    for steps in (4, 40):
        x = torch.randn(steps, B, I)
        if lengths:
            x = pack_sequence([x[:, 0], x[: steps // 2, 1]])
        output, state = grid(x)
        sizes.append(graph_size((output.data if lengths else output).sum() + state.m.sum()))
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize("standard", [False, True])
@pytest.mark.parametrize("freeze", [False, True])
@pytest.mark.parametrize("priority", [(), (1,)])
def test_engine_time_loop_gradcheck(standard, freeze, priority):
    """The layer's time loop on the engine (fused forward and backward, frozen sequence ends,
    the frozen vectors put back) against finite differences."""
    torch.manual_seed(6)
    time = "lstm_standard" if standard else "lstm"
    scan = GridScan(2, 3, 2, 1, False, [time, "lstm"], priority, schedule="layerwise").double()
    lengths = torch.tensor([4, 1, 3]) if freeze else None

    def tensor(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    def grid(x, h, m):
        output, final = scan(x, State(h, m), lengths)
        return output, final.h, final.m

    inputs = (tensor(4, 3, 2), tensor(2, 3, 3), tensor(2, 3, 3))
    assert torch.autograd.gradcheck(grid, inputs, fast_mode=True)


def test_zoo_cells_of_both_dimensions_run_on_the_engine():
    """A zoo cell in time and depth: the time loop is one fused op, depth one step over all
    T·B rows; equal to the naive schedule with sequence ends."""
    torch.manual_seed(7)
    scan = GridScan(I, H, 2, 1, False, [CellTransform("gru"), CellTransform("cifg")]).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    state = State(*(torch.randn(2, B, H, dtype=torch.float64) for _ in range(2)))
    lengths = torch.tensor([6, 2, 4])
    assert_same(run(scan, x, state, lengths, "layerwise"), run(scan, x, state, lengths, "naive"))
    scan.schedule = "layerwise"
    output, _ = scan(x, state)
    seen, stack = set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(n for n, _ in node.next_functions)
    assert any(type(n).__name__ == "FusedSequenceBackward" for n in seen)


def test_layerwise_is_the_grid_lstm_default():
    assert GridLSTM(I, H, 2).schedule == "layerwise"
    assert GridLSTMNd(I, H, 2, num_axes=1).schedule == "wavefront"


def test_layerwise_needs_one_input_axis():
    with pytest.raises(ValueError, match="schedule='layerwise' runs grids with one input axis"):
        GridScan(I, H, 2, num_axes=2, schedule="layerwise")
    grid = GridLSTMNd(I, H, 2, num_axes=2)
    with pytest.raises(ValueError, match="this grid has 2: use 'wavefront'"):
        grid.schedule = "layerwise"


def test_one_small_step_without_gradients_skips_the_engine_setup(monkeypatch):
    """Streaming a GridLSTM one step at a time without gradients runs each dimension's plan
    step with torch ops (as rnnlab.RNN does) and gives what the engine gives."""
    from rnnlab import engine
    from rnnlab.engine import fused

    torch.manual_seed(0)
    grid = GridLSTM(8, 16, num_layers=2)
    x = torch.randn(1, 3, 8)
    with torch.no_grad(), engine.backend("python"):  # the engine's plan, with torch ops
        expected, expected_state = grid(x)
    calls = []
    real = fused.prepare_call  # the engine's own setup: reached only when the engine runs
    monkeypatch.setattr(fused, "prepare_call", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad(), engine.backend("auto"):
        out, state = grid(x)
        assert calls == []
        grid(torch.randn(4, 3, 8))  # a sequence: the engine
        assert calls
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(tuple(state), tuple(expected_state))
