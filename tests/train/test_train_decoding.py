"""Free-running decoding: translations (greedy, beam, BLEU) and CTC transcription."""

from __future__ import annotations

import io
import re
import wave

import numpy as np
import pytest
import torch
from torch import nn

import rnnlab.tasks as tasks
from rnnlab.tasks.translation import END, END_ID, SEP, SEP_ID
from rnnlab.train.decoding import transcribe, translate, translation_scores


class CopyOracle(nn.Module):
    """Translates by copying: after the separator at position k, position k + u predicts
    source token u, then the end mark — the right answer on an identity corpus."""

    def __init__(self, vocab: int, wrong_after: int | None = None):
        super().__init__()
        self.vocab, self.wrong_after = vocab, wrong_after

    def forward(self, ids, state=None, lengths=None):
        T, B = ids.shape
        logits = torch.full((T, B, self.vocab), -10.0)
        for b in range(B):
            k = int((ids[:, b] == SEP_ID).nonzero()[0])
            for p in range(k, T):
                u = p - k
                token = int(ids[u, b]) if u < k else END_ID
                if self.wrong_after is not None and u == self.wrong_after:
                    token = (token + 1) % self.vocab or 3
                logits[p, b, token] = 10.0
        return logits, None


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identity")
    lines = [f"word {i} and {i * 7 % 13}" for i in range(120)]
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text("\n".join(lines), encoding="utf-8")
    return tasks.make("parallel", path=str(folder / "a.txt"), target_path=str(folder / "b.txt"))


def test_greedy_and_beam_decode_an_oracle_exactly(identity):
    model = CopyOracle(len(identity.vocab))
    sources = ["word 3 and 8", "word 10 and 5", "word 1 and 7"]
    assert translate(model, identity, sources, batch_size=2) == sources
    assert translate(model, identity, sources[:1], beam=3) == sources[:1]
    scores = translation_scores(model, identity, "test")
    assert scores["exact_match"] == 1.0 and scores["bleu"] == pytest.approx(100.0)


def test_a_wrong_token_is_fed_back_and_scored(identity):
    model = CopyOracle(len(identity.vocab), wrong_after=2)
    scores = translation_scores(model, identity, "valid")
    assert scores["exact_match"] == 0.0 and 0 < scores["bleu"] < 100


def test_unknown_characters_and_other_tasks_are_refused(identity):
    model = CopyOracle(len(identity.vocab))
    with pytest.raises(ValueError, match="characters the model never saw"):
        translate(model, identity, ["wörd"])
    with pytest.raises(ValueError, match="not a translation task"):
        translate(model, tasks.make("memorize"), ["abc"])


def wav_bytes(signal: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(signal, -1, 1) * 32767).astype(np.int16).tobytes())
    return buffer.getvalue()


def test_read_wav_resamples_to_8khz(tmp_path):
    from rnnlab.tasks.speech import read_wav

    t = np.arange(22050) / 22050
    path = tmp_path / "tone.wav"
    path.write_bytes(wav_bytes(0.5 * np.sin(2 * np.pi * 440 * t), 22050))
    signal = read_wav(path)
    assert signal.shape == (8000,)
    spectrum = torch.fft.rfft(signal).abs()
    assert int(spectrum.argmax()) == 440  # 1 Hz bins over one second
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(ValueError, match="not a readable PCM WAV file"):
        read_wav(tmp_path / "bad.wav")


class PathOracle(nn.Module):
    """Emits a fixed CTC path whatever it hears: blank, 4, 4, blank, 0+1, blank, 7+1."""

    def forward(self, x, state=None, lengths=None):
        path = [0, 5, 5, 0, 1, 0, 8] + [0] * (x.shape[0] - 7)
        logits = torch.full((x.shape[0], x.shape[1], 11), -10.0)
        logits[torch.arange(x.shape[0]), :, torch.tensor(path)] = 10.0
        return logits, None


def test_transcribe_decodes_the_ctc_path():
    class Task:
        name = "digits_ctc"
        vocab = ["_", *"0123456789"]

        @staticmethod
        def transcribe_signal(signal):
            return torch.zeros(20, 1, 40)

    assert transcribe(PathOracle(), Task(), torch.zeros(4000)) == "4 0 7"
    assert transcribe(PathOracle(), Task(), torch.zeros(4000), beam=4) == "4 0 7"
    with pytest.raises(ValueError, match="not a speech task"):
        transcribe(PathOracle(), tasks.make("memorize"), torch.zeros(4000))


