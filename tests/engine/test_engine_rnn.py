"""rnnlab.RNN: the engine equals stepping by hand; packed, bidirectional, layers, skip, interop."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from rnnlab import cells

ALL = cells.names()


def fields(state):
    """The tensors of an RNN's state: the tensor itself for a one-field cell."""
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def by_hand(cell, x, state):
    """Step a cell over x (T, B, I) in a plain Python loop."""
    outs = []
    for t in range(x.shape[0]):
        h, state = cell(x[t], state)
        outs.append(h)
    return torch.stack(outs), state


@pytest.mark.parametrize("name", ALL)
def test_engine_equals_stepping_by_hand(name):
    torch.manual_seed(0)
    rnn = rnnlab.RNN(name, 4, 4).double()
    x = torch.randn(6, 3, 4, dtype=torch.double)
    state = rnn.State(*(torch.randn(1, 3, 4, dtype=torch.double) for _ in rnn.State._fields))
    out, final = rnn(x, state)
    cell = rnn.cells["layer0"]
    ref_out, ref_final = by_hand(cell, x, cell.State(*(s[0] for s in state)))
    torch.testing.assert_close(out, ref_out)
    assert isinstance(final, torch.Tensor) == (len(rnn.State._fields) == 1)
    for a, b in zip(fields(final), ref_final, strict=True):
        torch.testing.assert_close(a[0], b)


@pytest.mark.parametrize("name, options", [("lstm", {}), ("gru", {}), ("fgr", {}),
                                           ("mut1", {"raw_input": "project"})])
def test_bidirectional_multilayer_equals_manual_composition(name, options):
    torch.manual_seed(0)
    rnn = rnnlab.RNN(name, 6, 6, num_layers=2, bidirectional=True, **options).double()
    x = torch.randn(5, 2, 6, dtype=torch.double)
    out, final = rnn(x)
    layer_in = x
    finals = []
    for layer in range(2):
        fwd = rnn.cells[f"layer{layer}"]
        bwd = rnn.cells[f"layer{layer}_reverse"]
        of, sf = by_hand(fwd, layer_in, fwd.initial_state(2))
        ob, sb = by_hand(bwd, layer_in.flip(0), bwd.initial_state(2))
        layer_in = torch.cat([of, ob.flip(0)], -1)
        finals += [sf, sb]
    torch.testing.assert_close(out, layer_in)
    for k, field in enumerate(fields(final)):
        torch.testing.assert_close(field, torch.stack([f[k] for f in finals]))


def test_mut1_multilayer_bidirectional_needs_projection():
    with pytest.raises(ValueError, match="input_size == hidden_size"):
        rnnlab.RNN("mut1", 6, 6, num_layers=2, bidirectional=True)


