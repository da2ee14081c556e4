"""Regularisers as cell transformations (rnnlab.lang.regularise): locked dropout of the input,
the recurrent state and the output, and weight drop.

The LSTM's regularised equations are written here in plain torch and compared with the library
under the masks the library drew (recorded as it draws them); masks are checked to be constant
over time (gradients), different per sequence and per call; evaluation is deterministic and
equal to the unregularised network; gradcheck in float64; packed and bidirectional runs; the
transformations compose; JSON cells and search mutants are regularised and still run fused.
"""

import random

import pytest
import torch
from graph_interpreter import interpret
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from rnnlab import cells
from rnnlab.cells.module import Cell
from rnnlab.engine import explain
from rnnlab.lang import Graph
from rnnlab.lang.mutate import mutate_steps
from rnnlab.lang.regularise import plain, recurrent_dropout, regularise

I, H, B, T = 3, 5, 4, 6
ALL = dict(input_dropout=0.3, recurrent_dropout=0.4, output_dropout=0.25, weight_drop=0.5)


class Recorder:
    """Records every mask a cell draws (monkeypatched over Cell._bernoulli)."""

    def __init__(self, monkeypatch):
        self.draws: list[torch.Tensor] = []
        original = Cell._bernoulli

        def record(cell, shape, p, like):
            mask = original(cell, shape, p, like)
            self.draws.append(mask)
            return mask

        monkeypatch.setattr(Cell, "_bernoulli", record)

    def of_shape(self, *shape) -> list[torch.Tensor]:
        return [m for m in self.draws if tuple(m.shape) == shape]


def lstm_reference(rnn, x, masks):
    """The regularised LSTM in plain torch: x (T, B, I), masks = (m_x, m_h, m_y, {R: M})."""
    c = rnn.cells.layer0
    m_x, m_h, m_y, drop = masks
    R = {k: getattr(c, k) * drop.get(k, 1.0) for k in ("R_i", "R_f", "R_z", "R_o")}
    h = x.new_zeros(x.shape[1], H)
    cc = torch.zeros_like(h)
    outputs = []
    for t in range(x.shape[0]):
        xt = x[t] * m_x
        hd = h * m_h
        i = torch.sigmoid(xt @ c.W_i.T + hd @ R["R_i"].T + c.b_i)
        f = torch.sigmoid(xt @ c.W_f.T + hd @ R["R_f"].T + c.b_f)
        z = torch.tanh(xt @ c.W_z.T + hd @ R["R_z"].T + c.b_z)
        o = torch.sigmoid(xt @ c.W_o.T + hd @ R["R_o"].T + c.b_o)
        cc = f * cc + i * z
        h = o * torch.tanh(cc)
        outputs.append(h * m_y)
    return torch.stack(outputs), (h, cc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lstm_equals_plain_torch_equations_under_the_drawn_masks(monkeypatch, dtype):
    torch.manual_seed(0)
    rnn = rnnlab.RNN("lstm", I, H, **ALL).to(dtype)
    rec = Recorder(monkeypatch)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    out, (h, c) = rnn(x)
    (m_x,) = rec.of_shape(B, I)
    m_h, m_y = rec.of_shape(B, H)  # in the order of the graph's mask fields: m_h, then m_y
    drops = dict(zip(("R_i", "R_f", "R_z", "R_o"), rec.of_shape(H, H)))
    assert len(drops) == 4 and len(rec.draws) == 7
    for m, p in ((m_x, 0.3), (m_h, 0.4), (m_y, 0.25), (drops["R_i"], 0.5)):
        values = m.unique()
        assert values[0] == 0 and len(values) == 2
        torch.testing.assert_close(values[1].item(), 1 / (1 - p))
    ref, (h_ref, c_ref) = lstm_reference(rnn, x, (m_x, m_h, m_y, drops))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else {}
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(h[0], h_ref, **tol)
    torch.testing.assert_close(c[0], c_ref, **tol)
    params = list(rnn.parameters())
    g = torch.autograd.grad((out * torch.cos(out)).sum() + c.sum(), [x, *params])
    g_ref = torch.autograd.grad((ref * torch.cos(ref)).sum() + c_ref.sum(), [x, *params])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, **tol)


