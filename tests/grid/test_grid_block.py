"""The N-D Grid LSTM block against its equations, and each of its options."""

import pytest
import torch
from grid_reference import block as reference_block

from rnnlab.grid import BlockState, GridBlock
from rnnlab.grid.transform import TRANSFORMS

B, D = 3, 4


def random_state(n_dims, *lead, dtype=torch.float64):
    shape = (*lead, B, n_dims, D)
    return BlockState(torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype))


def check_against_reference(block, names, state, copy=0):
    out = block(state, None if block.copies == 1 else copy)
    hs, ms = reference_block(block, names, state.h.unbind(-2), state.m.unbind(-2), copy)
    torch.testing.assert_close(out.h, torch.stack(hs, dim=-2))
    torch.testing.assert_close(out.m, torch.stack(ms, dim=-2))
    return out


@pytest.mark.parametrize("n_dims", [1, 2, 3])
@pytest.mark.parametrize("name", ["lstm", "lstm_standard", "tanh", "relu", "identity"])
def test_block_matches_equations(n_dims, name):
    torch.manual_seed(n_dims)
    block = GridBlock(n_dims, D, name).double()
    check_against_reference(block, [name] * n_dims, random_state(n_dims))


def test_output_forms_differ():
    """The paper's h' = tanh(o ⊙ m') and the usual o ⊙ tanh(m') are different functions."""
    torch.manual_seed(0)
    paper, usual = GridBlock(2, D, "lstm").double(), GridBlock(2, D, "lstm_standard").double()
    usual.load_state_dict(paper.state_dict())
    state = random_state(2)
    assert not torch.allclose(paper(state).h, usual(state).h)
    torch.testing.assert_close(paper(state).m, usual(state).m)


def test_mixed_transforms_match_equations():
    torch.manual_seed(1)
    names = ["lstm", "tanh", "lstm_standard", "relu", "lstm", "identity"]
    block = GridBlock(len(names), D, names).double()
    check_against_reference(block, names, random_state(len(names)))


@pytest.mark.parametrize("priority", [(1,), (0,), (2, 0), (0, 1, 2)])
def test_priority_dimensions_match_equations(priority):
    torch.manual_seed(2)
    names = ["lstm", "tanh", "lstm"]
    block = GridBlock(3, D, names, priority=priority).double()
    check_against_reference(block, names, random_state(3))


def test_priority_dimension_reads_the_new_hidden_vectors():
    """Same weights, with and without priority: only the priority dimension changes."""
    torch.manual_seed(3)
    plain = GridBlock(3, D).double()
    prioritised = GridBlock(3, D, priority=(2,)).double()
    for k in range(3):
        pairs = zip(prioritised.dimension_parameters(k), plain.dimension_parameters(k), strict=True)
        for mine, theirs in pairs:
            mine.data.copy_(theirs)
    state = random_state(3)
    a, b = plain(state), prioritised(state)
    torch.testing.assert_close(a.h[..., :2, :], b.h[..., :2, :])
    assert not torch.allclose(a.h[..., 2, :], b.h[..., 2, :])
    # The priority dimension equals a plain block fed the others' new hidden vectors.
    fed = BlockState(torch.cat([a.h[..., :2, :], state.h[..., 2:, :]], dim=-2), state.m)
    torch.testing.assert_close(b.h[..., 2, :], plain(fed).h[..., 2, :])


def test_non_lstm_dimension_passes_memory_through():
    torch.manual_seed(4)
    block = GridBlock(2, D, ["lstm", "relu"]).double()
    state = random_state(2)
    out = block(state)
    torch.testing.assert_close(out.m[..., 1, :], state.m[..., 1, :])
    assert (out.h[..., 1, :] >= 0).all()


