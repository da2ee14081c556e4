"""Speech and translation bodies: layout, causality, padding, attention by hand."""

from __future__ import annotations

import pytest
import torch

from rnnlab.models import AttentionSeq2Seq, FreqTimeLSTM, Reencoder
from rnnlab.models.layout import split

SEP, PAD = 1, 0


def make(kind):
    torch.manual_seed(0)
    if kind == "attention":
        return AttentionSeq2Seq(12, 5, 6, 2, separator=SEP, pad=PAD).double()
    return Reencoder(12, 5, 6, 2, separator=SEP, pad=PAD).double()


def batch():
    """Two 'source=target' sequences of different lengths, padded with 0."""
    first = [4, 5, 6, SEP, 7, 8, 9, 2]
    second = [3, 4, SEP, 10, 2]
    ids = torch.zeros(len(first), 2, dtype=torch.int64)
    ids[: len(first), 0] = torch.tensor(first)
    ids[: len(second), 1] = torch.tensor(second)
    return ids, torch.tensor([len(first), len(second)])


def test_split_and_place_round_trip():
    ids, lengths = batch()
    parts = split(ids, SEP, lengths)
    assert parts.source.t().tolist() == [[4, 5, 6], [3, 4, 0]]
    assert parts.decoder.t().tolist() == [[SEP, 7, 8, 9, 2], [SEP, 10, 2, 0, 0]]
    placed = parts.place(parts.decoder[..., None].double())[..., 0].t()
    assert placed.tolist() == [[0, 0, 0, SEP, 7, 8, 9, 2], [0, 0, SEP, 10, 2, 0, 0, 0]]
    with pytest.raises(ValueError, match="sequence 1 of the batch has no separator"):
        split(torch.tensor([[4, 4], [SEP, 5]]), SEP)


@pytest.mark.parametrize("kind", ["attention", "reencoder"])
def test_outputs_never_read_ahead(kind):
    model = make(kind)
    ids, lengths = batch()
    base, _ = model(ids, None, lengths)
    for b in range(2):
        for q in range(int(lengths[b])):
            changed = ids.clone()
            changed[q, b] = 11 if ids[q, b] != 11 else 3
            if q == int((ids[:, b] == SEP).nonzero()[0]):
                continue  # the separator itself defines the layout
            out, _ = model(changed, None, lengths)
            # positions before q are untouched; the other sequence is untouched
            torch.testing.assert_close(out[:q, b], base[:q, b])
            torch.testing.assert_close(out[:, 1 - b], base[:, 1 - b])


@pytest.mark.parametrize("kind", ["attention", "reencoder"])
def test_every_target_step_reads_the_whole_source(kind):
    model = make(kind)
    ids, lengths = batch()
    base, _ = model(ids, None, lengths)
    changed = ids.clone()
    changed[2, 0] = 11  # the last source token of sequence 0
    out, _ = model(changed, None, lengths)
    assert (out[3:8, 0] - base[3:8, 0]).abs().amax(-1).min() > 0  # every decoder step moved
    assert torch.all(out[:3, 0] == 0)  # source positions carry no output


@pytest.mark.parametrize("kind", ["attention", "reencoder"])
def test_a_sequence_alone_equals_it_in_a_padded_batch(kind):
    model = make(kind)
    ids, lengths = batch()
    together, _ = model(ids, None, lengths)
    alone, _ = model(ids[:5, 1:], None, lengths[1:])
    torch.testing.assert_close(together[:5, 1], alone[:, 0])


def test_attention_step_written_out():
    model = make("attention")
    ids, lengths = batch()
    out, _ = model(ids[:, :1], None, lengths[:1])
    source = model.embedding(ids[:3, :1])
    memory, _ = model.encoder(source)  # (3, 1, 12)
    h = torch.tanh(model.start(memory.mean(0)))
    state = model.decoder.State(h, torch.zeros_like(h))
    for u, token in enumerate([SEP, 7, 8]):
        e = model.score(torch.tanh(model.attend_memory(memory) + model.attend_state(state[0])))
        alpha = e.squeeze(-1).softmax(0)
        context = (alpha[..., None] * memory).sum(0)
        x = torch.cat([model.embedding(torch.tensor([token])), context], -1)
        h, state = model.decoder(x, state)
        torch.testing.assert_close(out[3 + u, 0], torch.cat([h, context], -1)[0])


def test_freq_time_lstm_is_frequency_scan_then_time():
    torch.manual_seed(1)
    model = FreqTimeLSTM(12, 5, band_size=4, frequency_size=3).double()
    x = torch.randn(6, 2, 12, dtype=torch.float64)
    out, _ = model(x)
    bands = x.view(6, 2, 3, 4)
    f = [model.frequency(bands[t].transpose(0, 1))[0] for t in range(6)]  # (K, B, 3) each
    frames = torch.stack([fi.transpose(0, 1).reshape(2, -1) for fi in f])
    expected, _ = model.time(frames)
    torch.testing.assert_close(out, expected)
    assert model.output_size == 5
    # causal in time when unidirectional
    changed = x.clone()
    changed[4] += 1
    torch.testing.assert_close(model(changed)[0][:4], out[:4])
    with pytest.raises(ValueError, match="band_size must be in"):
        FreqTimeLSTM(4, 5, band_size=8)
