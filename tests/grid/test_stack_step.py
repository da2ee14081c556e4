"""A 2-D Grid LSTM's whole stack as one cell (``rnnlab.grid.stack_step``): one step of every
layer in one engine call, equal to the grid's own equations."""

import pytest
import torch

import rnnlab
from rnnlab import engine
from rnnlab.engine.plans import grid_stack_parameters, grid_stack_program
from rnnlab.engine.route import Executor, route
from rnnlab.grid import stack_step
from rnnlab.grid.block import GridBlock


def _reference(grid, xs):
    with engine.backend("reference"):
        return grid(xs)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("transform", ["lstm", "lstm_standard"])
@pytest.mark.parametrize("layers", [1, 3])
def test_one_call_per_step_equal_to_the_grids_equations(tied, transform, layers, counted,
                                                         one_step_at_a_time):
    torch.manual_seed(0)
    grid = rnnlab.GridLSTM(6, 8, layers, tied=tied, time_transform=transform,
                           depth_transform=transform)
    xs = torch.randn(5, 3, 6)
    calls = counted(stack_step, "run")
    with torch.no_grad():
        ref, ref_state = _reference(grid, xs)
        out, state = one_step_at_a_time(grid, xs)
    assert len(calls) == 5  # one engine call per step for the whole stack
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(state.h, ref_state.h)
    torch.testing.assert_close(state.m, ref_state.m)


def test_the_stack_plan_runs_natively_as_one_step():
    program = grid_stack_program(3, 6, 8, False, False)
    assert program.graph.states == tuple(f"{k}{layer}" for layer in range(3) for k in "hm")
    chosen = route(program, 1, 1, torch.device("cpu"), torch.float32, False, False)
    assert chosen.executor in (Executor.NATIVE_STEP, Executor.SMALL_STEP)
    # the layer-1 depth edge enters with memory 0: its forget gate is never computed, so its
    # weights are not read; layer 2's are
    params = grid_stack_parameters(torch.randn(3, 16, 64), torch.randn(3, 64), tied=False,
                                   projection=torch.randn(8, 6))
    for unread in ("A0_df", "X_df", "b0_df", "B0_tu"):  # (layer 0 reads x through X = B0 P)
        del params[unread]
    program.prepare(params)
    del params["B1_df"]
    with pytest.raises(KeyError, match="B1_df"):
        program.prepare(params)


def test_float64_is_followed(one_step_at_a_time):
    """(In-place updates of the weights: tests/engine/test_stack.py.)"""
    torch.manual_seed(0)
    grid = rnnlab.GridLSTM(8, 8, 2)
    xs = torch.randn(3, 2, 8)
    with torch.no_grad():
        one_step_at_a_time(grid, xs)
        grid = grid.double()
        out, _ = one_step_at_a_time(grid, xs.double())
        torch.testing.assert_close(out, _reference(grid, xs.double())[0])


def test_where_it_does_not_apply_the_layers_run_as_before(counted, one_step_at_a_time):
    """With gradients, another transform, priority dimensions, a regularised block in
    training, or weights made under inference mode: the layer-by-layer step, same values."""
    torch.manual_seed(0)
    used = counted(stack_step, "step")
    xs = torch.randn(3, 2, 8)
    cases = [
        (rnnlab.GridLSTM(8, 8, 2), True),  # with gradients
        (rnnlab.GridLSTM(8, 8, 2, time_transform="tanh", depth_transform="lstm"), False),
        (rnnlab.GridLSTM(8, 8, 2, priority="depth"), False),
        (rnnlab.GridLSTM(8, 8, 2, time_transform="cell:gru", depth_transform="cell:gru"), False),
    ]
    for grid, grad in cases:
        with torch.set_grad_enabled(grad):
            out, _ = one_step_at_a_time(grid, xs)
            ref, _ = _reference(grid, xs)
        torch.testing.assert_close(out, ref)
        if grad:
            assert out.requires_grad
    with torch.inference_mode():
        grid = rnnlab.GridLSTM(8, 8, 2)
        torch.testing.assert_close(one_step_at_a_time(grid, xs)[0], _reference(grid, xs)[0])
    assert used == []
    with torch.no_grad():  # and where it does
        one_step_at_a_time(rnnlab.GridLSTM(8, 8, 2), xs)
    assert len(used) == 3


def test_applies_only_to_a_2d_block_of_one_lstm_transform():
    x, P = torch.randn(1, 2, 5), torch.randn(8, 5)
    with torch.no_grad():
        assert stack_step.applies(GridBlock(2, 8), P, x)
        assert not stack_step.applies(GridBlock(3, 8), P, x)
        assert not stack_step.applies(GridBlock(2, 8, transforms=("tanh", "lstm")), P, x)
        with engine.backend("reference"):  # the reference steps each layer
            assert not stack_step.applies(GridBlock(2, 8), P, x)
    assert not stack_step.applies(GridBlock(2, 8), P, x)  # gradients wanted by its parameters
    frozen = GridBlock(2, 8).requires_grad_(False)
    assert stack_step.applies(frozen, P, x)
    assert not stack_step.applies(frozen, P.requires_grad_(), x)  # ... or by the projection