def test_copies_run_with_their_own_weights():
    torch.manual_seed(5)
    names = ["lstm", "tanh"]
    block = GridBlock(2, D, names, priority=(0,), copies=3).double()
    state = random_state(2, 3)  # (3, B, N, d): row i uses copy i
    full = block(state, slice(0, 3))
    part = block(BlockState(state.h[1:], state.m[1:]), slice(1, 3))
    torch.testing.assert_close(part.h, full.h[1:])
    for copy in range(3):
        single = BlockState(state.h[copy], state.m[copy])
        out = check_against_reference(block, names, single, copy)
        torch.testing.assert_close(out.h, full.h[copy])
    assert not torch.allclose(full.h[0], block(BlockState(state.h[0], state.m[0]), 1).h)


def test_one_copy_shares_weights_over_any_leading_axes():
    torch.manual_seed(6)
    block = GridBlock(2, D).double()
    state = random_state(2, 5, 2)  # (5, 2, B, N, d)
    out = block(state)
    flat = block(BlockState(state.h.reshape(-1, 2, D), state.m.reshape(-1, 2, D)))
    torch.testing.assert_close(out.h.reshape(-1, 2, D), flat.h)


@pytest.mark.parametrize("copies", [1, 4])
def test_parameter_count(copies):
    names = ["lstm", "tanh", "lstm_standard"]
    block = GridBlock(3, D, names, priority=(1,), copies=copies)
    out = (4 + 1 + 4) * D  # pre-activations of all dimensions
    expected = copies * (3 * D * out + out)
    assert sum(p.numel() for p in block.parameters()) == expected


def test_initialisation():
    block = GridBlock(2, D, ["lstm", "tanh"], copies=2)
    W, b = block.dimension_parameters(0, copy=1)
    assert W.shape == (4 * D, 2 * D) and b.shape == (4 * D,)
    assert torch.equal(b, torch.cat([torch.zeros(D), torch.ones(D), torch.zeros(2 * D)]))
    assert W.abs().max() <= (2 * D) ** -0.5
    W, b = block.dimension_parameters(1)
    assert W.shape == (D, 2 * D) and torch.equal(b, torch.zeros(D))


def test_dimension_parameters_are_views_of_the_weights():
    block = GridBlock(2, D, copies=2)
    W, b = block.dimension_parameters(1, copy=1)
    with torch.no_grad():
        W.zero_()
        b.fill_(3.0)
    state = BlockState(torch.randn(B, 2, D), torch.zeros(B, 2, D))
    out = block(state, 1)
    expected = torch.tanh(torch.sigmoid(torch.tensor(3.0)) ** 2 * torch.tanh(torch.tensor(3.0)))
    torch.testing.assert_close(out.h[:, 1], expected.expand(B, D))


def test_registry_names():
    assert {"lstm", "lstm_standard", "tanh", "relu", "identity"} <= set(TRANSFORMS)


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="unknown Grid LSTM transform 'sigmoid'"):
        GridBlock(2, D, "sigmoid")
    with pytest.raises(ValueError, match="one transform per dimension: expected 3, got 2"):
        GridBlock(3, D, ["lstm", "tanh"])
    with pytest.raises(ValueError, match="priority must list distinct dimensions in 0..1"):
        GridBlock(2, D, priority=(2,))
    with pytest.raises(ValueError, match="hidden_size must be positive, got 0"):
        GridBlock(2, 0)
    with pytest.raises(ValueError, match="num_dims must be at least 1"):
        GridBlock(0, D)


def test_bad_state_errors():
    block = GridBlock(2, D, copies=2)
    with pytest.raises(ValueError, match=r"\(…, 2, 4\).*got h \(3, 3, 4\)"):
        block(BlockState(torch.zeros(B, 3, D), torch.zeros(B, 3, D)), 0)
    with pytest.raises(ValueError, match="holds 2 weight copies"):
        block(BlockState(torch.zeros(B, 2, D), torch.zeros(B, 2, D)))
    with pytest.raises(ValueError, match="2 weight copies selected but the state's leading axis"):
        block(BlockState(torch.zeros(3, B, 2, D), torch.zeros(3, B, 2, D)), slice(0, 2))
