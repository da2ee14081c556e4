"""Dilated layers (connections across time): step t reads the state of step t - d."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import rnnlab

CELLS = ["lstm", "gru", "rnn", "peephole", "mut3"]


def by_hand(cell, x, slots, d):
    """Step the cell: state_t = cell(x_t, state_{t-d}); slots[j] is what step j reads first."""
    history = [tuple(field[j] for field in slots) for j in range(d)]  # states of steps -d..-1
    outputs = []
    for t in range(x.shape[0]):
        out, state = cell(x[t], cell.State(*history[t]))
        outputs.append(out)
        history.append(tuple(state))
    final = history[-d:]
    return torch.stack(outputs), tuple(torch.stack([s[k] for s in final])
                                       for k in range(len(slots)))


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_layer_equals_stepping_the_cell_by_hand(name, d):
    torch.manual_seed(0)
    rnn = rnnlab.RNN(name, 6, 6, dilations=(d,), raw_input=True) if name == "mut1" else \
        rnnlab.RNN(name, 6, 6, dilations=(d,))
    x = torch.randn(7, 3, 6)
    state = tuple(torch.randn(d, 3, 6) for _ in rnn.state_fields)
    output, final = rnn(x, rnn.State(*state))
    expected, expected_final = by_hand(rnn.cells["layer0"], x, state, d)
    torch.testing.assert_close(output, expected)
    final = (final,) if isinstance(final, torch.Tensor) else final  # one field: the tensor
    for got, want in zip(final, expected_final, strict=True):
        torch.testing.assert_close(got, want)


def test_chunks_carrying_the_slots_equal_one_pass():
    torch.manual_seed(1)
    rnn = rnnlab.RNN("lstm", 4, 5, num_layers=3, dilations=(1, 2, 4))
    x = torch.randn(13, 2, 4)
    whole, whole_state = rnn(x)
    parts, state = [], None
    for start, stop in ((0, 3), (3, 8), (8, 9), (9, 13)):
        out, state = rnn(x[start:stop], state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts), whole)
    for got, want in zip(state, whole_state):
        torch.testing.assert_close(got, want)
    assert whole_state.h.shape == (1 + 2 + 4, 2, 5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_equals_each_sequence_alone(bidirectional):
    torch.manual_seed(2)
    rnn = rnnlab.RNN("gru", 3, 4, num_layers=2, bidirectional=bidirectional, dilations=(2, 3))
    sequences = [torch.randn(n, 3) for n in (7, 1, 4, 5)]
    packed_out, packed_state = rnn(pack_sequence(sequences, enforce_sorted=False))
    padded, lengths = pad_packed_sequence(packed_out)
    for b, seq in enumerate(sequences):
        alone, alone_state = rnn(seq[:, None])
        torch.testing.assert_close(padded[: lengths[b], b], alone[:, 0])
        torch.testing.assert_close(packed_state[:, b], alone_state[:, 0])  # gru: tensors


def test_bidirectional_layer_is_forward_and_reversed_dilated_layers():
    torch.manual_seed(3)
    rnn = rnnlab.RNN("lstm", 3, 4, bidirectional=True, dilations=(3,))
    x = torch.randn(8, 2, 3)
    out, state = rnn(x)
    zero = tuple(torch.zeros(3, 2, 4) for _ in range(2))
    fwd, fwd_final = by_hand(rnn.cells["layer0"], x, zero, 3)
    bwd, bwd_final = by_hand(rnn.cells["layer0_reverse"], x.flip(0), zero, 3)
    torch.testing.assert_close(out, torch.cat([fwd, bwd.flip(0)], -1))
    torch.testing.assert_close(state.h, torch.cat([fwd_final[0], bwd_final[0]]))


def test_causal_and_reads_exactly_d_steps_back():
    torch.manual_seed(4)
    rnn = rnnlab.RNN("rnn", 2, 3, dilations=(3,)).double()
    x = torch.randn(10, 1, 2, dtype=torch.float64, requires_grad=True)
    out, _ = rnn(x)
    for t in range(10):
        (grad,) = torch.autograd.grad(out[t].sum(), x, retain_graph=True)
        reach = grad.abs().sum((1, 2)) > 0  # (T,)
        expected = torch.tensor([s <= t and (t - s) % 3 == 0 for s in range(10)])
        assert torch.equal(reach, expected), t


def test_gradcheck():
    torch.manual_seed(5)
    rnn = rnnlab.RNN("lstm", 2, 3, num_layers=2, dilations=(2, 1)).double()
    x = torch.randn(5, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)

    def run(x, h0, c0):
        out, state = rnn(x, rnn.State(h0, c0))
        return out, state.h, state.c

    assert torch.autograd.gradcheck(run, (x, h0, c0))


@pytest.mark.parametrize("bad", [(0,), (1, 2), (2.0,), (True,)])
def test_bad_dilations_are_refused(bad):
    with pytest.raises(ValueError, match="dilations must be 1 positive integer"):
        rnnlab.RNN("lstm", 2, 3, dilations=bad)


def test_state_shape_error_names_the_dilated_layout():
    rnn = rnnlab.RNN("gru", 2, 3, dilations=(2,))
    with pytest.raises(ValueError, match=r"\(2, 1, 3\) = \(num_directions \* sum\(dilations\)"):
        rnn(torch.randn(4, 1, 2), torch.zeros(1, 1, 3))
