"""A Grid LSTM block's LSTM transforms are their zoo cells' plans, run by the engine."""

import pytest
import torch

import rnnlab.cells
from rnnlab import engine
from rnnlab.engine import run
from rnnlab.engine.fast import native
from rnnlab.engine.plans import gates_program
from rnnlab.grid import LSTM, TRANSFORMS, BlockState, GridBlock
from rnnlab.lang import cell, sigmoid

GATES = ("u", "f", "o", "c")


def paper(z, m, standard):
    """Kalchbrenner et al. (2016), eqs. 3-5, from the pre-activations (gates u, f, o, c)."""
    u, f, o, c = z.split(m.shape[-1], dim=-1)
    m = torch.sigmoid(f) * m + torch.sigmoid(u) * torch.tanh(c)
    h = torch.sigmoid(o) * torch.tanh(m) if standard else torch.tanh(torch.sigmoid(o) * m)
    return h, m


@pytest.mark.parametrize("name", ["grid_lstm", "grid_lstm_standard"])
def test_gates_program_is_the_cells_step_after_its_gemm(name):
    """The plan from given pre-activations = the zoo cell stepped on x and (h, m)."""
    torch.manual_seed(0)
    I, H, B = 5, 3, 4
    zoo = rnnlab.cells.make(name, I, H).double()
    x, h, m = (torch.randn(B, n, dtype=torch.float64) for n in (I, H, H))
    z = torch.cat([x @ getattr(zoo, f"W_{g}").T + h @ getattr(zoo, f"R_{g}").T
                   + getattr(zoo, f"b_{g}") for g in GATES], dim=-1)
    program = gates_program(name, H, GATES)
    assert program.input_size == 4 * H and program.graph.states == ("m",)
    output, (m_new,) = run(program, {}, z.unsqueeze(0), (m,))
    _, expected = zoo(x, type(zoo.initial_state(B))(h, m))
    torch.testing.assert_close(output[0], expected.h, rtol=0, atol=1e-12)
    torch.testing.assert_close(m_new, expected.m, rtol=0, atol=1e-12)


ROUTES = ["reference", "python", "auto"] + (
    ["native"] if native.why_unavailable() == "available" else [])


@pytest.mark.parametrize("backend", ROUTES)
@pytest.mark.parametrize("transform", ["lstm", "lstm_standard"])
@pytest.mark.parametrize("rows", [3, 2048])  # a small step, and one wide enough for the engine
def test_lstm_transform_equals_the_paper_on_every_route(transform, backend, rows):
    torch.manual_seed(1)
    d = 8
    z = torch.randn(rows, 2, 4 * d, dtype=torch.float64, requires_grad=True)
    m = torch.randn(rows, 2, d, dtype=torch.float64, requires_grad=True)
    with engine.backend(backend):
        got = TRANSFORMS[transform](z, m)
    expected = paper(z, m, transform == "lstm_standard")
    weights = [torch.randn_like(m) for _ in range(2)]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    grads = [torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, out, strict=True)),
                                 (z, m)) for out in (got, expected)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@cell("grid_lstm_no_squash", state=("h", "m"))
def grid_lstm_no_squash(x, state, p):
    """A variant for the test: the paper's transform without the output tanh, h' = g_o ⊙ m'."""
    h, m = state
    u = sigmoid(p.W_u @ x + p.R_u @ h + p.b_u)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.b_f)
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.b_o)
    c = sigmoid(p.W_c @ x + p.R_c @ h + p.b_c)
    m = f * m + u * c
    h = o * m
    return h, (h, m)


def test_a_registered_variant_is_a_block_transform(monkeypatch):
    """The block computes whatever the zoo cell says: no LSTM equations of the grid's own."""
    monkeypatch.setitem(rnnlab.cells.REGISTRY, "grid_lstm_no_squash", grid_lstm_no_squash)
    torch.manual_seed(2)
    d = 4
    block = GridBlock(2, d, LSTM("grid_lstm_no_squash")).double()
    h, m = (torch.randn(5, 2, d, dtype=torch.float64) for _ in range(2))
    out = block(BlockState(h, m))
    for k in range(2):
        W, b = block.dimension_parameters(k)
        u, f, o, c = torch.sigmoid(h.flatten(-2) @ W.T + b).split(d, dim=-1)
        m_k = f * m[:, k] + u * c
        torch.testing.assert_close(out.m[:, k], m_k, rtol=0, atol=1e-12)
        torch.testing.assert_close(out.h[:, k], o * m_k, rtol=0, atol=1e-12)
    assert b[d:2 * d].eq(1).all()  # the forget gate's bias starts at +1


@pytest.mark.parametrize("name, gates, message", [
    ("gru", ("r", "z", "h"), "reads 'h' other than through its gates' maps"),
    ("rnn", ("h",), "carries nothing else"),
    ("peephole", ("i", "f", "z", "o"), "does not compute its gates"),
    ("grid_lstm", ("f", "u", "o", "c"), "does not compute its gates"),
])
def test_cells_that_are_not_gates_then_elementwise_are_refused(name, gates, message):
    with pytest.raises(ValueError, match=message):
        gates_program(name, 4, gates)
