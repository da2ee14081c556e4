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
from graph_interpreter import assert_same_values_and_gradients, interpret
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


def _packed_equals_each_sequence_alone(rnn) -> None:
    """A packed batch of 4 sequences (lengths 6, 4, 3, 1) gives each sequence's output and
    final state as that sequence run alone, and zeros after its end."""
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
    _packed_equals_each_sequence_alone(rnn)


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


# ---- zoneout (Krueger et al. 2016) ----------------------------------------------------------
ZONE = {"h": 0.3, "c": 0.5}


class ZoneRecorder:
    """Records every zoneout mask a cell draws (monkeypatched over Cell._zoneout_draw)."""

    def __init__(self, monkeypatch, fixed: torch.Tensor | None = None):
        self.draws: list[torch.Tensor] = []
        original = Cell._zoneout_draw

        def record(cell, shape, p, like):
            if fixed is None:
                mask = original(cell, shape, p, like)
            else:  # the same mask for every sequence: row t of ``fixed`` at step t
                mask = fixed[:shape[0], None, :shape[2]].expand(shape).to(like)
            self.draws.append(mask)
            return mask

        monkeypatch.setattr(Cell, "_zoneout_draw", record)


def lstm_zoneout_reference(c, x, d_h, d_c, state=None, ln=False):
    """Krueger et al.'s zoned-out LSTM in plain torch (optionally layer-normalised as Ba et al.
    and haste: LN of W x and R h per gate, each with a gain, and of the cell before tanh):
    x (T, B, I), d_h and d_c (T, B, H) per-step masks (1 = keep the previous value)."""
    def ln_(v, g):
        return g * torch.nn.functional.layer_norm(v, v.shape[-1:], eps=1e-5)

    B = x.shape[1]
    h, cc = state if state is not None else (x.new_zeros(B, H), x.new_zeros(B, H))
    outputs = []
    for t in range(x.shape[0]):
        pre = {}
        for gate in "ifzo":
            W, R, b = (getattr(c, f"{k}_{gate}") for k in ("W", "R", "b"))
            if ln:
                pre[gate] = (ln_(x[t] @ W.T, getattr(c, f"g_W_{gate}"))
                             + ln_(h @ R.T, getattr(c, f"g_R_{gate}")) + b)
            else:
                pre[gate] = x[t] @ W.T + h @ R.T + b
        i, f, o = (torch.sigmoid(pre[k]) for k in "ifo")
        z = torch.tanh(pre["z"])
        c_new = f * cc + i * z
        shown = ln_(c_new, c.g_c) + c.b_c if ln else c_new
        h_new = o * torch.tanh(shown)
        cc = d_c[t] * cc + (1 - d_c[t]) * c_new  # the paper's form, not the library's
        h = d_h[t] * h + (1 - d_h[t]) * h_new
        outputs.append(h)
    return torch.stack(outputs), (h, cc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ln", [False, True])
def test_lstm_zoneout_equals_plain_torch_equations_under_the_drawn_masks(monkeypatch, dtype, ln):
    torch.manual_seed(20)
    rnn = rnnlab.RNN("lstm", I, H, zoneout=ZONE, layer_norm=ln).to(dtype)
    with torch.no_grad():  # gains away from 1 so that a gain read wrongly shows
        for p in rnn.parameters():
            p.add_(0.2 * torch.randn_like(p))
    rec = ZoneRecorder(monkeypatch)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0, c0 = (torch.randn(1, B, H, dtype=dtype, requires_grad=True) for _ in range(2))
    out, (h, c) = rnn(x, (h0, c0))
    d_h, d_c = rec.draws  # in the order of the graph's step masks: d_h, then d_c
    assert d_h.shape == (T, B, H) and set(d_h.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(d_c.mean().item(), 0.5, atol=0.2, rtol=0)
    ref, (h_ref, c_ref) = lstm_zoneout_reference(rnn.cells.layer0, x, d_h, d_c,
                                                 (h0[0], c0[0]), ln)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == torch.float32 else {}
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(h[0], h_ref, **tol)
    torch.testing.assert_close(c[0], c_ref, **tol)
    params = list(rnn.parameters())
    g = torch.autograd.grad((out * torch.cos(out)).sum() + c.sum(), [x, h0, c0, *params])
    g_ref = torch.autograd.grad((ref * torch.cos(ref)).sum() + c_ref.sum(), [x, h0, c0, *params])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, **tol)


def test_zoneout_masks_differ_per_step_sequence_and_call(monkeypatch):
    torch.manual_seed(21)
    rnn = rnnlab.RNN("gru", I, H, zoneout=0.5)
    rec = ZoneRecorder(monkeypatch)
    x = torch.randn(T, 1, I).expand(T, B, I)  # the same sequence in every row
    first, _ = rnn(x)
    second, _ = rnn(x)
    d = rec.draws[0]
    assert not torch.equal(d[0], d[1])  # per step
    assert not torch.equal(d[:, 0], d[:, 1])  # per sequence
    assert not torch.equal(first, second)  # per call
    assert not torch.equal(first[:, 0], first[:, 1])
    # a unit zoned out at step t keeps its value: h_t = h_{t-1} there (up to the rounding of
    # h_new + (h − h_new)), and only there
    out, _ = rnn(x)
    d = rec.draws[-1]
    kept = d[1:].bool()
    torch.testing.assert_close(out[1:][kept], out[:-1][kept], rtol=0, atol=1e-7)
    assert ((out[1:] - out[:-1]).abs()[~kept] > 1e-6).all()


@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole", "mut2"])
def test_zoneout_evaluation_is_deterministic_and_the_expectation(cell):
    """In evaluation s' = p·s + (1 − p)·s_new: the cell whose masks are the constant p."""
    torch.manual_seed(22)
    kw = dict(num_layers=2, bidirectional=cell != "mut2")
    zone = ZONE if cell in ("lstm", "peephole") else 0.3
    rnn = rnnlab.RNN(cell, H, H, **kw, zoneout=zone, recurrent_dropout=0.2)
    expectation = plain(rnn.cells.layer0.graph)
    assert not expectation.masks and expectation != cells.graph(cell, H, H)
    base = rnnlab.RNN(expectation, H, H, **kw)
    base.load_state_dict(rnn.state_dict())
    rnn.eval()
    x = torch.randn(T, B, H)
    a, sa = rnn(x)
    b, _ = rnn(x)
    assert torch.equal(a, b)
    ref, sref = base(x)
    torch.testing.assert_close(a, ref)
    if cell == "lstm":  # and the paper's expectation written out
        c = rnn.cells.layer0
        single = rnnlab.RNN("lstm", H, H, zoneout=ZONE)
        single.load_state_dict({k: v for k, v in rnn.state_dict().items()
                                if k.startswith("cells.layer0.")})
        single.eval()
        d_h, d_c = torch.full((T, B, H), 0.3), torch.full((T, B, H), 0.5)
        torch.testing.assert_close(single(x)[0], lstm_zoneout_reference(c, x, d_h, d_c)[0])


def test_zoneout_gradcheck_float64():
    torch.manual_seed(23)
    rnn = rnnlab.RNN("lstm", I, H, zoneout=ZONE, layer_norm=True,
                     recurrent_dropout=0.3).double()
    x = torch.randn(3, 2, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(1, 2, H, dtype=torch.double, requires_grad=True)

    def f(x, h0):
        torch.manual_seed(12)  # the same masks on every call
        out, (h, c) = rnn(x, (h0, torch.zeros_like(h0)))
        return out, c

    assert torch.autograd.gradcheck(f, (x, h0))


def test_zoneout_packed_bidirectional_equals_each_sequence_alone(monkeypatch):
    """Masks fixed per step (the same for every sequence): each sequence run alone, in both
    directions, sees the same mask rows as in the packed batch."""
    torch.manual_seed(24)
    rnn = rnnlab.RNN("lstm", I, H, bidirectional=True, zoneout=ZONE, layer_norm=True)
    fixed = torch.empty(T, H).bernoulli_(0.5)
    ZoneRecorder(monkeypatch, fixed)
    _packed_equals_each_sequence_alone(rnn)


@pytest.mark.parametrize("ln", [True, "joint"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "mut1", "peephole"])
def test_reference_torch_and_native_loops_agree(monkeypatch, cell, ln):
    """The same masks through the reference loop, the generated torch loop and the native loop
    (engine's own hoist or torch's), with lengths, values and gradients in float64; layer
    norm per gate and over all gates (``layer_norm="joint"``)."""
    from rnnlab.engine import settings

    torch.manual_seed(25)
    rnn = rnnlab.RNN(cell, H, H, zoneout=0.4, layer_norm=ln, output_dropout=0.2).double()
    with torch.no_grad():  # gains and shifts away from 1 and 0
        for p in rnn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(T, B, H, dtype=torch.double, requires_grad=True)
    results = []
    for name, own in (("reference", True), ("python", True), ("native", True),
                      ("native", False)):
        with settings.backend(name, own_hoist=own):
            torch.manual_seed(3)
            out, _ = rnn(pack_padded_sequence(x, torch.tensor([6, 5, 3, 2])))
            grads = torch.autograd.grad((out.data ** 2).sum(), [x, *rnn.parameters()])
        results.append((out.data, grads))
    for out, grads in results[1:]:
        torch.testing.assert_close(out, results[0][0])
        for a, b in zip(grads, results[0][1]):
            torch.testing.assert_close(a, b)


def test_dilated_zoneout_layer_reads_the_state_d_steps_back(monkeypatch):
    """With dilation 2 the zoned state of step t comes from step t − 2, with the mask row t."""
    torch.manual_seed(26)
    rnn = rnnlab.RNN("lstm", I, H, dilations=(2,), zoneout=ZONE).double()
    rec = ZoneRecorder(monkeypatch)
    x = torch.randn(7, B, I, dtype=torch.double)
    out, (h, c) = rnn(x)
    d_h, d_c = rec.draws
    cell = rnn.cells.layer0
    zeros = x.new_zeros(B, H)
    states = {-2: (zeros, zeros), -1: (zeros, zeros)}
    expected = []
    for t in range(7):
        o, states[t] = lstm_zoneout_reference(cell, x[t:t + 1], d_h[t:t + 1], d_c[t:t + 1],
                                              states[t - 2])
        expected.append(o[0])
    torch.testing.assert_close(out, torch.stack(expected))
    torch.testing.assert_close(h, torch.stack([states[5][0], states[6][0]]))


def test_zoneout_single_step_cell(monkeypatch):
    """A Cell step draws one mask row; in evaluation it uses p."""
    torch.manual_seed(27)
    c = cells.make("lstm", I, H, zoneout=ZONE).double()
    rec = ZoneRecorder(monkeypatch)
    x = torch.randn(B, I, dtype=torch.double)
    state = c.initial_state(B, dtype=torch.double)
    h, new = c(x, state)
    d_h, d_c = rec.draws
    ref, (h_ref, c_ref) = lstm_zoneout_reference(c, x[None], d_h, d_c, tuple(state))
    torch.testing.assert_close(h, ref[0])
    torch.testing.assert_close(new.c, c_ref)
    c.eval()
    h_eval, _ = c(x, state)
    full = (torch.full((1, B, H), 0.3, dtype=torch.double),
            torch.full((1, B, H), 0.5, dtype=torch.double))
    torch.testing.assert_close(h_eval, lstm_zoneout_reference(c, x[None], *full,
                                                              tuple(state))[0][0])


def test_zoneout_options_are_checked():
    with pytest.raises(ValueError, match="not state fields"):
        cells.make("gru", I, H, zoneout={"c": 0.1})
    with pytest.raises(ValueError, match="zoneout must be a probability"):
        cells.make("lstm", I, H, zoneout=1.0)
    with pytest.raises(ValueError, match="layer_norm must be True, False, .gate. or .joint."):
        cells.make("lstm", I, H, layer_norm=0.5)
    c = cells.make("lstm", I, H, zoneout={"c": 0.2})
    assert c.graph.step_masks == ("d_c",)
    from rnnlab.engine import run

    with pytest.raises(ValueError, match="per-step masks"):
        run(c.program, c.weights(), torch.randn(T, B, I), c.initial_state(B))


# ---- layer normalisation (Ba et al. 2016) -----------------------------------------------------
def test_printed_equations_show_zoneout_and_layer_norm():
    text = str(regularise(cells.graph("lstm", I, H), zoneout=ZONE, layer_norm=True))
    for line in ("i = σ(g_W_i ⊙ norm(W_i x) + b_i + g_R_i ⊙ norm(R_i h))",
                 "c_ln = g_c ⊙ norm(c_new) + b_c", "h_new = o ⊙ tanh(c_ln)",
                 "h' = h_new + d_h ⊙ (h − h_new)", "c' = c_new + d_c ⊙ (c − c_new)",
                 "d_c ~ Bernoulli(0.5)"):
        assert line in text, text


def test_layer_norm_keeps_one_recurrent_gemm_and_starts_as_identity_gain():
    c = cells.make("lstm", I, H, layer_norm=True)
    assert "1 GEMM(s)" in explain(c) and explain(c).startswith("fused"), explain(c)
    for name in ("g_W_i", "g_R_o", "g_c"):
        assert torch.equal(getattr(c, name).detach(), torch.ones(H))
    assert cells.make("lstm", I, H, layer_norm=True, forget_bias=2.0).b_f.eq(2.0).all()


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_torch", "peephole", "cifg", "mut1", "rnn",
                                  "mut3", "lstm_f"])