@pytest.mark.parametrize("name", ["lstm", "peephole", "gru", "mut3"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_equals_each_sequence_alone(name, bidirectional):
    torch.manual_seed(0)
    rnn = rnnlab.RNN(name, 3, 5, num_layers=2, bidirectional=bidirectional).double()
    lengths = torch.tensor([4, 7, 2, 7, 5])
    x = torch.randn(7, 5, 3, dtype=torch.double)
    state = rnn.State(*(torch.randn(rnn.num_layers * rnn.num_directions, 5, 5,
                                    dtype=torch.double) for _ in rnn.State._fields))
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, final = rnn(packed, state)
    padded, out_lengths = pad_packed_sequence(out)
    assert torch.equal(out_lengths, lengths)
    for b in range(5):
        L = int(lengths[b])
        s = rnn.State(*(f[:, b:b + 1] for f in state))
        alone, alone_final = rnn(x[:L, b:b + 1], s)
        torch.testing.assert_close(padded[:L, b:b + 1], alone)
        assert torch.all(padded[L:, b] == 0)
        for a, c in zip(fields(final), fields(alone_final), strict=True):
            torch.testing.assert_close(a[:, b:b + 1], c)


def test_packed_gradients_match_unpacked_per_sequence():
    torch.manual_seed(0)
    rnn = rnnlab.RNN("lstm", 3, 4).double()
    lengths = torch.tensor([5, 3])
    x = torch.randn(5, 2, 3, dtype=torch.double, requires_grad=True)
    out, _ = rnn(pack_padded_sequence(x, lengths, enforce_sorted=False))
    pad_packed_sequence(out)[0].sum().backward()
    g_packed = x.grad.clone()
    x.grad = None
    (rnn(x[:5, :1])[0].sum() + rnn(x[:3, 1:])[0].sum()).backward()
    torch.testing.assert_close(g_packed, x.grad)


def test_batch_first_and_state_carry():
    torch.manual_seed(0)
    rnn = rnnlab.RNN("gru", 3, 4, batch_first=True)
    x = torch.randn(2, 6, 3)
    out, state = rnn(x)
    assert out.shape == (2, 6, 4)
    a, s1 = rnn(x[:, :4])
    b, s2 = rnn(x[:, 4:], s1)
    torch.testing.assert_close(torch.cat([a, b], 1), out)
    torch.testing.assert_close(s2, state)  # a one-field state is its tensor, (1, B, H)
    assert state.shape == (1, 2, 4)
    # a one-tuple or the State is accepted too
    torch.testing.assert_close(rnn(x[:, 4:], (s1,))[0], b)
    torch.testing.assert_close(rnn(x[:, 4:], rnn.State(s1))[0], b)


def test_skip_connections():
    torch.manual_seed(0)
    rnn = rnnlab.RNN("lstm", 3, 4, num_layers=3, skip=True)
    assert rnn.output_size == 12
    assert rnn.cells["layer1"].input_size == 4 + 3  # previous layer + network input
    x = torch.randn(5, 2, 3)
    out, _ = rnn(x)
    assert out.shape == (5, 2, 12)
    # the first block of the output is layer 0 alone
    torch.testing.assert_close(out[..., :4], by_hand(rnn.cells["layer0"], x,
                                                     rnn.cells["layer0"].initial_state(2))[0])


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    rnn = rnnlab.RNN("lstm", 3, 8, num_layers=2, dropout=0.5)
    x = torch.randn(4, 2, 3)
    rnn.eval()
    a, b = rnn(x)[0], rnn(x)[0]
    assert torch.equal(a, b)
    rnn.train()
    assert not torch.equal(rnn(x)[0], rnn(x)[0])
    rnn1 = rnnlab.RNN("lstm", 3, 8, num_layers=1, dropout=0.5).train()
    assert torch.equal(rnn1(x)[0], rnn1(x)[0])  # no dropout after the last layer


def test_parameter_names_visible():
    rnn = rnnlab.RNN("peephole", 3, 4, num_layers=2, bidirectional=True)
    names = {n for n, _ in rnn.named_parameters()}
    assert "cells.layer0.W_i" in names and "cells.layer1_reverse.p_o" in names


# ---------------------------------------------------------------------------- interop
def _torch_modules():
    for kind in (nn.LSTM, nn.GRU, nn.RNN):
        for layers, bidir, batch_first in [(1, False, False), (2, True, False), (3, False, True),
                                           (2, True, True)]:
            yield kind, layers, bidir, batch_first


@pytest.mark.parametrize("kind, layers, bidir, batch_first", list(_torch_modules()))
def test_from_torch_outputs_and_gradients_match(kind, layers, bidir, batch_first):
    torch.manual_seed(0)
    ref = kind(4, 5, num_layers=layers, bidirectional=bidir, batch_first=batch_first).double()
    net = rnnlab.RNN.from_torch(ref)
    x = torch.randn(3, 6, 4, dtype=torch.double) if batch_first else torch.randn(
        6, 3, 4, dtype=torch.double)
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out_ref, state_ref = ref(x1)
    out, state = net(x2)
    torch.testing.assert_close(out, out_ref)
    if kind is nn.LSTM:
        torch.testing.assert_close(state.h, state_ref[0])
        torch.testing.assert_close(state.c, state_ref[1])
    else:
        torch.testing.assert_close(state, state_ref)  # a tensor, as torch's h_n
    w = torch.randn_like(out)
    (out_ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)
    # parameter gradients: map torch's packed layout to the paper names
    D = 2 if bidir else 1
    gates = {nn.LSTM: ["i", "f", "z", "o"], nn.GRU: ["r", "z", "n"], nn.RNN: [None]}[kind]
    for layer in range(layers):
        for d in range(D):
            suffix = "_reverse" if d else ""
            cell = net.cells[f"layer{layer}{suffix}"]
            g_ih = getattr(ref, f"weight_ih_l{layer}{suffix}").grad.chunk(len(gates))
            g_hh = getattr(ref, f"weight_hh_l{layer}{suffix}").grad.chunk(len(gates))
            g_bh = getattr(ref, f"bias_hh_l{layer}{suffix}").grad.chunk(len(gates))
            for k, gate in enumerate(gates):
                if kind is nn.LSTM:
                    w_name, r_name, b_name = f"W_{gate}", f"R_{gate}", f"b_{gate}"
                elif kind is nn.GRU:
                    w_name, r_name = f"W_i{gate}", f"W_h{gate}"
                    b_name = {"r": "b_r", "z": "b_z", "n": "b_hn"}[gate]
                else:
                    w_name, r_name, b_name = "W", "R", "b"
                torch.testing.assert_close(getattr(cell, w_name).grad, g_ih[k])
                torch.testing.assert_close(getattr(cell, r_name).grad, g_hh[k])
                torch.testing.assert_close(getattr(cell, b_name).grad, g_bh[k])


def test_from_torch_packed_and_no_bias():
    torch.manual_seed(0)
    ref = nn.LSTM(3, 4, bias=False).double()
    net = rnnlab.RNN.from_torch(ref)
    assert not net.cells["layer0"].b_i.requires_grad
    lengths = torch.tensor([2, 5, 3])
    x = torch.randn(5, 3, 3, dtype=torch.double)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    a, (h, c) = ref(packed)
    b, state = net(packed)
    torch.testing.assert_close(b.data, a.data)
    torch.testing.assert_close(state.h, h)
    torch.testing.assert_close(state.c, c)


def test_from_torch_refuses_what_it_cannot_map():
    with pytest.raises(ValueError, match="proj_size"):
        rnnlab.RNN.from_torch(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="nonlinearity='tanh'"):
        rnnlab.RNN.from_torch(nn.RNN(3, 4, nonlinearity="relu"))
    with pytest.raises(TypeError, match="takes torch.nn.RNN, LSTM or GRU"):
        rnnlab.RNN.from_torch(nn.Linear(3, 4))


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda: torch.randn(5, 3), r"input must be 3-D \(T, B, input_size\)"),
        (lambda: torch.randn(5, 3, 7), "input has 7 features, expected input_size=4"),
        (lambda: torch.ones(5, 3, 4, dtype=torch.long), "must be floating point"),
        (lambda: [1, 2], "must be a tensor or a PackedSequence"),
    ],
)
def test_bad_input_is_named(make_input, message):
    rnn = rnnlab.RNN("lstm", 4, 6, num_layers=2)
    with pytest.raises((ValueError, TypeError), match=message):
        rnn(make_input())


