"""Every registered cell against its paper's equations, written here independently."""

import pytest
import torch

import rnnlab
from rnnlab import cells

sig, tanh = torch.sigmoid, torch.tanh


def lin(W, v):
    return v @ W.T


# Each reference takes x (B, I), the state dict and the parameter dict P; returns the new state
# dict; the output is the new h.
def ref_rnn(x, s, P):
    return {"h": tanh(lin(P["W"], x) + lin(P["R"], s["h"]) + P["b"])}


def _lstm(x, s, P, no_i=False, no_f=False, no_o=False, peep=False, z_act=tanh, h_act=tanh,
          coupled=False):
    h, c = s["h"], s["c"]

    def gate(g, cell_value):
        pre = lin(P[f"W_{g}"], x) + lin(P[f"R_{g}"], h) + P[f"b_{g}"]
        if peep:
            pre = pre + P[f"p_{g}"] * cell_value
        return sig(pre)

    z = z_act(lin(P["W_z"], x) + lin(P["R_z"], h) + P["b_z"])
    i = 1.0 if no_i else gate("i", c)
    if coupled:
        f = 1 - i
    else:
        f = 1.0 if no_f else gate("f", c)
    c_new = f * c + i * z
    o = 1.0 if no_o else gate("o", c_new)
    return {"h": o * h_act(c_new), "c": c_new}


def ref_fgr(x, s, P):
    h, c = s["h"], s["c"]
    prev = {"i": s["i"], "f": s["f"], "o": s["o"]}

    def gate(g, cell_value):
        pre = lin(P[f"W_{g}"], x) + lin(P[f"R_{g}"], h) + P[f"p_{g}"] * cell_value + P[f"b_{g}"]
        for k in "ifo":
            pre = pre + lin(P[f"R_{g}{k}"], prev[k])
        return sig(pre)

    z = tanh(lin(P["W_z"], x) + lin(P["R_z"], h) + P["b_z"])
    i, f = gate("i", c), gate("f", c)
    c_new = f * c + i * z
    o = gate("o", c_new)
    return {"h": o * tanh(c_new), "c": c_new, "i": i, "f": f, "o": o}


def ref_gru(x, s, P):
    h = s["h"]
    r = sig(lin(P["W_xr"], x) + lin(P["W_hr"], h) + P["b_r"])
    z = sig(lin(P["W_xz"], x) + lin(P["W_hz"], h) + P["b_z"])
    h_tilde = tanh(lin(P["W_xh"], x) + lin(P["W_hh"], r * h) + P["b_h"])
    return {"h": (1 - z) * h + z * h_tilde}


def ref_gru_torch(x, s, P):
    h = s["h"]
    r = sig(lin(P["W_ir"], x) + lin(P["W_hr"], h) + P["b_r"])
    z = sig(lin(P["W_iz"], x) + lin(P["W_hz"], h) + P["b_z"])
    n = tanh(lin(P["W_in"], x) + P["b_in"] + r * (lin(P["W_hn"], h) + P["b_hn"]))
    return {"h": (1 - z) * n + z * h}


def ref_mut1(x, s, P):
    h = s["h"]
    z = sig(lin(P["W_xz"], x) + P["b_z"])
    r = sig(lin(P["W_xr"], x) + lin(P["W_hr"], h) + P["b_r"])
    return {"h": tanh(lin(P["W_hh"], r * h) + tanh(x) + P["b_h"]) * z + h * (1 - z)}


def ref_mut2(x, s, P):
    h = s["h"]
    z = sig(lin(P["W_xz"], x) + lin(P["W_hz"], h) + P["b_z"])
    r = sig(x + lin(P["W_hr"], h) + P["b_r"])
    return {"h": tanh(lin(P["W_hh"], r * h) + lin(P["W_xh"], x) + P["b_h"]) * z + h * (1 - z)}


