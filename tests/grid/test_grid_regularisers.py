"""Regularisers on the Grid LSTM (rnnlab.grid.regularise): each LSTM and zoo-cell dimension runs
its cell graph as rnnlab.lang.regularise transforms it, and the grid's input and output get
locked dropout.

The grid is checked against each dimension's regularised cell stepped by hand, block by block
(``rnnlab.cells.Cell`` of the dimension's graph, its weights copied out of the block), with the
masks the grid drew; the masks are checked to be one per sequence and layer, the same at every
step (a weight that only a dropped unit reads changes nothing, at any step); evaluation is
deterministic and, with the dropouts alone, the unregularised grid bit for bit; every call in
training draws new masks; 0 is the plain grid; tied weights still get a mask per layer.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import rnnlab
from rnnlab.cells import Cell
from rnnlab.grid import DeepGridLSTM, GridLSTM, GridScan, ImageGridLSTM, State
from rnnlab.grid.regularise import Masks
from rnnlab.grid.schedule import naive, wavefront

T, B, I, H = 5, 3, 3, 4
DROPOUTS = {"input_dropout": 0.3, "recurrent_dropout": 0.4, "output_dropout": 0.3,
            "weight_drop": 0.5}
EVERY = {**DROPOUTS, "zoneout": {"h": 0.3, "m": 0.5}, "layer_norm": True}
PRIORITIES = (None, "time", "depth")


def recording(block) -> list[Masks | None]:
    """Every ``Masks`` the block draws from now on, in order."""
    drawn = []
    draw = block.draw

    def recorded(*args):
        drawn.append(draw(*args))
        return drawn[-1]

    block.draw = recorded
    return drawn


def randomise_layer_norm(module) -> None:
    """Layer-norm gains and shifts away from their start (1 and 0), so that they count."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.split(".")[-1].startswith(("g_", "b_m", "b_c", "b_ln")):
                parameter.uniform_(0.5, 1.5)


def cell_of(block, k: int, copy_index: int) -> Cell:
    """Dimension k's regularised cell as a ``Cell`` in evaluation mode (no weight masks drawn),
    with copy ``copy_index``'s weights: the rows of W_k reading h_k are the R_g, the others
    (in dimension order) the W_g; a zoo-cell dimension is the block's own cell."""
    if str(k) in block.cells:
        return copy.deepcopy(block.cells[str(k)][copy_index]).eval()
    dimension = block.dimension_cells[str(k)][copy_index]
    cell = Cell(dimension.graph).to(torch.float64).eval()
    W, b = block.dimension_parameters(k, copy_index)  # (4d, N·d), (4d,)
    d = block.hidden_size
    columns = list(W.split(d, dim=1))
    own = columns.pop(k)
    with torch.no_grad():
        for i, gate in enumerate("ufoc"):
            rows = slice(i * d, (i + 1) * d)
            getattr(cell, f"R_{gate}").copy_(own[rows])
            getattr(cell, f"b_{gate}").copy_(b[rows])
            if columns:
                getattr(cell, f"W_{gate}").copy_(torch.cat(columns, dim=1)[rows])
        for name, parameter in dimension.named_parameters():  # layer norm's
            getattr(cell, name).copy_(parameter)
    return cell


def step(cell, x, h, m, masks, k, layer):
    """One step of dimension k's cell: the sequence masks of ``layer`` recorded from the grid
    (training), or the cell's own (evaluation: ones, zoneout's p)."""
    state = (h, m)[: len(cell.graph.carried)]
    if masks is not None:
        state += tuple(mask[layer] for mask in masks.dims[k].state)
    _, new = cell.step_with(x, state, cell.weights())
    return new[0], (new[1] if len(new) == 2 else m)


def grid_by_hand(grid: GridLSTM, x, masks):
    """The sequence grid block by block, every LSTM dimension its regularised cell stepped by
    hand; ``masks`` the grid's recorded masks, or None in evaluation."""
    block, L = grid.block, grid.num_layers
    cells = {(k, c): cell_of(block, k, c) for k in (0, 1) for c in range(block.copies)}
    zeros = x.new_zeros(x.shape[1], grid.hidden_size)
    first = [k for k in (0, 1) if k not in block.priority]
    stages = ([first] if first else []) + [[k] for k in block.priority]
    time = [(zeros, zeros)] * L
    outputs = []
    for t in range(x.shape[0]):
        h_depth, m_depth = x[t] @ grid.scan.projection.weight.T, zeros
        for l in range(L):
            hs, ms = [time[l][0], h_depth], [time[l][1], m_depth]
            for stage in stages:
                new = {k: step(cells[(k, 0 if grid.tied else l)], hs[1 - k], hs[k], ms[k], masks,
                               k, l) for k in stage}
                for k, (h, m) in new.items():
                    hs[k], ms[k] = h, m
            time[l] = hs[0], ms[0]
            h_depth, m_depth = hs[1], ms[1]
        outputs.append(h_depth)
    return torch.stack(outputs), State(*(torch.stack(v) for v in zip(*time, strict=True)))


