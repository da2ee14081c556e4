"""The cells of the seed decks, each written as its paper's equations.

Notation (Greff et al. 2016): ``W_*`` input weights (hidden × input), ``R_*`` recurrent weights
(hidden × hidden), ``p_*`` peephole vectors, ``b_*`` biases; ``z`` block input, ``i, f, o``
input, forget and output gates, ``c`` the memory cell. GRU and MUT cells use Jozefowicz et al.
2015's names (``W_xr``, ``W_hr``, ``b_r`` …).
"""

from __future__ import annotations

from ..lang import as_hidden, cell, sigmoid, tanh

# ---------------------------------------------------------------------------- vanilla RNN


@cell("rnn", state=("h",))
def rnn(x, state, p):
    """Elman RNN: h' = tanh(W x + R h + b) (seed 003; trained by BPTT)."""
    h = tanh(p.W @ x + p.R @ state.h + p.b)
    return h, (h,)


# ------------------------------------------------------------- LSTM without peepholes


@cell("lstm", state=("h", "c"))
def lstm(x, state, p):
    """LSTM with forget gate (Hochreiter & Schmidhuber 1997; Gers et al. 2000), no peepholes."""
    h, c = state
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.b_i)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.b_f)
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.b_o)
    c = f * c + i * z
    h = o * tanh(c)
    return h, (h, c)


@cell("lstm_f", state=("h", "c"))
def lstm_f(x, state, p):
    """Jozefowicz et al.'s LSTM-f: the LSTM without a forget gate (f = 1)."""
    h, c = state
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.b_i)
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.b_o)
    c = c + i * z
    h = o * tanh(c)
    return h, (h, c)


@cell("lstm_i", state=("h", "c"))
def lstm_i(x, state, p):
    """Jozefowicz et al.'s LSTM-i: the LSTM without an input gate (i = 1)."""
    h, c = state
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.b_f)
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.b_o)
    c = f * c + z
    h = o * tanh(c)
    return h, (h, c)


@cell("lstm_o", state=("h", "c"))
def lstm_o(x, state, p):
    """Jozefowicz et al.'s LSTM-o: the LSTM without an output gate (o = 1)."""
    h, c = state
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.b_i)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.b_f)
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    c = f * c + i * z
    h = tanh(c)
    return h, (h, c)


# ------------------------------------- Greff et al. 2016: vanilla (peephole) LSTM and variants


@cell("peephole", state=("h", "c"))
def peephole(x, state, p):
    """Greff et al.'s vanilla LSTM: forget gate and peepholes (i, f see c; o sees c')."""
    h, c = state
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.p_i * c + p.b_i)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.p_f * c + p.b_f)
    c = f * c + i * z
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.p_o * c + p.b_o)
    h = o * tanh(c)
    return h, (h, c)


@cell("nig", state=("h", "c"))
def nig(x, state, p):
    """Greff NIG: no input gate (i = 1)."""
    h, c = state
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.p_f * c + p.b_f)
    c = f * c + z
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.p_o * c + p.b_o)
    h = o * tanh(c)
    return h, (h, c)


@cell("nfg", state=("h", "c"))
def nfg(x, state, p):
    """Greff NFG: no forget gate (f = 1)."""
    h, c = state
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.p_i * c + p.b_i)
    c = c + i * z
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.p_o * c + p.b_o)
    h = o * tanh(c)
    return h, (h, c)


@cell("nog", state=("h", "c"))
def nog(x, state, p):
    """Greff NOG: no output gate (o = 1)."""
    h, c = state
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.p_i * c + p.b_i)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.p_f * c + p.b_f)
    c = f * c + i * z
    h = tanh(c)
    return h, (h, c)


@cell("niaf", state=("h", "c"))
def niaf(x, state, p):
    """Greff NIAF: no input activation function (z = W_z x + R_z h + b_z)."""
    h, c = state
    z = p.W_z @ x + p.R_z @ h + p.b_z
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.p_i * c + p.b_i)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.p_f * c + p.b_f)
    c = f * c + i * z
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.p_o * c + p.b_o)
    h = o * tanh(c)
    return h, (h, c)


@cell("noaf", state=("h", "c"))
def noaf(x, state, p):
    """Greff NOAF: no output activation function (h' = o ⊙ c')."""
    h, c = state
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.p_i * c + p.b_i)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.p_f * c + p.b_f)
    c = f * c + i * z
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.p_o * c + p.b_o)
    h = o * c
    return h, (h, c)


@cell("np", state=("h", "c"))
def np_(x, state, p):
    """Greff NP: no peepholes (the same equations as ``lstm``)."""
    h, c = state
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.b_i)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.b_f)
    c = f * c + i * z
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.b_o)
    h = o * tanh(c)
    return h, (h, c)


@cell("cifg", state=("h", "c"))
def cifg(x, state, p):
    """Greff CIFG: coupled input and forget gate (f = 1 − i), as in the GRU."""
    h, c = state
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.p_i * c + p.b_i)
    f = 1 - i
    c = f * c + i * z
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.p_o * c + p.b_o)
    h = o * tanh(c)
    return h, (h, c)