def ref_mut3(x, s, P):
    h = s["h"]
    z = sig(lin(P["W_xz"], x) + lin(P["W_hz"], tanh(h)) + P["b_z"])
    r = sig(lin(P["W_xr"], x) + lin(P["W_hr"], h) + P["b_r"])
    return {"h": tanh(lin(P["W_hh"], r * h) + lin(P["W_xh"], x) + P["b_h"]) * z + h * (1 - z)}


REFERENCES = {
    "rnn": ref_rnn,
    "lstm": _lstm,
    "peephole": lambda x, s, P: _lstm(x, s, P, peep=True),
    "nig": lambda x, s, P: _lstm(x, s, P, peep=True, no_i=True),
    "nfg": lambda x, s, P: _lstm(x, s, P, peep=True, no_f=True),
    "nog": lambda x, s, P: _lstm(x, s, P, peep=True, no_o=True),
    "niaf": lambda x, s, P: _lstm(x, s, P, peep=True, z_act=lambda v: v),
    "noaf": lambda x, s, P: _lstm(x, s, P, peep=True, h_act=lambda v: v),
    "np": _lstm,
    "cifg": lambda x, s, P: _lstm(x, s, P, peep=True, coupled=True),
    "fgr": ref_fgr,
    "gru": ref_gru,
    "gru_torch": ref_gru_torch,
    "mut1": ref_mut1,
    "mut2": ref_mut2,
    "mut3": ref_mut3,
    "lstm_f": lambda x, s, P: _lstm(x, s, P, no_f=True),
    "lstm_i": lambda x, s, P: _lstm(x, s, P, no_i=True),
    "lstm_o": lambda x, s, P: _lstm(x, s, P, no_o=True),
}

EXPECTED_PARAMS = {
    "rnn": {"W", "R", "b"},
    "lstm": {f"{k}_{g}" for k in "WRb" for g in "zifo"},
    "peephole": {f"{k}_{g}" for k in "WRb" for g in "zifo"} | {"p_i", "p_f", "p_o"},
    "nig": {f"{k}_{g}" for k in "WRb" for g in "zfo"} | {"p_f", "p_o"},
    "nfg": {f"{k}_{g}" for k in "WRb" for g in "zio"} | {"p_i", "p_o"},
    "nog": {f"{k}_{g}" for k in "WRb" for g in "zif"} | {"p_i", "p_f"},
    "cifg": {f"{k}_{g}" for k in "WRb" for g in "zio"} | {"p_i", "p_o"},
    "fgr": {f"{k}_{g}" for k in "WRb" for g in "zifo"} | {"p_i", "p_f", "p_o"}
    | {f"R_{g}{k}" for g in "ifo" for k in "ifo"},
    "gru": {"W_xr", "W_hr", "b_r", "W_xz", "W_hz", "b_z", "W_xh", "W_hh", "b_h"},
    "mut1": {"W_xz", "b_z", "W_xr", "W_hr", "b_r", "W_hh", "b_h"},
    "mut2": {"W_xz", "W_hz", "b_z", "W_hr", "b_r", "W_hh", "W_xh", "b_h"},
    "mut3": {"W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_hh", "W_xh", "b_h"},
    "lstm_f": {f"{k}_{g}" for k in "WRb" for g in "zio"},
}


def test_registry_holds_exactly_the_zoo():
    assert set(cells.names()) >= set(REFERENCES)
    assert list(REFERENCES) == cells.names()[: len(REFERENCES)]


@pytest.mark.parametrize("name", list(EXPECTED_PARAMS))
def test_parameters_carry_the_papers_names(name):
    cell = cells.make(name, 6, 6)
    assert {n for n, _ in cell.named_parameters()} == EXPECTED_PARAMS[name]
    for n, p in cell.named_parameters():
        if n.startswith("W_") and name not in ("gru", "mut1", "mut2", "mut3") or n == "W":
            assert p.shape == (6, 6)