def test_explain_says_fused_with_zoneout_and_layer_norm(cell):
    c = cells.make(cell, H, H, zoneout=0.2, layer_norm=True, **ALL)
    assert explain(c).startswith("fused"), explain(c)
    assert explain(cells.make(cell, H, H, layer_norm=True)).startswith("fused")


def test_layer_norm_normalises_every_gate_and_is_invariant_to_scaling():
    """LN pre-activations do not change when a recurrent matrix or an input matrix is scaled
    (Ba et al.'s invariance), where the plain cell does."""
    torch.manual_seed(28)
    rnn = rnnlab.RNN("gru_torch", I, H, layer_norm=True).double()
    with torch.no_grad():  # pre-activation variances far above ε
        for p in rnn.parameters():
            p.mul_(10.0)
    x = torch.randn(T, B, I, dtype=torch.double)
    h0 = torch.randn(1, B, H, dtype=torch.double)
    before, _ = rnn(x, h0)
    with torch.no_grad():
        for name in ("W_hr", "W_hz", "W_hn", "W_ir", "W_iz", "W_in"):
            getattr(rnn.cells.layer0, name).mul_(3.0)
    after, _ = rnn(x, h0)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)  # up to ε = 1e-5
    plain_rnn = rnnlab.RNN("gru_torch", I, H).double()
    plain_rnn.load_state_dict(rnn.state_dict(), strict=False)
    moved, _ = plain_rnn(x, h0)
    with torch.no_grad():
        plain_rnn.cells.layer0.W_hn.mul_(3.0)
    assert not torch.allclose(plain_rnn(x, h0)[0], moved)


