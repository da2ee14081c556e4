"""One step of a whole rnnlab.RNN stack in one engine call (``rnnlab.engine.stack``): the
layers composed into one cell (``plans.stacked_graph``), equal to the layer-by-layer loop."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import rnnlab
from rnnlab import cells, engine
from rnnlab.engine import stack
from rnnlab.engine.plans import stacked_graph


def _reference(net, xs, state=None):
    with engine.backend("reference"):
        return net(xs, state)


def _close(a, b):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b)
    else:
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y)


@pytest.mark.parametrize("name", cells.names())
@pytest.mark.parametrize("layers", [2, 3])
def test_every_zoo_cell_stacked_equals_the_layer_by_layer_loop(name, layers, counted,
                                                                one_step_at_a_time):
    torch.manual_seed(0)
    net = rnnlab.RNN(name, 8, 8, num_layers=layers)
    xs = torch.randn(4, 3, 8)
    calls = counted(stack, "run")
    with torch.no_grad():
        out, state = one_step_at_a_time(net, xs)
        ref, ref_state = _reference(net, xs)
    assert len(calls) == 4  # one engine call per step for all layers
    torch.testing.assert_close(out, ref)
    _close(state, ref_state)


def test_the_stacked_cell_names_each_layers_state_and_parameters():
    graph = stacked_graph(cells.graph("lstm", 5, 8), 2)
    assert graph.states == ("h@0", "c@0", "h@1", "c@1")
    assert graph.params["W_i@0"] == (8, 5) and graph.params["W_i@1"] == (8, 8)
    assert "W_i@1 h'@0" in str(graph)  # layer 1 reads layer 0's output
    assert graph.output == "h'@1"
    regularised = cells.make("lstm", 5, 8, recurrent_dropout=0.3).graph
    with pytest.raises(ValueError, match="random masks"):
        stacked_graph(regularised, 2)


def test_first_layer_of_another_input_size_batch_first_packed_and_float64():
    torch.manual_seed(0)
    net = rnnlab.RNN("gru", 5, 8, num_layers=3, batch_first=True).double()
    xs = torch.randn(2, 4, 5, dtype=torch.float64)  # (B, T, I)
    with torch.no_grad():
        outs, state = [], None
        for t in range(4):
            out, state = net(xs[:, t:t + 1], state)
            outs.append(out)
        ref, ref_state = _reference(net, xs)
        torch.testing.assert_close(torch.cat(outs, 1), ref)
        torch.testing.assert_close(state, ref_state)
        packed = pack_sequence([torch.randn(1, 5, dtype=torch.float64) for _ in range(3)])
        out, state = net(packed)
        ref, ref_state = _reference(net, packed)
        torch.testing.assert_close(out.data, ref.data)
        torch.testing.assert_close(state, ref_state)


@pytest.mark.parametrize("make", [lambda: rnnlab.RNN("lstm", 8, 8, num_layers=2),
                                  lambda: rnnlab.GridLSTM(8, 8, 2)], ids=["rnn", "grid"])
def test_weights_changed_in_place_are_followed(make, one_step_at_a_time):
    """The stacked plans' prepared weights (the RNN's and the grid's, rnnlab.grid.stack_step)
    follow an in-place update of the parameters."""
    torch.manual_seed(0)
    net = make()
    xs = torch.randn(3, 2, 8)
    with torch.no_grad():
        one_step_at_a_time(net, xs)
        for p in net.parameters():
            p.mul_(0.5)
        out, _ = one_step_at_a_time(net, xs)
        torch.testing.assert_close(out, _reference(net, xs)[0])


@pytest.mark.parametrize("options", [
    {"bidirectional": True}, {"skip": True}, {"dilations": (1, 2)}, {"num_layers": 1},
    {"recurrent_dropout": 0.3}, {"zoneout": 0.2}, {"layer_norm": True},
], ids=["bidirectional", "skip", "dilations", "one_layer", "dropout", "zoneout", "layer_norm"])
def test_where_it_does_not_apply_or_does_the_results_are_the_same(options, counted):
    torch.manual_seed(0)
    settings = {"num_layers": 2, **options}
    net = rnnlab.RNN("lstm", 8, 8, **settings).eval()
    xs = torch.randn(3, 2, 8)
    used = counted(stack, "step")
    state = ref_state = None
    with torch.no_grad():
        for t in range(3):  # each step against the reference's same step (the same for a
            out, state = net(xs[t:t + 1], state)  # bidirectional net, whose step is not the
            ref, ref_state = _reference(net, xs[t:t + 1], ref_state)  # sequence's)
            torch.testing.assert_close(out, ref)
            _close(state, ref_state)
    # layer norm has no random masks: it stacks; the others do not
    assert bool(used) == ("layer_norm" in options)


def test_with_gradients_or_parameters_made_under_inference_mode_it_does_not_apply():
    torch.manual_seed(0)
    net = rnnlab.RNN("lstm", 8, 8, num_layers=2)
    x = torch.randn(1, 2, 8)
    state = net.initial_state(2)
    assert not stack.applies(net, x, tuple(state))  # gradients wanted by the parameters
    with torch.no_grad():
        assert stack.applies(net, x, tuple(state))
        assert not stack.applies(net, torch.randn(2, 2, 8), tuple(state))  # T = 2
        with engine.backend("reference"):  # the reference steps each layer's own plan
            assert not stack.applies(net, x, tuple(state))
        dropped = rnnlab.RNN("lstm", 8, 8, num_layers=2, dropout=0.5)  # in training mode:
        assert not stack.applies(dropped, x, tuple(state))  # dropout between the layers
        assert stack.applies(dropped.eval(), x, tuple(state))
    out, _ = net(x)
    assert out.requires_grad
    with torch.inference_mode():
        made = rnnlab.RNN("lstm", 8, 8, num_layers=2)
        assert not stack.applies(made, x, tuple(made.initial_state(2)))
        torch.testing.assert_close(made(x)[0], _reference(made, x)[0])


def test_a_layer_replaced_in_the_network_is_followed(one_step_at_a_time):
    torch.manual_seed(0)
    net = rnnlab.RNN("gru", 8, 8, num_layers=2)
    xs = torch.randn(3, 2, 8)
    with torch.no_grad():
        one_step_at_a_time(net, xs)
        net.cells["layer1"] = cells.make("gru", 8, 8)
        out, _ = one_step_at_a_time(net, xs)
        torch.testing.assert_close(out, _reference(net, xs)[0])
