"""A sequence grid's single step (T = 1) takes the lean ``single_step`` where it is exact: the
same outputs, states and gradients as every schedule; masked blocks keep the schedules."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import rnnlab.grid.scan as scan_module
from rnnlab.grid import SCHEDULES, GridLSTM, GridScan, State, stack_step
from rnnlab.grid.schedule import single_step

TIGHT = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture
def lean_calls(monkeypatch):
    """How many times ``GridScan`` has taken a lean single step: ``single_step`` (layer by
    layer), or without gradients the whole stack as one cell (``stack_step.step``)."""
    calls = []

    def spy(*args):
        calls.append(1)
        return single_step(*args)

    stacked = stack_step.step

    def stacked_spy(*args):
        calls.append(1)
        return stacked(*args)

    monkeypatch.setattr(scan_module, "single_step", spy)
    monkeypatch.setattr(stack_step, "step", stacked_spy)
    return calls


def make(layers=3, tied=False, batch=3, hidden=5, input_size=4, **options):
    torch.manual_seed(layers * 10 + tied)
    grid = GridLSTM(input_size, hidden, layers, tied=tied, **options).double()
    x = torch.randn(1, batch, input_size, dtype=torch.float64)
    state = State(*(torch.randn(layers, batch, hidden, dtype=torch.float64) for _ in "hm"))
    return grid, x, state


def assert_same(a, b):
    (out_a, state_a), (out_b, state_b) = a, b
    torch.testing.assert_close(out_a, out_b, **TIGHT)
    torch.testing.assert_close(state_a.h, state_b.h, **TIGHT)
    torch.testing.assert_close(state_a.m, state_b.m, **TIGHT)


def scheduled(grid, x, state, name):
    """The step as schedule ``name`` computes it (called directly: no lean path)."""
    return SCHEDULES[name](grid.block, grid.scan.projection(x), state)


CASES = [
    # layers, tied, options
    (1, False, {}),
    (2, True, {}),
    (3, False, {}),
    (4, True, {}),
    (3, False, {"time_transform": "lstm_standard", "depth_transform": "lstm_standard"}),
    (3, True, {"time_transform": "tanh", "depth_transform": "tanh"}),
    (2, False, {"time_transform": "relu", "depth_transform": "relu"}),
    (3, False, {"depth_transform": "tanh"}),  # two transforms: forward_with per layer
    (3, True, {"priority": "time"}),
    (2, False, {"priority": "depth", "time_transform": "relu"}),
    (2, False, {"time_transform": "cell:gru"}),
]


@pytest.mark.parametrize("layers, tied, options", CASES)
def test_single_step_equals_every_schedule(lean_calls, layers, tied, options):
    grid, x, state = make(layers, tied, **options)
    with torch.no_grad():
        lean = grid(x, state)
        assert len(lean_calls) == 1
        for name in SCHEDULES:
            assert_same(lean, scheduled(grid, x, state, name))


@pytest.mark.parametrize("tied", [False, True])
def test_steps_with_the_state_carried_equal_one_call_over_the_sequence(lean_calls, tied):
    grid, _, state = make(3, tied)
    xs = torch.randn(6, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        whole, final = grid(xs, state)
        outputs, carried = [], state
        for x in xs.split(1):
            output, carried = grid(x, carried)
            outputs.append(output)
    assert len(lean_calls) == 6
    assert_same((torch.cat(outputs), carried), (whole, final))


def gradients(grid, x, state, run):
    """Output, state and the gradients of a fixed random loss of both, under ``run``."""
    grid.zero_grad()
    x = x.detach().requires_grad_()
    state = State(*(t.detach().requires_grad_() for t in state))
    output, final = run(grid, x, state)
    torch.manual_seed(7)
    loss = sum((t * torch.randn_like(t)).sum() for t in (output, final.h, final.m))
    loss.backward()
    return output, final, [x.grad, state.h.grad, state.m.grad,
                           *(p.grad for p in grid.parameters())]


@pytest.mark.parametrize("layers, tied, options", [CASES[2], CASES[3], CASES[7], CASES[10]])
def test_training_gradients_equal_the_schedules(lean_calls, layers, tied, options):
    grid, x, state = make(layers, tied, **options)
    lean = gradients(grid, x, state, lambda g, x, s: g(x, s))
    assert len(lean_calls) == 1
    for name in SCHEDULES:
        other = gradients(grid, x, state, lambda g, x, s, name=name: scheduled(g, x, s, name))
        assert_same(lean[:2], other[:2])
        for a, b in zip(lean[2], other[2], strict=True):
            torch.testing.assert_close(a, b, **TIGHT)


def test_packed_and_batch_first_single_steps_are_lean(lean_calls):
    grid, x, state = make(3)
    with torch.no_grad():
        expected = grid(x, state)
        packed, final = grid(pack_sequence(list(x.transpose(0, 1)), enforce_sorted=False), state)
        assert_same((pad_packed_sequence(packed)[0], final), expected)
        grid.batch_first = True
        output, final = grid(x.transpose(0, 1), state)
        assert_same((output.transpose(0, 1), final), expected)
    assert len(lean_calls) == 3


@pytest.mark.parametrize("options", [{"recurrent_dropout": 0.3}, {"weight_drop": 0.3},
                                     {"zoneout": 0.2}, {"layer_norm": True}])
def test_masked_blocks_keep_their_schedule(lean_calls, options):
    """A block with masks (regularisers in training; zoneout or layer norm in evaluation too)
    runs its schedule, which draws them: the same values as the schedule under the same seed."""
    grid, x, state = make(3, **options)
    with torch.no_grad():
        for training in (True, False):
            grid.train(training)
            torch.manual_seed(3)
            found = grid(x, state)
            torch.manual_seed(3)
            assert_same(found, scheduled(grid, x, state, "layerwise"))
    # in evaluation, dropouts and weight drop alone are the plain block: lean
    assert len(lean_calls) == ("zoneout" not in options and "layer_norm" not in options)


def test_lengths_and_grids_of_several_axes_keep_their_schedule(lean_calls):
    grid, x, state = make(2)
    with torch.no_grad():
        lengths = torch.tensor([1, 0, 1])
        found = grid.scan(x, state, lengths)
        assert_same(found, SCHEDULES["layerwise"](grid.block, grid.scan.projection(x), state,
                                                  lengths))
        image = GridScan(4, 5, 2, num_axes=2).double()
        pixels = torch.randn(1, 2, 3, 4, dtype=torch.float64)
        image(pixels)
    assert not lean_calls


def test_single_step_checks_the_weight_copies():
    grid, x, state = make(3)
    with pytest.raises(ValueError, match="weight copies"):
        single_step(grid.block, grid.scan.projection(x), State(state.h[:2], state.m[:2]))
