"""The wavefront schedule equals the naive block-by-block order, in values and gradients."""

import pytest
import torch
from grid_reference import grid as reference_grid

from rnnlab.grid import GridScan, State

CASES = [
    # sizes, layers, tied, transforms, priority
    ((6,), 3, False, "lstm", ()),
    ((2,), 4, False, "lstm", ()),  # more layers than steps
    ((5,), 1, False, "lstm", ()),
    ((4,), 3, True, ["lstm", "tanh"], (1,)),
    ((3, 4), 2, False, "lstm", ()),
    ((4, 2), 3, True, ["lstm_standard", "lstm", "relu"], (0,)),
    ((2, 3, 2), 2, False, "lstm", (3,)),
    ((1, 1), 2, False, "lstm", ()),
]


def run(scan, x, state, lengths=None, schedule="wavefront"):
    """Output, final state and the gradients of a fixed random loss of both."""
    scan.schedule = schedule
    scan.zero_grad()
    x = x.detach().requires_grad_()
    state = State(*(t.detach().requires_grad_() for t in state))
    output, final = scan(x, state, lengths)
    torch.manual_seed(99)
    loss = sum((t * torch.randn_like(t)).sum() for t in (output, final.h, final.m))
    loss.backward()
    grads = [x.grad, state.h.grad, state.m.grad] + [p.grad for p in scan.parameters()]
    return output, final, grads


def make(sizes, layers, tied, transforms, priority, batch=2, input_size=3, hidden=4):
    torch.manual_seed(len(sizes) * 10 + layers)
    scan = GridScan(input_size, hidden, layers, len(sizes), tied, transforms, priority).double()
    x = torch.randn(*sizes, batch, input_size, dtype=torch.float64)
    shape = (layers, *sizes[1:], batch, hidden)
    state = State(torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64))
    return scan, x, state


@pytest.mark.parametrize("sizes, layers, tied, transforms, priority", CASES)
def test_wavefront_equals_naive(sizes, layers, tied, transforms, priority):
    scan, x, state = make(sizes, layers, tied, transforms, priority)
    fast_out, fast_state, fast_grads = run(scan, x, state, schedule="wavefront")
    slow_out, slow_state, slow_grads = run(scan, x, state, schedule="naive")
    torch.testing.assert_close(fast_out, slow_out)
    torch.testing.assert_close(fast_state.h, slow_state.h)
    torch.testing.assert_close(fast_state.m, slow_state.m)
    for fast, slow in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(fast, slow)


@pytest.mark.parametrize("sizes, layers, tied, transforms, priority", CASES[:1] + CASES[3:6])
def test_schedules_equal_the_reference_equations(sizes, layers, tied, transforms, priority):
    scan, x, state = make(sizes, layers, tied, transforms, priority)
    names = [transforms] * (len(sizes) + 1) if isinstance(transforms, str) else transforms
    expected, h, m = reference_grid(scan, names, x, state.h, state.m)
    for schedule in ("wavefront", "naive"):
        output, final, _ = run(scan, x, state, schedule=schedule)
        torch.testing.assert_close(output, expected)
        torch.testing.assert_close(final.h, h)
        torch.testing.assert_close(final.m, m)


@pytest.mark.parametrize("tied", [False, True])
def test_lengths_stop_the_carry_at_each_sequence_end(tied):
    scan, x, state = make((6,), 3, tied, "lstm", (), batch=3)
    lengths = torch.tensor([6, 2, 4])
    expected, h, m = reference_grid(scan, ["lstm"] * 2, x, state.h, state.m, lengths)
    results = [run(scan, x, state, lengths, schedule) for schedule in ("wavefront", "naive")]
    valid = torch.arange(6)[:, None] < lengths  # (T, B)
    for output, final, _ in results:
        torch.testing.assert_close(output[valid], expected[valid])
        torch.testing.assert_close(final.h, h)
        torch.testing.assert_close(final.m, m)
    (_, _, fast_grads), (_, _, slow_grads) = results
    for fast, slow in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(fast, slow)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="schedule must be one of"):
        GridScan(3, 4, 2, 1, schedule="diagonal")