def make(seed=0, **options):
    torch.manual_seed(seed)
    return GridLSTM(I, H, **options).double()


def inputs(seed=1, steps=T, batch=B):
    return torch.randn(steps, batch, I, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("schedule", ["layerwise", "wavefront", "naive"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("priority", PRIORITIES)
def test_training_is_each_dimension_s_cell_stepped_by_hand_with_the_drawn_masks(
        schedule, tied, priority):
    grid = make(num_layers=3, tied=tied, priority=priority, schedule=schedule,
                recurrent_dropout=0.5)
    drawn = recording(grid.block)
    x = inputs()
    output, state = grid(x)
    (masks,) = drawn
    for k in (0, 1):
        (mask,) = masks.dims[k].state
        assert mask.shape == (3, B, H)  # one per layer and sequence, tied or not
        assert set(mask.unique().tolist()) <= {0.0, 2.0} and (mask == 0).any()
    expected, final = grid_by_hand(grid, x, masks)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(state.h, final.h)
    torch.testing.assert_close(state.m, final.m)


@pytest.mark.parametrize("schedule", ["layerwise", "wavefront", "naive"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("priority", PRIORITIES)
def test_evaluation_is_each_dimension_s_cell_in_evaluation(schedule, tied, priority):
    """Zoneout's expectation p·s + (1 − p)·s_new and layer norm, as the cells compute them."""
    options = {k: v for k, v in EVERY.items() if k not in ("input_dropout", "output_dropout")}
    grid = make(num_layers=2, tied=tied, priority=priority, schedule=schedule, **options)
    randomise_layer_norm(grid)
    grid.eval()
    x = inputs()
    output, state = grid(x)
    expected, final = grid_by_hand(grid, x, None)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(state.m, final.m)


def test_a_zoo_cell_dimension_is_regularised_too():
    grid = make(num_layers=2, time_transform="cell:gru", depth_transform="lstm_standard",
                recurrent_dropout=0.5, layer_norm=True)
    assert "m_h: locked dropout of h" in str(grid.block.cells["0"][0])
    assert "g_m ⊙ norm" in str(grid.block.dimension_cells["1"])
    randomise_layer_norm(grid)
    drawn = recording(grid.block)
    x = inputs()
    output, _ = grid(x)
    expected, _ = grid_by_hand(grid, x, drawn[-1])
    torch.testing.assert_close(output, expected)


@pytest.mark.parametrize("schedule", ["layerwise", "wavefront"])
@pytest.mark.parametrize("k", [0, 1])
def test_a_sequence_mask_is_the_same_at_every_step(schedule, k):
    """If unit j of h_k is dropped for sequence b in layer l, the weights reading it in
    dimension k's own product change nothing for b, at any step: its mask never lets it in.
    Where it is kept, they change the output."""
    grid = make(num_layers=2, schedule=schedule, recurrent_dropout=0.5)
    drawn = recording(grid.block)
    x = inputs(batch=6)
    torch.manual_seed(7)
    before, _ = grid(x)
    mask = drawn[-1].dims[k].state[0]  # (L, B, d)
    l, j = 1, int((mask[1] == 0).any(0).nonzero()[0])
    dropped, kept = mask[l, :, j] == 0, mask[l, :, j] != 0
    assert dropped.any() and kept.any()
    _, columns = grid.block.columns(k)
    with torch.no_grad():  # rows of W_k reading unit j of h_k (dimension k's rows k·d …)
        grid.block.weights[0][l, k * H + j, columns] += 1.0
    torch.manual_seed(7)  # the same masks again
    after, _ = grid(x)
    assert torch.equal(drawn[-1].dims[k].state[0], mask)
    assert torch.equal(after[:, dropped], before[:, dropped])
    assert not torch.allclose(after[:, kept], before[:, kept])


def test_every_call_in_training_draws_new_masks_and_evaluation_none():
    grid = make(num_layers=2, tied=True, **EVERY)
    drawn = recording(grid.block)
    x = inputs()
    first, _ = grid(x)
    second, _ = grid(x)
    assert not torch.allclose(first, second)
    a, b = (masks.dims[0].state[0] for masks in drawn)
    assert not torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # tied weights, a mask per layer all the same
    assert len(drawn[0].dims[0].weights) == 1  # one weight copy: one weight-drop mask
    grid.eval()
    torch.manual_seed(1)
    one, _ = grid(x)
    torch.manual_seed(2)
    two, _ = grid(x)
    assert torch.equal(one, two)


@pytest.mark.parametrize("schedule", ["layerwise", "wavefront", "naive"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("priority", PRIORITIES)
def test_evaluation_with_the_dropouts_is_the_plain_grid_bit_for_bit(schedule, tied, priority):
    options = {"num_layers": 2, "tied": tied, "priority": priority, "schedule": schedule}
    grid = make(**options, **DROPOUTS)
    plain = make(**options)
    plain.load_state_dict(grid.state_dict())  # the masks are not parameters
    x = inputs()
    trained, _ = grid(x)
    assert not torch.allclose(trained, plain(x)[0])  # masks drawn in training
    grid.eval()
    plain.eval()
    output, state = grid(x)
    expected, final = plain(x)
    assert torch.equal(output, expected) and torch.equal(state.h, final.h)


@pytest.mark.parametrize("module", ["grid", "deep", "image"])
def test_every_regulariser_at_zero_is_the_plain_module(module):
    build = {"grid": lambda **o: GridLSTM(I, H, num_layers=2, **o),
             "deep": lambda **o: DeepGridLSTM(I, H, num_layers=2, **o),
             "image": lambda **o: ImageGridLSTM(I, H, num_layers=2, corners="all", **o)}[module]
    zero = {"input_dropout": 0.0, "recurrent_dropout": 0.0, "output_dropout": 0.0,
            "weight_drop": 0.0, "zoneout": 0.0, "layer_norm": False}
    torch.manual_seed(0)
    plain = build()
    torch.manual_seed(0)
    regularised = build(**zero)
    assert str(regularised) == str(plain)
    assert regularised.regularisers == {}
    for block in (m for m in regularised.modules() if hasattr(m, "dimension_cells")):
        assert block.dimension_cells == {} and block.regularised == ()
    plain_state = plain.state_dict()
    assert regularised.state_dict().keys() == plain_state.keys()
    assert all(torch.equal(t, plain_state[n]) for n, t in regularised.state_dict().items())
    x = torch.randn(2, 3, 4, I) if module == "image" else inputs().float()
    torch.manual_seed(5)
    a = regularised(x)
    torch.manual_seed(5)
    b = plain(x)
    assert torch.equal(a[0] if module == "grid" else a, b[0] if module == "grid" else b)


@pytest.mark.parametrize("tied", [False, True])
def test_the_wavefront_places_each_layer_s_masks_on_its_blocks_of_a_3d_grid(tied):
    """K = 2 input axes: the wavefront's blocks span layers and columns; with the same masks
    it computes what the naive order, one block (one layer) at a time, computes."""
    torch.manual_seed(0)
    scan = GridScan(I, H, num_layers=3, num_axes=2, tied=tied, recurrent_dropout=0.5,
                    layer_norm=True).double()
    randomise_layer_norm(scan)
    x = torch.randn(4, 3, B, I, dtype=torch.float64)
    state = scan.initial_state(x)
    projected = scan.projection(x)
    masks = scan.block.draw(B, 3, projected)
    fast, fast_state = wavefront(scan.block, projected, state, masks=masks)
    slow, slow_state = naive(scan.block, projected, state, masks=masks)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(fast_state.h, slow_state.h)


def test_layerwise_with_variable_lengths_is_the_wavefront_with_the_same_masks():
    from rnnlab.grid.layerwise import layerwise

    torch.manual_seed(0)
    scan = GridScan(I, H, num_layers=2, num_axes=1, recurrent_dropout=0.5).double()
    x = torch.randn(T, 4, I, dtype=torch.float64)
    state = State(*(torch.randn(2, 4, H, dtype=torch.float64) for _ in range(2)))
    lengths = torch.tensor([2, 5, 3, 1])
    projected = scan.projection(x)
    masks = scan.block.draw(4, 2, projected)
    fast, fast_state = layerwise(scan.block, projected, state, lengths, masks)
    slow, slow_state = wavefront(scan.block, projected, state, lengths, masks)
    valid = (torch.arange(T)[:, None] < lengths)[..., None]
    torch.testing.assert_close(fast * valid, slow * valid)
    torch.testing.assert_close(fast_state.h, slow_state.h)
    torch.testing.assert_close(fast_state.m, slow_state.m)


def deep_by_hand(net: DeepGridLSTM, x, masks):
    """The 1-D grid layer by layer, its LSTM transform the regularised cell without x."""
    block = net.block
    h, m = x @ net.projection.weight.T, x.new_zeros(x.shape[0], net.hidden_size)
    placeholder = x.new_zeros(x.shape[0], 1)  # the 1-D cell reads no x
    for l in range(net.num_layers):
        cell = cell_of(block, 0, 0 if net.tied else l)
        h, m = step(cell, placeholder, h, m, masks, 0, l)
    return h


@pytest.mark.parametrize("tied", [False, True])
def test_the_1d_grid_is_its_cell_without_x_along_depth(tied):
    torch.manual_seed(0)
    net = DeepGridLSTM(I, H, num_layers=3, tied=tied, recurrent_dropout=0.5,
                       layer_norm=True).double()
    randomise_layer_norm(net)
    graph = str(net.block.dimension_cells["0"][0].graph)
    assert "u = σ(b_u + g_R_u ⊙ norm(R_u h~))" in graph and "W_u" not in graph
    drawn = recording(net.block)
    x = torch.randn(B, I, dtype=torch.float64)
    torch.testing.assert_close(net(x), deep_by_hand(net, x, drawn[-1]))
    net.eval()
    torch.testing.assert_close(net(x), deep_by_hand(net, x, None))


def test_the_1d_grid_s_masks_are_one_per_sequence_at_every_step():
    """DeepGridBody runs the 1-D grid on (T, B, E): sequence b's masks at every step t."""
    torch.manual_seed(0)
    net = DeepGridLSTM(I, H, num_layers=2, input_dropout=0.5, recurrent_dropout=0.5,
                       output_dropout=0.5)
    drawn = recording(net.block)
    x = torch.randn(1, B, I).expand(T, B, I)  # the same input at every step
    y = net(x)
    assert drawn[-1].dims[0].state[0].shape == (2, B, H)
    torch.testing.assert_close(y, y[:1].expand_as(y))  # same input, same masks: same output
    assert net(x[0]).shape == (B, H) and net(x[0, 0]).shape == (H,)


def test_input_and_output_dropout_are_locked_over_the_sequence():
    grid = make(input_dropout=0.5, output_dropout=0.5)
    x = torch.ones(T, B, I, dtype=torch.float64)
    torch.manual_seed(3)
    output, _ = grid(x)
    dropped = output == 0
    assert dropped.any() and torch.equal(dropped, dropped[:1].expand_as(dropped))
    seen = []
    grid.scan.projection.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    grid(x)
    zero = seen[-1] == 0
    assert zero.any() and torch.equal(zero, zero[:1].expand_as(zero))


def test_packed_sequences_and_batch_first_take_the_regularisers():
    grid = make(num_layers=2, batch_first=True, **EVERY)
    randomise_layer_norm(grid)
    sequences = [torch.randn(n, I, dtype=torch.float64) for n in (4, 2, 3)]
    output, state = grid(pack_sequence(sequences, enforce_sorted=False))
    assert output.data.shape == (9, H) and state.h.shape == (2, 3, H)
    grid.eval()  # deterministic: a sequence computes the same packed with others or alone
    packed, _ = grid(pack_sequence(sequences, enforce_sorted=False))
    padded, _ = pad_packed_sequence(packed, batch_first=True)
    for n, sequence in enumerate(sequences):
        alone, _ = grid(sequence.unsqueeze(0))
        torch.testing.assert_close(padded[n, : len(sequence)], alone[0])


def test_a_regularised_grid_saves_and_loads_whole():
    grid = make(num_layers=2, **EVERY).eval()
    randomise_layer_norm(grid)
    buffer = io.BytesIO()
    torch.save(grid, buffer)
    buffer.seek(0)
    with torch.serialization.safe_globals(rnnlab.serialization.safe_globals()):
        again = torch.load(buffer)
    assert again.regularisers == grid.regularisers
    x = inputs()
    assert torch.equal(again(x)[0], grid(x)[0])


@pytest.mark.parametrize("options, says", [
    ({"recurrent_dropout": 1.0}, "recurrent_dropout must be a probability in [0, 1)"),
    ({"input_dropout": -0.1}, "input_dropout must be a probability in [0, 1), got -0.1"),
    ({"output_dropout": True}, "output_dropout must be a probability"),
    ({"zoneout": {"c": 0.1}}, "zoneout names ['c'], which are not state fields of grid_lstm"),
    ({"layer_norm": 1}, "layer_norm must be True, False, 'gate' or 'joint', got 1"),
    ({"recurrent_dropout": 0.1, "time_transform": "tanh", "depth_transform": "relu"},
     "act on the cell graphs of a block's LSTM and zoo-cell dimensions"),
])
def test_a_bad_regulariser_is_refused(options, says):
    with pytest.raises(ValueError) as error:
        GridLSTM(I, H, **options)
    assert says in str(error.value)


def test_the_options_are_those_of_rnnlab_lang_regularise():
    from rnnlab.grid.regularise import CELL_OPTIONS, GRID_OPTIONS
    from rnnlab.lang.regularise import OPTIONS

    assert sorted(CELL_OPTIONS + GRID_OPTIONS) == sorted(OPTIONS)
