"""GridLSTM, the 2-D time × depth grid: equations, call conventions, packing, causality."""

import pytest
import torch
from grid_reference import grid as reference_grid
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

from rnnlab.grid import GridLSTM, State

T, B, I, H, L = 5, 3, 4, 6, 3


def make(**options):
    torch.manual_seed(0)
    return GridLSTM(I, H, L, **options).double()


def inputs(t=T, b=B):
    return torch.randn(t, b, I, dtype=torch.float64)


@pytest.mark.parametrize("schedule", ["layerwise", "wavefront", "naive"])
@pytest.mark.parametrize(
    "options, names",
    [
        ({}, ["lstm", "lstm"]),
        ({"tied": True}, ["lstm", "lstm"]),
        ({"depth_transform": "tanh"}, ["lstm", "tanh"]),
        ({"time_transform": "lstm_standard", "priority": "depth"}, ["lstm_standard", "lstm"]),
        ({"priority": "time", "tied": True}, ["lstm", "lstm"]),
    ],
)
def test_grid_matches_equations(schedule, options, names):
    grid = make(schedule=schedule, **options)
    x = inputs()
    state = State(
        torch.randn(L, B, H, dtype=torch.float64), torch.randn(L, B, H, dtype=torch.float64)
    )
    output, final = grid(x, state)
    expected, h, m = reference_grid(grid.scan, names, x, state.h, state.m)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(final.h, h)
    torch.testing.assert_close(final.m, m)


def test_shapes_and_defaults():
    grid = GridLSTM(I, H, L)
    output, state = grid(torch.randn(T, B, I))
    assert output.shape == (T, B, H) and grid.output_size == H
    assert isinstance(state, State) and state.h.shape == state.m.shape == (L, B, H)
    zeros = grid.initial_state(B)
    torch.testing.assert_close(grid(torch.ones(T, B, I), zeros)[0], grid(torch.ones(T, B, I))[0])


def test_batch_first():
    grid = make()
    x = inputs()
    expected, state = grid(x)
    grid.batch_first = True
    output, state_bf = grid(x.transpose(0, 1))
    torch.testing.assert_close(output, expected.transpose(0, 1))
    torch.testing.assert_close(state_bf.h, state.h)