# --- beam search over a batch of sources equals searching each source alone ---------------------
@torch.no_grad()
def beam_one(model, task, source, width, max_length):
    """The beam search of one source, written out independently: each step scores only this
    source's live hypotheses (one row each), keeps the ``width`` best extensions, sets aside
    those that wrote the end mark, and stops when no live one can beat the best finished."""
    end, pad = task.vocabulary.index[END], task.vocabulary.index["."]
    start = task.encode(source + SEP).tolist()
    hypotheses, finished = [(0.0, start)], []
    for _ in range(max_length):
        rows = [ids for _, ids in hypotheses]
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.full((int(lengths.max()), len(rows)), pad)
        for b, r in enumerate(rows):
            ids[: len(r), b] = torch.tensor(r)
        logits, _ = model(ids, None, lengths)
        scores = logits[lengths - 1, torch.arange(len(rows))].log_softmax(-1)
        candidates = []
        for (score, ids_), row in zip(hypotheses, scores):
            values, tokens = row.topk(width)
            candidates += [(score + float(v), ids_ + [int(t)]) for v, t in zip(values, tokens)]
        candidates.sort(key=lambda c: c[0], reverse=True)
        hypotheses = []
        for score, ids_ in candidates[:width]:
            (finished if ids_[-1] == end else hypotheses).append((score, ids_))
        if not hypotheses or (finished and max(finished)[0] >= hypotheses[0][0]):
            break
    best = max(finished or hypotheses, key=lambda c: c[0])[1]
    return task.decode(best[len(start):]).split(END)[0]


class EndSooner(nn.Module):
    """A model whose end mark gains ``rate`` nats per target step, from a step that depends on
    the source's length: its translations end after many different numbers of steps, so the
    beams of one batch stop at different steps."""

    def __init__(self, model, rate: float = 0.5):
        super().__init__()
        self.model, self.rate = model, rate
        self.calls = 0

    def forward(self, ids, state=None, lengths=None):
        self.calls += 1
        logits, state = self.model(ids, state, lengths)
        separator = (ids == SEP_ID).int().argmax(0)  # (B,): the source's length
        written = torch.arange(ids.shape[0])[:, None] - separator  # (T, B)
        logits = logits.clone()
        logits[..., END_ID] += self.rate * (written - separator % 7)
        return logits, state


@pytest.mark.parametrize("body", ["seq2seq", "stack"])
def test_batched_beam_search_equals_searching_each_source_alone(body):
    from rnnlab.train.config import ExperimentConfig
    from rnnlab.train.model import model_for

    task = tasks.make("numbers", valid_size=4, test_size=4)
    config = ExperimentConfig().model
    config.body, config.hidden_size = body, 8
    torch.manual_seed(0)
    model = EndSooner(model_for(task, config).eval())
    sources = ["seven", "forty-two", "three hundred and twelve", "one", "nine thousand and six",
               "eighty", "sixteen", "two hundred"]
    batched = translate(model, task, sources, beam=3, max_length=14)
    assert model.calls <= 14  # one call a step for all the sources
    assert batched == translate(model, task, sources, beam=3, max_length=14, batch_size=1)
    assert batched == translate(model, task, sources, beam=3, max_length=14, batch_size=3)
    assert batched == [beam_one(model, task, s, 3, 14) for s in sources]
    assert len({len(t) for t in batched}) > 4  # the beams ended at different steps


def test_sources_are_normalised_and_refused_one_by_one(identity):
    from rnnlab.train.decoding import normalise_source

    numbers = tasks.make("numbers", valid_size=4, test_size=4)
    assert normalise_source(numbers, "  Forty-Two ") == "forty-two"
    assert normalise_source(identity, "Word 3 and 8") == "word 3 and 8"  # no capital W seen
    for source, message in [("dreißig", "characters the model never saw: ['ß']"),
                            ("forty=two", "which the model reads as"), ("  ", "is empty")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            normalise_source(numbers, source)


def test_a_translation_stops_at_the_longest_target_the_task_has(identity):
    class NeverEnds(nn.Module):
        def forward(self, ids, state=None, lengths=None):
            logits = torch.full((*ids.shape, len(identity.vocab)), -10.0)
            logits[..., identity.vocabulary.index["w"]] = 10.0
            return logits, None

    longest = max(len(f"word {i} and {i * 7 % 13}") for i in range(120))
    assert identity.longest_target() == longest
    assert translate(NeverEnds(), identity, ["word 1 and 7"]) == ["w" * (longest + 1)]
    assert translate(NeverEnds(), identity, ["word 1 and 7"], beam=2, max_length=4) == ["wwww"]