def test_masks_are_constant_over_time(monkeypatch):
    """A dropped input unit or state unit has zero gradient at every step, the same units."""
    torch.manual_seed(1)
    rnn = rnnlab.RNN("lstm", I, H, input_dropout=0.5, recurrent_dropout=0.5)
    rec = Recorder(monkeypatch)
    x = torch.randn(T, B, I, requires_grad=True)
    h0 = torch.randn(1, B, H, requires_grad=True)
    out, _ = rnn(x, (h0, torch.zeros(1, B, H)))
    (m_x,) = rec.of_shape(B, I)
    (m_h,) = rec.of_shape(B, H)
    assert (m_x == 0).any() and (m_h == 0).any()
    dx, dh0 = torch.autograd.grad(out.sum(), [x, h0])
    assert torch.equal(dx == 0, (m_x == 0).expand(T, B, I))  # the same units at every step
    assert torch.equal(dh0[0] == 0, m_h == 0)
    # perturbing a dropped input unit at any step changes nothing; a kept one changes the rest
    torch.manual_seed(5)
    base, _ = rnn(x.detach())
    m_x = rec.of_shape(B, I)[-1]  # the masks of seed 5
    dropped = (m_x == 0).nonzero()[0].tolist()
    kept = (m_x != 0).nonzero()[0].tolist()
    for t in (0, T // 2, T - 1):
        for (b, j), same in ((dropped, True), (kept, False)):
            y = x.detach().clone()
            y[t, b, j] += 1.0
            torch.manual_seed(5)
            moved, _ = rnn(y)
            assert torch.equal(moved, base) is same


def test_masks_differ_per_sequence_and_per_call():
    torch.manual_seed(2)
    rnn = rnnlab.RNN("gru", I, H, recurrent_dropout=0.5, output_dropout=0.5)
    x = torch.randn(T, 1, I).expand(T, B, I)  # the same sequence in every row
    first, _ = rnn(x)
    second, _ = rnn(x)
    assert not torch.equal(first, second)
    assert not torch.equal(first[:, 0], first[:, 1])


@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole", "mut2"])
def test_evaluation_is_deterministic_and_the_plain_network(cell):
    torch.manual_seed(3)
    kw = dict(num_layers=2, bidirectional=cell != "mut2")  # MUT2 adds x raw: I = H
    rnn = rnnlab.RNN(cell, H, H, **kw, **ALL)
    base = rnnlab.RNN(cell, H, H, **kw)
    base.load_state_dict(rnn.state_dict())
    rnn.eval()
    x = torch.randn(T, B, H)
    a, sa = rnn(x)
    b, sb = rnn(x)
    ref, sref = base(x)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, ref)
    for u, v in zip(sa if isinstance(sa, tuple) else (sa,), sref if isinstance(sref, tuple)
                    else (sref,)):
        torch.testing.assert_close(u, v)


def test_expectation_graph_is_the_plain_cell():
    g = cells.graph("lstm", I, H)
    assert plain(regularise(g, **ALL)) == g


