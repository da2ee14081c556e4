"""Cells of the zoo (rnnlab.cells) as the transform of a Grid LSTM dimension."""

import pytest
import torch

import rnnlab.cells
from rnnlab.grid import BlockState, CellTransform, GridBlock, GridLSTM, GridScan, State

D = 3
NOT_ALLOWED = {"fgr"}  # carries the previous gates as state, beyond one hidden + one memory
NEEDS_SQUARE_INPUT = {"mut1", "mut2"}  # add the raw x to a hidden-size vector


def random_state(n_dims, *lead):
    shape = (*lead, 4, n_dims, D)
    return BlockState(
        torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    )


@pytest.mark.parametrize("name", [n for n in rnnlab.cells.names() if n not in NOT_ALLOWED])
def test_zoo_cell_dimension_is_one_step_of_the_cell(name):
    """Dimension 1 of a 3-D block = the cell stepped on x = [h_0; h_2], state (h_1, m_1)."""
    torch.manual_seed(0)
    options = {"raw_input": "project"} if name in NEEDS_SQUARE_INPUT else {}
    transforms = ["lstm", CellTransform(name, **options), "tanh"]
    block = GridBlock(3, D, transforms, priority=(2,)).double()
    state = random_state(3)
    out = block(state)
    cell = block.cells["1"][0]
    fields = type(cell.initial_state(1))._fields
    carried = (state.h[:, 1], state.m[:, 1])[: len(fields)]
    x = torch.cat([state.h[:, 0], state.h[:, 2]], dim=-1)
    _, expected = cell(x, type(cell.initial_state(1))(*carried))
    torch.testing.assert_close(out.h[:, 1], expected.h)
    torch.testing.assert_close(out.m[:, 1], expected[1] if len(fields) == 2 else state.m[:, 1])
    # The priority dimension 2 reads dimension 1's new hidden vector.
    W, b = block.dimension_parameters(2)
    H = torch.cat([out.h[:, 0], out.h[:, 1], state.h[:, 2]], dim=-1)
    torch.testing.assert_close(out.h[:, 2], torch.tanh(H @ W.T + b))


def test_zoo_lstm_equals_the_standard_lstm_transform():
    """W x + R h_k with x = the other hidden vectors is the grid's W_k H: same function."""
    torch.manual_seed(1)
    zoo = GridBlock(3, D, ["lstm_standard", "cell:lstm", "lstm_standard"]).double()
    fused = GridBlock(3, D, "lstm_standard").double()
    cell = zoo.cells["1"][0]
    with torch.no_grad():
        for k in (0, 2):
            for mine, theirs in zip(
                fused.dimension_parameters(k), zoo.dimension_parameters(k), strict=True
            ):
                mine.copy_(theirs)
        W, b = fused.dimension_parameters(1)
        for gate, rows in zip("ifoz", W.split(D), strict=True):  # ours: u, f, o, c
            W_x, R = getattr(cell, f"W_{gate}"), getattr(cell, f"R_{gate}")
            rows.copy_(torch.cat([W_x[:, :D], R, W_x[:, D:]], dim=1))  # H = [h_0; h_1; h_2]
        for gate, part in zip("ifoz", b.split(D), strict=True):
            part.copy_(getattr(cell, f"b_{gate}"))
    state = random_state(3)
    torch.testing.assert_close(zoo(state).h, fused(state).h)
    torch.testing.assert_close(zoo(state).m, fused(state).m)


def test_cells_that_do_not_fit_are_refused():
    with pytest.raises(
        ValueError, match=r"zoo cell 'fgr' carries state \('h', 'c', 'i', 'f', 'o'\)"
    ):
        GridBlock(2, D, ["lstm", "cell:fgr"])
    with pytest.raises(ValueError, match="needs a block of at least 2 dimensions"):
        GridBlock(1, D, "cell:gru")
    with pytest.raises(ValueError, match="mut1 adds the raw input x"):
        GridBlock(3, D, ["lstm", "lstm", "cell:mut1"])
    with pytest.raises(ValueError, match="dimension 1 is a zoo cell"):
        GridBlock(2, D, ["lstm", "cell:gru"]).dimension_parameters(1)


def test_copies_have_their_own_cells():
    block = GridBlock(2, D, ["lstm", "cell:gru"], copies=3)
    assert len(block.cells["1"]) == 3
    params = {p.data_ptr() for cell in block.cells["1"] for p in cell.parameters()}
    assert len(params) == 3 * len(list(block.cells["1"][0].parameters()))
    state = random_state(2, 3)
    block = block.double()
    full = block(state, slice(0, 3))
    for copy in range(3):
        single = block(BlockState(state.h[copy], state.m[copy]), copy)
        torch.testing.assert_close(full.h[copy], single.h)


@pytest.mark.parametrize("tied", [False, True])
def test_wavefront_equals_naive_with_zoo_cells(tied):
    torch.manual_seed(2)
    scan = GridScan(2, D, 3, 2, tied, ["cell:cifg", "lstm", "cell:gru"], priority=(1,)).double()
    x = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    results = []
    for schedule in ("wavefront", "naive"):
        scan.schedule = schedule
        output, _ = scan(x)
        results.append(
            (output, *torch.autograd.grad(output.square().sum(), [x, *scan.parameters()]))
        )
    for fast, slow in zip(*results, strict=True):
        torch.testing.assert_close(fast, slow)


def test_grid_lstm_with_a_gru_along_depth_gradcheck():
    torch.manual_seed(3)
    grid = GridLSTM(2, 2, 2, depth_transform=CellTransform("gru")).double()
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 2, 2, dtype=torch.float64, requires_grad=True)
    m = torch.randn(2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h, m: grid(x, State(h, m))[0], (x, h, m))


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_a_wide_zoo_cell_step_runs_fused_and_a_small_one_with_torch(name, monkeypatch):
    """A zoo-cell dimension steps its cell on the fused engine when the step is wide enough to
    pay for the engine's fixed cost (``route.small_step``), else with its plan's torch ops; the
    two agree with the reference loop in values and gradients."""
    from rnnlab import engine
    from rnnlab.engine import fused, route

    calls = []
    real = fused.prepare_call
    monkeypatch.setattr(fused, "prepare_call", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(0)
    block = GridBlock(2, 16, ["lstm", CellTransform(name)])
    for rows, fused_expected in ((4, False), (route.SMALL_TRAINING_STEP_VALUES // 16 + 1, True)):
        h = torch.randn(rows, 2, 16, requires_grad=True)
        m = torch.randn(rows, 2, 16)
        results = {}
        for backend in ("auto", "reference"):
            calls.clear()
            with engine.backend(backend):
                out = block(BlockState(h, m))
            (grad,) = torch.autograd.grad((out.h * out.m).sum(), h)
            results[backend] = (out.h, out.m, grad)
            if backend == "auto":
                assert bool(calls) == fused_expected, (rows, calls)
        for a, b in zip(results["auto"], results["reference"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
