"""A sequence classifier over a bidirectional body reads each direction where it has read the
whole sequence: the forward half at the sequence's last valid step, the backward half at step 0.

Read at the last step, the backward half would have seen one input; a padded batch and the
sequence alone would still agree (both read the same wrong step), so these tests check the
features against the two directions stepped by hand, and that the first input reaches the
logits through the backward half alone.
"""

from __future__ import annotations

import pytest
import torch

from rnnlab.tasks.base import Binary, Classes, Features
from rnnlab.train.config import ModelConfig
from rnnlab.train.model import SequenceModel

HIDDEN = 3
LENGTHS = torch.tensor([5, 2, 4])  # sequence 0 fills the batch; 1 and 2 are padded
STEPS = int(LENGTHS.max())


def classifier(**options) -> SequenceModel:
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=HIDDEN, **options)
    return SequenceModel(Features(2), Classes(4), config, causal=False).double().eval()


def padded_inputs() -> torch.Tensor:
    """(T, B, 2) float64 with loud padding (99) after each sequence's end."""
    x = torch.randn(STEPS, len(LENGTHS), 2, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    for b, n in enumerate(LENGTHS.tolist()):
        x[n:, b] = 99.0
    return x


def head_input(model: SequenceModel, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The (B, D) features the head is given."""
    seen = []
    handle = model.head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        model(x, lengths=lengths)
    finally:
        handle.remove()
    return seen[0]


def run_cell(cell, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Step ``cell`` over ``inputs`` (each (1, F)) from a zero state; its outputs in order."""
    state, outputs = None, []
    for x in inputs:
        h, state = cell(x, state)
        outputs.append(h)
    return outputs


def by_hand(model: SequenceModel, sequence: torch.Tensor, skip: bool) -> torch.Tensor:
    """(D,) features of one unpadded sequence (n, 2): every layer's two directions stepped by
    hand, each layer reading the one below (and the input, with skip); the forward half taken
    at step n - 1, the backward half at step 0, for the top layer or (skip) every layer."""
    rnn = model.body.rnn
    x = model.input(sequence)  # (n, E)
    below, features = x, []
    for layer in range(rnn.num_layers):
        inputs = below if layer == 0 or not skip else torch.cat([x, below], -1)
        steps = [inputs[t : t + 1] for t in range(len(inputs))]
        forward = run_cell(rnn.cells[f"layer{layer}"], steps)
        backward = run_cell(rnn.cells[f"layer{layer}_reverse"], steps[::-1])[::-1]
        below = torch.cat([torch.cat(forward), torch.cat(backward)], -1)  # (n, 2H)
        features.append(torch.cat([forward[-1][0], backward[0][0]]))
    return torch.cat(features) if skip else features[-1]


@pytest.mark.parametrize(
    "options",
    [{"num_layers": 1}, {"num_layers": 2}, {"num_layers": 2, "skip": True, "cell": "gru"}],
    ids=["one_layer", "two_layers", "two_layers_skip_gru"],
)
def test_classifier_features_are_the_two_directions_run_by_hand(options):
    model = classifier(bidirectional=True, **options)
    x = padded_inputs()
    features = head_input(model, x, LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        expected = by_hand(model, x[:n, b], options.get("skip", False))
        torch.testing.assert_close(features[b], expected)
    unpadded = head_input(model, x[:, :1], None)  # no lengths: every step valid
    torch.testing.assert_close(unpadded[0], by_hand(model, x[:, 0], options.get("skip", False)))


# Bodies that run a second direction backwards in time (model settings).
BIDIRECTIONAL = {
    "stack": {"bidirectional": True},
    "stack_skip": {"bidirectional": True, "num_layers": 2, "skip": True},
    "freq_time": {"body": "freq_time", "band_size": 1, "bidirectional": True},
}


@pytest.mark.parametrize("variant", ["stack", "freq_time"])
def test_the_first_input_reaches_the_classifier_through_the_backward_half(variant):
    """One layer, the head's forward-half weights zeroed: the logits read the input only
    through the backward half, and every valid step, the first included, must reach them; no
    padding may. (With more layers the upper backward direction also reads the lower forward
    one, so only the one-layer model isolates the backward half.)"""
    model = classifier(**BIDIRECTIONAL[variant])
    with torch.no_grad():
        model.head.weight[:, :HIDDEN] = 0.0  # features: [forward H; backward H]
    x = padded_inputs().requires_grad_()
    logits, _ = model(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        (grad,) = torch.autograd.grad(logits[b].sum(), x, retain_graph=True)
        reach = grad[:, b].abs().sum(-1)  # (T,)
        assert torch.all(reach[:n] > 0), f"sequence {b}: inputs the backward half never read"
        assert torch.all(reach[n:] == 0), f"sequence {b}: padding reached the classifier"
        assert torch.all(grad[:, [c for c in range(len(LENGTHS)) if c != b]] == 0)


@pytest.mark.parametrize("variant", BIDIRECTIONAL)
def test_a_padded_sequence_is_classified_as_it_is_alone(variant):
    model = classifier(**BIDIRECTIONAL[variant])
    x = padded_inputs()
    logits, _ = model(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        alone, _ = model(x[:n, b : b + 1])
        torch.testing.assert_close(logits[b], alone[0])


@pytest.mark.parametrize("corners", ["bottom_left", "all"])
def test_a_spectrogram_grid_scanned_backwards_is_refused_where_it_would_read_wrong(corners):
    # A scan from a bottom corner runs backwards in time: a classifier would read it at the
    # last frame (where it has seen one frame), and on a padded batch it would start in the
    # padding. Both are refused in one line instead of computed wrong.
    from rnnlab.train.bodies import BodyError

    with pytest.raises(BodyError, match="top_left or top_right"):
        classifier(body="grid_spectrogram", band_size=1, corners=corners)
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=HIDDEN, body="grid_spectrogram", band_size=1,
                         corners=corners)
    tagger = SequenceModel(Features(2), Binary(4), config, causal=False)
    x = padded_inputs().float()
    tagger(x[:, :1], lengths=LENGTHS[:1])  # equal lengths: computed
    with pytest.raises(ValueError, match="padding of the shorter sequences"):
        tagger(x, lengths=LENGTHS)


def test_a_spectrogram_grid_from_the_top_classifies_from_every_frame_and_no_padding():
    model = classifier(body="grid_spectrogram", band_size=1, corners="top_left,top_right")
    x = padded_inputs().requires_grad_()
    logits, _ = model(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        (grad,) = torch.autograd.grad(logits[b].sum(), x, retain_graph=True)
        reach = grad[:, b].abs().sum(-1)
        assert torch.all(reach[:n] > 0) and torch.all(reach[n:] == 0)
        alone, _ = model(x[:n, b : b + 1].detach())
        torch.testing.assert_close(logits[b], alone[0])