@cell("fgr", state=("h", "c", "i", "f", "o"))
def fgr(x, state, p):
    """Greff FGR: full gate recurrence; R_gk carries gate k's previous activation into gate g."""
    h, c, i, f, o = state
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    i_new = sigmoid(p.W_i @ x + p.R_i @ h + p.p_i * c + p.b_i
                    + p.R_ii @ i + p.R_if @ f + p.R_io @ o)
    f_new = sigmoid(p.W_f @ x + p.R_f @ h + p.p_f * c + p.b_f
                    + p.R_fi @ i + p.R_ff @ f + p.R_fo @ o)
    c = f_new * c + i_new * z
    o_new = sigmoid(p.W_o @ x + p.R_o @ h + p.p_o * c + p.b_o
                    + p.R_oi @ i + p.R_of @ f + p.R_oo @ o)
    h = o_new * tanh(c)
    return h, (h, c, i_new, f_new, o_new)


# ------------------------------------------------------------------------------- GRUs


@cell("gru", state=("h",))
def gru(x, state, p):
    """GRU as in seed 003 (Cho et al. 2014): reset before the recurrent product; z weights h~."""
    h = state.h
    r = sigmoid(p.W_xr @ x + p.W_hr @ h + p.b_r)
    z = sigmoid(p.W_xz @ x + p.W_hz @ h + p.b_z)
    h_tilde = tanh(p.W_xh @ x + p.W_hh @ (r * h) + p.b_h)
    h = (1 - z) * h + z * h_tilde
    return h, (h,)


@cell("gru_torch", state=("h",))
def gru_torch(x, state, p):
    """GRU in torch.nn.GRU's form: reset inside the recurrent term, z weights the old h."""
    h = state.h
    r = sigmoid(p.W_ir @ x + p.W_hr @ h + p.b_r)
    z = sigmoid(p.W_iz @ x + p.W_hz @ h + p.b_z)
    n = tanh(p.W_in @ x + p.b_in + r * (p.W_hn @ h + p.b_hn))
    h = (1 - z) * n + z * h
    return h, (h,)


# ------------------------------------------------- Jozefowicz et al. 2015: found by search


@cell("mut1", state=("h",))
def mut1(x, state, p):
    """MUT1. The raw tanh(x) needs input_size == hidden_size (see ``as_hidden``)."""
    h = state.h
    z = sigmoid(p.W_xz @ x + p.b_z)
    r = sigmoid(p.W_xr @ x + p.W_hr @ h + p.b_r)
    h = tanh(p.W_hh @ (r * h) + tanh(as_hidden(x, p)) + p.b_h) * z + h * (1 - z)
    return h, (h,)


@cell("mut2", state=("h",))
def mut2(x, state, p):
    """MUT2. The raw x in r needs input_size == hidden_size (see ``as_hidden``)."""
    h = state.h
    z = sigmoid(p.W_xz @ x + p.W_hz @ h + p.b_z)
    r = sigmoid(as_hidden(x, p) + p.W_hr @ h + p.b_r)
    h = tanh(p.W_hh @ (r * h) + p.W_xh @ x + p.b_h) * z + h * (1 - z)
    return h, (h,)


@cell("mut3", state=("h",))
def mut3(x, state, p):
    """MUT3."""
    h = state.h
    z = sigmoid(p.W_xz @ x + p.W_hz @ tanh(h) + p.b_z)
    r = sigmoid(p.W_xr @ x + p.W_hr @ h + p.b_r)
    h = tanh(p.W_hh @ (r * h) + p.W_xh @ x + p.b_h) * z + h * (1 - z)
    return h, (h,)


# ------------------------------------------------------------- Grid LSTM transforms


@cell("grid_lstm", state=("h", "m"))
def grid_lstm(x, state, p):
    """Grid LSTM's LSTM transform (Kalchbrenner, Danihelka & Graves 2016, eqs. 3-5):
    h' = tanh(g_o ⊙ m'); gates u, f, o, c as in the paper."""
    h, m = state
    u = sigmoid(p.W_u @ x + p.R_u @ h + p.b_u)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.b_f)
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.b_o)
    c = tanh(p.W_c @ x + p.R_c @ h + p.b_c)
    m = f * m + u * c
    h = tanh(o * m)
    return h, (h, m)


@cell("grid_lstm_standard", state=("h", "m"))
def grid_lstm_standard(x, state, p):
    """Grid LSTM's transform with the usual LSTM output h' = g_o ⊙ tanh(m') (gates u, f, o, c)."""
    h, m = state
    u = sigmoid(p.W_u @ x + p.R_u @ h + p.b_u)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.b_f)
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.b_o)
    c = tanh(p.W_c @ x + p.R_c @ h + p.b_c)
    m = f * m + u * c
    h = o * tanh(m)
    return h, (h, m)


BUILTIN = [
    rnn, lstm, peephole, nig, nfg, nog, niaf, noaf, np_, cifg, fgr, gru, gru_torch,
    mut1, mut2, mut3, lstm_f, lstm_i, lstm_o, grid_lstm, grid_lstm_standard,
]
