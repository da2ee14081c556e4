"""Decoding trained models: translations and transcriptions, scored with sacrebleu and jiwer.

* :func:`translate`: a model of a translation task (``numbers``, ``parallel``; any body) reads
  ``source =`` and writes the target token by token until ``⏎`` — greedily or with a beam, in
  both cases many sources at once (a beam's hypotheses are rows of the batch beside those of the
  other sources). Every step re-reads the whole prefix, so it works for every body, stateful or
  not. :func:`normalise_source` says which sources a model can read at all.
* :func:`translation_scores`: exact match and corpus BLEU (``sacrebleu``) of free-running
  translations of a split — unlike the teacher-forced training metric, a wrong token here is
  fed back, as in use.
* :func:`transcribe`: a CTC model of ``digits_ctc`` hears a waveform and writes its digits.
"""

from __future__ import annotations

import torch

from rnnlab.tasks.ctc import beam_decode, greedy_decode
from rnnlab.tasks.synthetic import PAD
from rnnlab.tasks.translation import END, SEP

MAX_LENGTH = 200  # tokens a translation may have when its task does not bound them


def _check_translation_task(task) -> None:
    if not getattr(task, "pairs", False):
        raise ValueError(
            f"task {task.name!r} is not a translation task ('source=target' sequences); "
            "translate needs a model trained on numbers or parallel"
        )


def normalise_source(task, source: str) -> str:
    """``source`` as the model's training sources were written: without surrounding
    whitespace, and with a character the model never saw replaced by its lower case when it saw
    that one (``"Forty-Two"`` -> ``"forty-two"``). Raises ValueError, naming the source, when it
    is empty or still holds a character the model never saw or one the layout reserves."""
    index = task.vocabulary.index
    text = "".join(c if c in index or c.lower() not in index else c.lower()
                   for c in source.strip())
    if not text:
        raise ValueError(f"{source!r} is empty: there is nothing to translate")
    reserved = sorted({c for c in text if c in (PAD, SEP, END)})
    if reserved:
        raise ValueError(f"{source!r} uses {reserved!r}, which the model reads as padding, the "
                         "end of the source or the end of the target; remove it")
    unknown = sorted({c for c in text if c not in index})
    if unknown:
        raise ValueError(f"{source!r} uses characters the model never saw: {unknown!r}")
    return text


@torch.no_grad()
def _next_logits(model, sequences: list[list[int]], pad: int) -> torch.Tensor:
    """Log-probabilities of the next token after each sequence: (B, V)."""
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.full((int(lengths.max()), len(sequences)), pad, dtype=torch.int64)
    for b, s in enumerate(sequences):
        ids[: len(s), b] = torch.tensor(s)
    logits, _ = model(ids, None, lengths)
    last = logits[lengths - 1, torch.arange(len(sequences))]
    return last.log_softmax(-1)


@torch.no_grad()
def translate(
    model, task, sources: list[str], *, beam: int = 1, max_length: int | None = None,
    batch_size: int = 64,
) -> list[str]:
    """Translations of ``sources`` (greedy when ``beam == 1``, else beam search), decoded
    ``batch_size`` sources at a time; each source goes through :func:`normalise_source`.

    A translation ends at the end mark or after ``max_length`` tokens; None: one more than the
    task's longest target (``task.longest_target()``: nothing the model was trained on is
    longer), or :data:`MAX_LENGTH` for a task that cannot say.
    """
    _check_translation_task(task)
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    if max_length is None:
        longest = getattr(task, "longest_target", lambda: None)()
        max_length = MAX_LENGTH if longest is None else longest + 1
    model.eval()
    end, pad = task.vocabulary.index[END], task.vocabulary.index[PAD]
    starts = [task.encode(normalise_source(task, s) + SEP).tolist() for s in sources]
    out = []
    for first in range(0, len(starts), batch_size):
        chunk = starts[first : first + batch_size]
        if beam == 1:
            outputs = _greedy(model, chunk, max_length, end, pad)
        else:
            outputs = _beam_search(model, chunk, beam, max_length, end, pad)
        out.extend(task.decode(ids).split(END)[0] for ids in outputs)
    return out