def test_parameter_shapes_follow_input_and_hidden():
    cell = cells.make("peephole", 3, 5)
    shapes = {n: tuple(p.shape) for n, p in cell.named_parameters()}
    assert shapes["W_i"] == (5, 3) and shapes["R_i"] == (5, 5) and shapes["p_o"] == (5,)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_cell_matches_its_equations(name):
    torch.manual_seed(0)
    I = H = 5  # MUT1/MUT2's raw x terms need I == H
    cell = cells.make(name, I, H).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0, 0.5)
    P = dict(cell.named_parameters())
    x = torch.randn(4, I, dtype=torch.double)
    state = cell.State(*(torch.randn(4, H, dtype=torch.double) for _ in cell.State._fields))
    h, new = cell(x, state)
    expected = REFERENCES[name](x, state._asdict(), P)
    assert set(expected) == set(new._fields)
    for field in new._fields:
        torch.testing.assert_close(getattr(new, field), expected[field])
    torch.testing.assert_close(h, expected["h"])
    # gradients of every parameter agree too
    weights = torch.randn_like(h)
    grads = torch.autograd.grad((h * weights).sum(), list(P.values()), allow_unused=True)
    ref_h = REFERENCES[name](x, state._asdict(), P)["h"]
    ref_grads = torch.autograd.grad((ref_h * weights).sum(), list(P.values()), allow_unused=True)
    for n, g, r in zip(P, grads, ref_grads):
        torch.testing.assert_close(g, r, msg=f"gradient of {n}")


@pytest.mark.parametrize("name", list(REFERENCES))
def test_gradcheck_float64(name):
    torch.manual_seed(1)
    rnn = rnnlab.RNN(name, 3, 3).double()
    x = torch.randn(3, 2, 3, dtype=torch.double, requires_grad=True)
    state = tuple(torch.randn(1, 2, 3, dtype=torch.double, requires_grad=True)
                  for _ in rnn.state_fields)
    params = list(rnn.parameters())

    def run(x, *rest):
        out, final = rnn(x, rest[: len(state)])
        return out, *((final,) if isinstance(final, torch.Tensor) else final)  # one field

    assert torch.autograd.gradcheck(run, (x, *state), eps=1e-6, atol=1e-5)
    # and with respect to the parameters
    names = [n for n, _ in rnn.named_parameters()]

    def run_params(*ps):
        out = torch.func.functional_call(rnn, dict(zip(names, ps)), (x.detach(),))[0]
        return out

    assert torch.autograd.gradcheck(run_params, tuple(p.detach().requires_grad_() for p in params),
                                    eps=1e-6, atol=1e-5)


def test_forget_bias_default_and_option():
    assert torch.all(cells.make("lstm", 4, 4).b_f == 1.0)
    assert torch.all(cells.make("peephole", 4, 4, forget_bias=2.5).b_f == 2.5)
    assert torch.all(cells.make("lstm", 4, 4, forget_bias=0.0).b_f == 0.0)
    with pytest.raises(ValueError, match="no forget gate"):
        cells.make("gru", 4, 4, forget_bias=1.0)
    with pytest.raises(ValueError, match="no forget gate"):
        cells.make("cifg", 4, 4, forget_bias=1.0)


@pytest.mark.parametrize("init", ["uniform", "xavier", "orthogonal"])
def test_init_schemes(init):
    torch.manual_seed(0)
    cell = cells.make("lstm", 6, 8, init=init)
    if init == "orthogonal":
        R = cell.R_i.detach()
        torch.testing.assert_close(R @ R.T, torch.eye(8), atol=1e-5, rtol=0)
    if init == "uniform":
        assert cell.W_i.abs().max() <= 1 / 8**0.5
    else:
        assert torch.all(cell.b_i == 0)
    assert torch.all(cell.b_f == 1.0)