def test_gradcheck_float64():
    torch.manual_seed(4)
    rnn = rnnlab.RNN("lstm", I, H, **ALL).double()
    x = torch.randn(3, 2, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(1, 2, H, dtype=torch.double, requires_grad=True)
    W = rnn.cells.layer0.R_f

    def f(x, h0, W_):
        torch.manual_seed(11)  # the same masks on every call
        with torch.no_grad():
            W.copy_(W_)
        out, (h, c) = rnn(x, (h0, torch.zeros_like(h0)))
        return out, c

    assert torch.autograd.gradcheck(lambda x, h0: f(x, h0, W.detach().clone()), (x, h0))


def test_packed_bidirectional_equals_each_sequence_alone(monkeypatch):
    """Every row gets the same (fixed) masks, so each sequence run alone must agree."""
    torch.manual_seed(6)
    rnn = rnnlab.RNN("lstm", I, H, bidirectional=True, input_dropout=0.5,
                     recurrent_dropout=0.5, output_dropout=0.5)
    rows = {}

    def fixed(cell, shape, p, like):
        n = shape[-1]
        if n not in rows:
            rows[n] = torch.empty(n).bernoulli_(1 - p) / (1 - p)
        return rows[n].expand(shape).to(like)

    monkeypatch.setattr(Cell, "_bernoulli", fixed)
    lengths = [6, 4, 3, 1]
    x = torch.randn(T, len(lengths), I)
    out, (h, c) = rnn(pack_padded_sequence(x, torch.tensor(lengths)))
    out, _ = pad_packed_sequence(out)
    for b, n in enumerate(lengths):
        alone, (hb, cb) = rnn(x[:n, b:b + 1])
        torch.testing.assert_close(out[:n, b:b + 1], alone)
        torch.testing.assert_close(h[:, b:b + 1], hb)
        torch.testing.assert_close(c[:, b:b + 1], cb)
        assert (out[n:, b] == 0).all()


def test_transformations_compose():
    g = cells.graph("gru", I, H)
    once = recurrent_dropout(recurrent_dropout(g, 0.2), 0.3)
    assert [m.p for m in once.masks.values()] == [0.2, 0.3]
    assert "m_h" in once.states and "m_h2" in once.states
    twice = regularise(regularise(g, recurrent_dropout=0.2), output_dropout=0.1, weight_drop=0.2)
    assert plain(twice) == g
    c = Cell(twice).double()
    torch.manual_seed(7)
    x = torch.randn(T, B, I, dtype=torch.double)
    rnn = rnnlab.RNN(twice, I, H).double()
    rnn.load_state_dict({f"cells.layer0.{k}": v for k, v in c.state_dict().items()})
    out, _ = rnn(x)
    out.sum().backward()
    rnn.eval()
    base = rnnlab.RNN(g, I, H).double()
    base.load_state_dict(rnn.state_dict())
    torch.testing.assert_close(rnn(x)[0], base(x)[0])


def test_printed_equations_show_the_regularisers():
    text = str(regularise(cells.graph("lstm", I, H), **ALL))
    for line in ("x ← m_x ⊙ x", "h~ = m_h ⊙ h", "i = σ(W_i x + R_i h~ + b_i)",
                 "y = m_y ⊙ h'", "m_h' = m_h", "R_f ← M_R_f ⊙ R_f"):
        assert line in text, text
    assert "R_i h~" not in text.split("c' =")[1]  # c' = f ⊙ c + i ⊙ z reads c unmasked


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_torch", "peephole", "cifg", "mut1", "rnn"])
def test_explain_says_fused(cell):
    c = cells.make(cell, H, H, **ALL)
    assert explain(c).startswith("fused"), explain(c)


def test_json_cell_round_trips_with_its_masks(tmp_path):
    g = regularise(cells.graph("gru_torch", I, H), recurrent_dropout=0.3, weight_drop=0.2)
    assert Graph.from_json(g.to_json()) == g
    path = tmp_path / "cell.json"
    path.write_text(cells.graph("gru_torch", I, H).to_json())
    rnn = rnnlab.RNN(str(path), I, H, recurrent_dropout=0.3, output_dropout=0.2)
    assert rnn.cells.layer0.graph.masks
    out, _ = rnn(torch.randn(T, B, I))
    out.sum().backward()
    assert explain(rnn.cells.layer0).startswith("fused")


def test_bad_probabilities_are_refused():
    with pytest.raises(ValueError, match="recurrent_dropout must be a probability"):
        cells.make("lstm", I, H, recurrent_dropout=1.0)


def mutants(count: int, seed: int):
    rng = random.Random(seed)
    zoo = [cells.graph(name, H, H) for name in ("lstm", "gru", "mut1", "mut3", "peephole")]
    return [mutate_steps(zoo[k % len(zoo)], rng, rng.randint(1, 6)) for k in range(count)]


@pytest.mark.parametrize("k", range(8))
def test_mutants_regularised_run_fused_and_equal_the_interpreter(k):
    """The regularised mutant, with the masks it drew, equals a node-by-node interpreter of
    its graph (masks as state fields), and in evaluation the plain mutant."""
    graph = mutants(8, seed=3)[k]
    try:
        reg = regularise(graph, recurrent_dropout=0.4, output_dropout=0.3)
    except Exception as error:  # a mutant without recurrent products: output dropout only
        assert "nothing" in str(error)
        reg = regularise(graph, output_dropout=0.3)
    c = Cell(reg).double()
    assert explain(c, dtype=torch.double).startswith("fused"), f"{explain(c)}\n{reg}"
    torch.manual_seed(k)
    x = torch.randn(T, B, H, dtype=torch.double)
    state = tuple(torch.randn(B, H, dtype=torch.double) for _ in reg.carried)
    masks = c.state_masks(B, x)
    from rnnlab.engine.unroll import unroll

    out, final = unroll(c, x, state + masks)
    expected, exp_final = interpret(reg, dict(c.named_parameters()), x, state + masks)
    torch.testing.assert_close(out, expected)
    c.eval()
    plain_cell = Cell(plain(reg)).double()
    plain_cell.load_state_dict(c.state_dict())
    out_eval, _ = unroll(c, x, state + c.state_masks(B, x))
    torch.testing.assert_close(out_eval, unroll(plain_cell, x, state)[0])


def test_dilated_layers_carry_their_masks():
    """A dilated layer's phases share the sequence's masks; evaluation is the plain network."""
    torch.manual_seed(8)
    rnn = rnnlab.RNN("lstm", I, H, num_layers=2, dilations=(1, 2), recurrent_dropout=0.4,
                     output_dropout=0.3, weight_drop=0.2)
    base = rnnlab.RNN("lstm", I, H, num_layers=2, dilations=(1, 2))
    base.load_state_dict(rnn.state_dict())
    x = torch.randn(7, B, I, requires_grad=True)
    out, (h, c) = rnn(x)
    assert h.shape == (3, B, H)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    rnn.eval()
    torch.testing.assert_close(rnn(x)[0], base(x)[0])
