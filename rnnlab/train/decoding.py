"""Decoding trained models: translations and transcriptions, scored with sacrebleu and jiwer.

* :func:`translate`: a model of a translation task (``numbers``, ``parallel``; any body) reads
  ``source =`` and writes the target token by token until ``⏎`` — greedily (batched) or with a
  beam. Every step re-reads the whole prefix, so it works for every body, stateful or not.
* :func:`translation_scores`: exact match and corpus BLEU (``sacrebleu``) of free-running
  translations of a split — unlike the teacher-forced training metric, a wrong token here is
  fed back, as in use.
* :func:`transcribe`: a CTC model of ``digits_ctc`` hears a waveform and writes its digits.
"""

from __future__ import annotations

import torch

from rnnlab.tasks.ctc import beam_decode, greedy_decode
from rnnlab.tasks.translation import END, SEP


def _check_translation_task(task) -> None:
    vocab = getattr(task, "vocab", None) or []
    if SEP not in vocab or END not in vocab:
        raise ValueError(
            f"task {task.name!r} is not a translation task ('source=target' sequences); "
            "translate needs a model trained on numbers or parallel"
        )


def _encode_source(task, source: str) -> list[int]:
    unknown = sorted({c for c in source if c not in task.vocabulary.index})
    if unknown:
        raise ValueError(f"the source uses characters the model never saw: {unknown!r}")
    return task.encode(source + SEP).tolist()


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
    model, task, sources: list[str], *, beam: int = 1, max_length: int = 200,
    batch_size: int = 64,
) -> list[str]:
    """Translations of ``sources`` (greedy when ``beam == 1``, else beam search per source)."""
    _check_translation_task(task)
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    model.eval()
    end, pad = task.vocabulary.index[END], task.vocabulary.index.get(".", 0)
    if beam > 1:
        return [_beam_one(model, task, s, beam, max_length, end, pad) for s in sources]
    out = []
    for first in range(0, len(sources), batch_size):
        chunk = [_encode_source(task, s) for s in sources[first : first + batch_size]]
        starts = [len(s) for s in chunk]
        active = list(range(len(chunk)))
        for _ in range(max_length):
            if not active:
                break
            tokens = _next_logits(model, [chunk[i] for i in active], pad).argmax(-1).tolist()
            still = []
            for i, token in zip(active, tokens):
                chunk[i].append(token)
                if token != end:
                    still.append(i)
            active = still
        out.extend(task.decode(s[start:]).split(END)[0] for s, start in zip(chunk, starts))
    return out


def _beam_one(model, task, source, beam, max_length, end, pad) -> str:
    start = _encode_source(task, source)
    hypotheses = [(0.0, start)]  # (log-probability, ids)
    finished = []
    for _ in range(max_length):
        scores = _next_logits(model, [ids for _, ids in hypotheses], pad)  # (k, V)
        candidates = []
        for (score, ids), row in zip(hypotheses, scores):
            top = row.topk(min(beam, row.numel()))
            candidates += [(score + float(v), ids + [int(i)]) for v, i in zip(*top)]
        candidates.sort(key=lambda c: c[0], reverse=True)
        hypotheses = []
        for score, ids in candidates[:beam]:
            (finished if ids[-1] == end else hypotheses).append((score, ids))
        if not hypotheses or (finished and max(finished)[0] >= hypotheses[0][0]):
            break
    best = max(finished or hypotheses, key=lambda c: c[0])[1]
    return task.decode(best[len(start):]).split(END)[0]


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
