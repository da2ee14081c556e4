"""Sampling text from a character- or word-level language model.

The prime text is run through the model to set its state; then each next symbol is drawn from
``softmax(logits / temperature)`` and fed back in. ``temperature=0`` takes the most likely
symbol every time (greedy decoding); below 1 the samples are more conservative, above 1 more
varied.
"""

from __future__ import annotations

import torch

from rnnlab.tasks.base import Tokens


@torch.no_grad()
def sample(
    model,
    task,
    *,
    prime: str = "",
    length: int = 200,
    temperature: float = 1.0,
    seed: int | None = 0,
) -> str:
    """``prime`` followed by ``length`` generated symbols, decoded to text.

    Args:
        model: a trained :class:`~rnnlab.train.model.SequenceModel` of a Tokens -> Tokens task.
        task: the task the model was trained on (it has ``encode`` / ``decode``).
        prime: text to start from; empty: start from a newline (or the first symbol).
        length: number of symbols to generate (characters or words).
        temperature: >= 0; 0 is greedy decoding.
        seed: seed of the sampling generator (None: not seeded).
    """
    if not (isinstance(task.input, Tokens) and isinstance(task.output, Tokens)):
        raise ValueError(
            f"sampling needs a language model (Tokens in, Tokens out); task {task.name!r} maps "
            f"{task.input} to {task.output}"
        )
    if not hasattr(task, "encode") or not hasattr(task, "decode"):
        raise ValueError(f"task {task.name!r} has no vocabulary to encode and decode text")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    words = word_level(task)
    start = _start_ids(task, prime)
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()

    model.eval()
    logits, state = model(start.view(-1, 1))  # (T, 1, V)
    last = logits[-1, 0]  # (V,)
    generated = []
    for _ in range(length):
        if temperature == 0:
            token = int(last.argmax())
        else:
            probs = torch.softmax(last.double() / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
        generated.append(token)
        logits, state = model(torch.tensor([[token]]), state)
        last = logits[-1, 0]
    text = task.decode(generated)
    if not prime:
        return text
    return f"{prime} {text}" if words and text else prime + text


def word_level(task) -> bool:
    """True when the task's symbols are words (decoded text is joined by spaces)."""
    vocabulary = getattr(task, "vocabulary", None)
    if hasattr(vocabulary, "words"):
        return bool(vocabulary.words)
    return getattr(task, "unit", "char") == "word"


def _symbols(task) -> list[str]:
    vocab = getattr(task, "vocab", None)
    return list(getattr(vocab, "symbols", vocab) or [])


def _start_ids(task, prime: str) -> torch.Tensor:
    if prime:
        ids = task.encode(prime)
        if ids.numel() == 0:
            raise ValueError(f"prime {prime!r} encodes to no symbols; give some text")
        return ids.long()
    symbols = _symbols(task)
    for candidate in ("<eos>", "\n"):
        if candidate in symbols:
            return torch.tensor([symbols.index(candidate)])
    return torch.tensor([0])