def test_bad_state_is_named():
    rnn = rnnlab.RNN("lstm", 4, 6, num_layers=2)
    x = torch.randn(5, 3, 4)
    with pytest.raises(ValueError, match=r"state field 'c' must have shape \(2, 3, 6\)"):
        rnn(x, rnn.State(torch.zeros(2, 3, 6), torch.zeros(2, 4, 6)))
    with pytest.raises(ValueError, match=r"state must be a State\('h', 'c'\)"):
        rnn(x, torch.zeros(2, 3, 6))
    with pytest.raises(ValueError, match=r"state field 'h' must have shape \(2, 3, 6\)"):
        rnn(x, rnn.State(torch.zeros(3, 6), torch.zeros(2, 3, 6)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(cell="lstmm"), "unknown cell 'lstmm'; known cells: rnn, lstm"),
        (dict(hidden_size=0), "hidden_size must be a positive integer, got 0"),
        (dict(num_layers=0), "num_layers must be a positive integer"),
        (dict(dropout=1.5), r"dropout must be a probability in \[0, 1\)"),
        (dict(forget_bias=1.0, cell="gru"), "no forget gate"),
        (dict(bogus=3), "unknown option"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    args = dict(cell="lstm", input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        rnnlab.RNN(**args)


def test_detach_keeps_values_and_type():
    rnn = rnnlab.RNN("lstm", 3, 4)
    _, state = rnn(torch.randn(2, 1, 3))
    cut = rnnlab.detach(state)
    assert type(cut) is type(state) and not cut.h.requires_grad
    torch.testing.assert_close(cut.c, state.c)