def _greedy(model, starts: list[list[int]], max_length: int, end: int, pad: int):
    """The tokens written after each start, taking the most likely one until ``end``."""
    sequences = [list(s) for s in starts]
    active = list(range(len(sequences)))
    for _ in range(max_length):
        if not active:
            break
        tokens = _next_logits(model, [sequences[i] for i in active], pad).argmax(-1).tolist()
        still = []
        for i, token in zip(active, tokens):
            sequences[i].append(token)
            if token != end:
                still.append(i)
        active = still
    return [s[len(start):] for s, start in zip(sequences, starts)]


class Beam:
    """The beam search of one source: its live hypotheses, those that wrote the end mark, and
    whether the search is over (no live hypothesis, or none can beat the best finished one)."""

    def __init__(self, start: list[int], width: int, end: int):
        self.start, self.width, self.end = start, width, end
        self.hypotheses = [(0.0, start)]  # (log-probability, ids), best first
        self.finished: list[tuple[float, list[int]]] = []
        self.done = False

    def step(self, scores: torch.Tensor) -> None:
        """Extend each live hypothesis by the next-token log-probabilities ``scores`` (k, V)
        and keep the ``width`` best of all extensions."""
        candidates = []
        for (score, ids), row in zip(self.hypotheses, scores):
            top = row.topk(min(self.width, row.numel()))
            candidates += [(score + float(v), ids + [int(i)]) for v, i in zip(*top)]
        candidates.sort(key=lambda c: c[0], reverse=True)
        self.hypotheses = []
        for score, ids in candidates[: self.width]:
            (self.finished if ids[-1] == self.end else self.hypotheses).append((score, ids))
        self.done = not self.hypotheses or (
            bool(self.finished)
            and max(score for score, _ in self.finished) >= self.hypotheses[0][0]
        )

    def best(self) -> list[int]:
        """The tokens the most likely hypothesis wrote (finished ones first)."""
        return max(self.finished or self.hypotheses, key=lambda c: c[0])[1][len(self.start):]


def _beam_search(model, starts: list[list[int]], width: int, max_length: int, end: int,
                 pad: int) -> list[list[int]]:
    """Beam search for every start at once: each step runs the model once over the live
    hypotheses of all unfinished sources, one row each, and each source keeps its own beam;
    the result is exactly that of searching one source at a time."""
    beams = [Beam(start, width, end) for start in starts]
    for _ in range(max_length):
        live = [b for b in beams if not b.done]
        if not live:
            break
        scores = _next_logits(model, [ids for b in live for _, ids in b.hypotheses], pad)
        first = 0
        for b in live:
            k = len(b.hypotheses)
            b.step(scores[first : first + k])
            first += k
    return [b.best() for b in beams]


def translation_scores(model, task, split: str = "test", *, beam: int = 1,
                       limit: int | None = None) -> dict[str, float]:
    """``exact_match`` and corpus ``bleu`` (sacrebleu, 0–100) of free-running translations."""
    import sacrebleu

    examples = task.examples(split)[:limit]
    sources, references = [], []
    for text, _ in examples:
        source, target = text.split(SEP, 1)
        sources.append(source)
        references.append(target.split(END)[0])
    hypotheses = translate(model, task, sources, beam=beam)
    exact = sum(h == r for h, r in zip(hypotheses, references)) / max(len(references), 1)
    bleu = sacrebleu.corpus_bleu(hypotheses, [references]).score
    return {"exact_match": exact, "bleu": bleu, "examples": len(references)}


@torch.no_grad()
def transcribe(model, task, signal: torch.Tensor, *, beam: int = 1) -> str:
    """The digits a CTC model of ``digits_ctc`` hears in an 8-kHz waveform, space-separated."""
    if not hasattr(task, "transcribe_signal"):
        raise ValueError(
            f"task {task.name!r} is not a speech task; transcribe needs a model trained on "
            "digits_ctc"
        )
    model.eval()
    x = task.transcribe_signal(signal)  # (T, 1, 40)
    lengths = torch.tensor([x.shape[0]])
    logits, _ = model(x, None, lengths)
    labels = greedy_decode(logits, lengths) if beam == 1 else beam_decode(logits, lengths, beam)
    return " ".join(task.vocab[i] for i in labels[0])