@pytest.mark.parametrize("init", ["uniform", "xavier"])
def test_init_distribution(init):
    """Every matrix entry is U(−a, a): a = 1/√H (uniform, as torch.nn.LSTM) or Glorot's
    √(6 / (fan_in + fan_out)). Checked by a Kolmogorov–Smirnov test on all entries, so a
    scale that is too small (or a normal instead of a uniform) fails, not only one too big."""
    from scipy import stats

    torch.manual_seed(0)
    H, I = 64, 48
    cell = cells.make("lstm", I, H, init=init)
    for name, p in cell.named_parameters():
        if init == "xavier" and p.dim() == 1:
            continue
        if name == "b_f":
            continue
        a = 1 / H**0.5 if init == "uniform" else (6 / (p.shape[0] + p.shape[1])) ** 0.5
        values = p.detach().flatten().double().numpy()
        assert stats.kstest(values, stats.uniform(-a, 2 * a).cdf).pvalue > 1e-3, name
        # and not a narrower uniform that the KS test alone might let pass on few entries
        assert values.max() > 0.9 * a and values.min() < -0.9 * a, name


def test_bad_init_and_unknown_options_are_refused():
    with pytest.raises(ValueError, match="init must be one of"):
        cells.make("lstm", 4, 4, init="normal")
    with pytest.raises(ValueError, match="unknown option"):
        cells.make("lstm", 4, 4, hidden=3)
    with pytest.raises(ValueError, match="unknown cell 'lstmm'; known cells: rnn, lstm"):
        cells.make("lstmm", 4, 4)
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        cells.make("lstm", 4, 0)


class TestRawInputTerms:
    """MUT1's tanh(x) and MUT2's x + need input_size == hidden_size; the behaviour is explicit."""

    @pytest.mark.parametrize("name", ["mut1", "mut2"])
    def test_mismatched_sizes_are_refused_with_advice(self, name):
        advice = "needs input_size == hidden_size.*raw_input='project'"
        with pytest.raises(ValueError, match=advice):
            cells.make(name, 3, 5)

    @pytest.mark.parametrize("name", ["mut1", "mut2"])
    def test_projection_on_request(self, name):
        cell = cells.make(name, 3, 5, raw_input="project")
        assert cell.P_x.shape == (5, 3)
        h, _ = cell(torch.randn(2, 3))
        assert h.shape == (2, 5)
        assert "P_x x" in str(cell)

    def test_equal_sizes_keep_the_raw_term(self):
        cell = cells.make("mut1", 4, 4, raw_input="project")
        assert "P_x" not in dict(cell.named_parameters())
        assert "tanh(x)" in str(cell)

    def test_mut3_has_no_raw_term(self):
        assert cells.make("mut3", 3, 5)(torch.randn(2, 3))[0].shape == (2, 5)


def test_print_shows_equations():
    text = str(cells.make("peephole", 4, 4))
    assert "i = σ(W_i x + R_i h + p_i ⊙ c + b_i)" in text
    assert "c' = f ⊙ c + i ⊙ z" in text
    assert "o = σ(W_o x + R_o h + p_o ⊙ c' + b_o)" in text
    assert "h' = o ⊙ tanh(c')" in text
    assert "f = 1 − i" in str(cells.make("cifg", 4, 4))
    assert "h' = (1 − z) ⊙ h + z ⊙ h_tilde" in str(cells.make("gru", 4, 4))


def test_step_api_shapes_and_errors():
    cell = cells.make("lstm", 3, 4)
    state = cell.initial_state(2)
    assert state._fields == ("h", "c") and state.h.shape == (2, 4)
    h, state = cell(torch.randn(2, 3), state)
    assert h.shape == (2, 4)
    with pytest.raises(ValueError, match=r"step input must have shape \(batch, 3\)"):
        cell(torch.randn(2, 5), state)
    with pytest.raises(ValueError, match=r"state field 'c' must have shape \(2, 4\)"):
        cell(torch.randn(2, 3), cell.State(torch.zeros(2, 4), torch.zeros(3, 4)))