def test_json_cell_keeps_zoneout_and_layer_norm(tmp_path):
    g = regularise(cells.graph("lstm", I, H), zoneout=ZONE, layer_norm=True,
                   recurrent_dropout=0.2)
    assert Graph.from_json(g.to_json()) == g
    path = tmp_path / "cell.json"
    path.write_text(g.to_json())
    rnn = rnnlab.RNN(str(path), I, H)
    assert rnn.cells.layer0.graph.step_masks == ("d_h", "d_c")
    out, _ = rnn(torch.randn(T, B, I))
    out.sum().backward()
    assert explain(rnn.cells.layer0).startswith("fused")


@pytest.mark.parametrize("k", range(8))
def test_mutants_with_zoneout_and_layer_norm_equal_the_interpreter(k):
    """A search mutant layer-normalised and zoned out (with recurrent dropout on top) runs fused
    and equals the node interpreter under the masks it drew, values and gradients."""
    graph = mutants(8, seed=5)[k]
    reg = regularise(graph, layer_norm=True, zoneout=0.3)
    try:
        reg = recurrent_dropout(reg, 0.3)
    except Exception as error:  # no recurrent product to drop
        assert "nothing" in str(error)
    c = Cell(reg).double()
    with torch.no_grad():
        for p in c.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert explain(c, dtype=torch.double).startswith("fused"), f"{explain(c)}\n{reg}"
    torch.manual_seed(k)
    x = torch.randn(T, B, H, dtype=torch.double, requires_grad=True)
    state = tuple(torch.randn(B, H, dtype=torch.double) for _ in reg.carried)
    masks = c.state_masks(B, x)
    rows = c.with_step_masks(x)
    from rnnlab.engine.unroll import unroll

    out, _ = unroll(c, rows, state + masks)
    params = dict(c.named_parameters())
    expected, _ = interpret(reg, params, x, state + masks, rows[..., H:])
    assert_same_values_and_gradients(out, expected, [x, *params.values()])