def test_state_carries_across_calls():
    grid = make()
    x = inputs(t=8)
    whole, whole_state = grid(x)
    first, state = grid(x[:3])
    second, state = grid(x[3:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    torch.testing.assert_close(state.m, whole_state.m)


@pytest.mark.parametrize("schedule", ["layerwise", "wavefront", "naive"])
def test_packed_sequence_equals_each_sequence_alone(schedule):
    grid = make(schedule=schedule, tied=schedule == "naive")
    lengths = [3, 7, 1, 5]
    sequences = [torch.randn(n, I, dtype=torch.float64) for n in lengths]
    packed = pack_sequence(sequences, enforce_sorted=False)
    state = State(
        torch.randn(L, 4, H, dtype=torch.float64), torch.randn(L, 4, H, dtype=torch.float64)
    )
    output, final = grid(packed, state)
    assert isinstance(output, type(packed))
    assert torch.equal(output.batch_sizes, packed.batch_sizes)
    assert torch.equal(output.sorted_indices, packed.sorted_indices)
    padded, out_lengths = pad_packed_sequence(output)
    assert out_lengths.tolist() == lengths
    for b, sequence in enumerate(sequences):
        alone_state = State(state.h[:, b : b + 1], state.m[:, b : b + 1])
        alone, alone_final = grid(sequence[:, None], alone_state)
        torch.testing.assert_close(padded[: lengths[b], b], alone[:, 0])
        torch.testing.assert_close(final.h[:, b], alone_final.h[:, 0])
        torch.testing.assert_close(final.m[:, b], alone_final.m[:, 0])


def test_packed_sequence_gradients_equal_each_sequence_alone():
    grid = make()
    sequences = [torch.randn(n, I, dtype=torch.float64, requires_grad=True) for n in (4, 2)]
    output, _ = grid(pack_sequence(sequences))
    output.data.square().sum().backward()
    packed_grads = [s.grad.clone() for s in sequences]
    for sequence, packed_grad in zip(sequences, packed_grads, strict=True):
        sequence.grad = None
        alone, _ = grid(sequence[:, None])
        alone.square().sum().backward()
        torch.testing.assert_close(sequence.grad, packed_grad)


@pytest.mark.parametrize("schedule", ["layerwise", "wavefront", "naive"])
def test_causal_along_time(schedule):
    grid = make(schedule=schedule)
    x = inputs(t=6).requires_grad_()
    output, _ = grid(x)
    for t in range(6):
        (grad,) = torch.autograd.grad(output[t].sum(), x, retain_graph=True)
        assert torch.count_nonzero(grad[t + 1 :]) == 0  # nothing after t
        assert grad[: t + 1].abs().sum(dim=(1, 2)).min() > 0  # every step up to t matters


@pytest.mark.parametrize("tied", [False, True])
def test_gradcheck(tied):
    torch.manual_seed(1)
    grid = GridLSTM(2, 2, 2, tied=tied, depth_transform="tanh" if tied else "lstm").double()
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 2, 2, dtype=torch.float64, requires_grad=True)
    m = torch.randn(2, 2, 2, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in grid.named_parameters()]

    def run(x, h, m, *params):
        parameters = dict(zip(names, params, strict=True))
        output, state = torch.func.functional_call(grid, parameters, (x, State(h, m)))
        return output, state.h, state.m

    params = [p.detach().clone().requires_grad_() for p in grid.parameters()]
    assert torch.autograd.gradcheck(run, (x, h, m, *params))


def test_tied_and_untied_parameters():
    untied, tied = GridLSTM(I, H, L), GridLSTM(I, H, L, tied=True)
    block = 2 * (4 * H * 2 * H + 4 * H)  # two LSTM dimensions reading H = [h_time; h_depth]
    assert sum(p.numel() for p in untied.parameters()) == I * H + L * block
    assert sum(p.numel() for p in tied.parameters()) == I * H + block
    # Tied: every layer runs the same weights, so a change to them changes every layer.
    x = torch.randn(T, B, I)
    with torch.no_grad():
        _, before = tied(x)
        tied.block.dimension_parameters(0)[1].add_(0.5)
        _, after = tied(x)
    assert (after.h - before.h).abs().amax(dim=(1, 2)).min() > 0
    # Untied: layer l's weights only reach layers ≥ l through the grid.
    with torch.no_grad():
        _, before = untied(x)
        untied.block.dimension_parameters(0, copy=2)[1].add_(0.5)
        _, after = untied(x)
    torch.testing.assert_close(after.h[:2], before.h[:2])
    assert (after.h[2] - before.h[2]).abs().max() > 0


def test_priority_changes_the_function():
    torch.manual_seed(2)
    plain, prioritised = GridLSTM(I, H, 2), GridLSTM(I, H, 2, priority="depth")
    assert sum(p.numel() for p in plain.parameters()) == sum(
        p.numel() for p in prioritised.parameters()
    )
    for k in range(2):
        for copy in range(2):
            pairs = zip(
                prioritised.block.dimension_parameters(k, copy),
                plain.block.dimension_parameters(k, copy),
                strict=True,
            )
            for mine, theirs in pairs:
                mine.data.copy_(theirs)
    prioritised.scan.projection.load_state_dict(plain.scan.projection.state_dict())
    x = torch.randn(T, B, I)
    (out_a, state_a), (out_b, state_b) = plain(x), prioritised(x)
    torch.testing.assert_close(state_a.h[0], state_b.h[0])  # time at layer 1: same inputs
    assert not torch.allclose(out_a, out_b)


def test_bad_input_errors():
    grid = GridLSTM(I, H, L)
    with pytest.raises(ValueError, match=r"expects a 3-D input \(T, B, input_size\).*got \(5, 4\)"):
        grid(torch.randn(T, I))
    with pytest.raises(ValueError, match="input has 3 features, expected input_size=4"):
        grid(torch.randn(T, B, 3))
    with pytest.raises(ValueError, match=r"state.h has shape \(3, 2, 6\), expected \(3, 3, 6\)"):
        grid(torch.randn(T, B, I), grid.initial_state(2))
    with pytest.raises(ValueError, match=r"state.m has shape \(3, 3, 5\)"):
        grid(torch.randn(T, B, I), State(torch.zeros(L, B, H), torch.zeros(L, B, 5)))
    with pytest.raises(TypeError, match=r"state must be a State\(h, m\)"):
        grid(torch.randn(T, B, I), torch.zeros(L, B, H))
    with pytest.raises(ValueError, match="priority must be None, 'time' or 'depth'"):
        GridLSTM(I, H, L, priority="width")
