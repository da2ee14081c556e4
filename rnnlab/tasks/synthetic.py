"""Generated tasks: arithmetic, XML, memorisation, parity, addition, copy.

Every example is drawn from a numpy generator seeded by a fixed tuple, so data are
deterministic and need no files:

* train batch ``i`` with seed ``s``: ``default_rng([crc32(name), 0, s, i])``: unbounded, and a
  resumed run (``start=i``) makes exactly the batch it would have made, in O(1);
* valid / test: ``valid_size`` / ``test_size`` examples from ``default_rng([crc32(name), 1])``
  and ``[crc32(name), 2]``: fixed, identical on every call and for every batch size.
* train never contains a valid or test example: a drawn example equal to one of them is
  dropped and the same generator draws again until the batch is full (so batches are
  unchanged wherever the spaces do not collide). docs/tasks.md gives, per task, how much of the
  test set an unfiltered train stream would have contained (:func:`heldout_overlap`).

Token tasks use teacher forcing: the model reads the question, a separator and the answer
shifted by one, and predicts the next symbol at every step; ``Batch.mask`` marks the steps that
count (the answer characters). Symbol 0 is the padding symbol ``.``. For an example with
symbols ``q_1 … q_m = a_1 … a_k``::

    inputs   q_1 … q_m  =   a_1 … a_{k-1}
    targets  q_2 … =    a_1 a_2 … a_k          mask: true on the a_1 … a_k targets only

Citations: Jozefowicz, Zaremba & Sutskever (2015) "An Empirical Exploration of Recurrent Network
Architectures" (arithmetic, XML, memorisation); Kalchbrenner, Danihelka & Graves (2016) "Grid
Long Short-Term Memory" (parity, addition, memorisation/copy).
"""

from __future__ import annotations

import abc
import math
import string
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from rnnlab.tasks import register
from rnnlab.tasks.base import (
    Batch,
    Classes,
    ClassMetric,
    Features,
    Task,
    TokenMetric,
    Tokens,
    check_positive,
    check_split,
)
from rnnlab.tasks.vocab import Vocabulary

PAD = "."
LETTERS = string.ascii_lowercase

# Training defaults (Task.training_defaults), the recipes of rnnlab/reproduce/entries.py:
# Jozefowicz et al. 2015's arithmetic and XML runs (batch 32, Adam, clipping at 5 are the
# global defaults), and the Grid LSTM paper's synthetic tasks (Kalchbrenner et al. 2016).
JOZEFOWICZ_TRAINING = {"task.eval_batch_size": 500, "train.eval_every": 200}
GRID_TRAINING = {
    "task.batch_size": 64,
    "task.eval_batch_size": 500,
    "train.lr": 3e-3,
    "train.eval_every": 200,
}


class GeneratedTask(Task):
    """A task whose examples are generated from a seed (see the module docstring).

    Subclasses implement :meth:`generate` (``count`` examples from a generator) and
    :meth:`collate` (examples -> :class:`Batch`).
    """

    stateful = False
    summary = "A generated task."

    def __init__(self, valid_size: int = 1000, test_size: int = 1000):
        check_positive("valid_size", valid_size)
        check_positive("test_size", test_size)
        self.sizes = {"valid": valid_size, "test": test_size}
        self._fixed: dict[str, list] = {}
        self.info = {"generated": True, "valid_size": valid_size, "test_size": test_size}

    @property
    def tag(self) -> int:
        return zlib.crc32(self.name.encode())

    @abc.abstractmethod
    def generate(self, rng: np.random.Generator, count: int) -> list[Any]:
        """``count`` examples drawn from ``rng``."""

    @abc.abstractmethod
    def collate(self, examples: list[Any]) -> Batch:
        """Examples -> one time-major batch."""

    def examples(self, split: str) -> list[Any]:
        """The fixed examples of ``valid`` or ``test`` (generated once, then cached)."""
        check_split(split)
        if split == "train":
            raise ValueError("train is unbounded; draw it with batches('train', ...)")
        if split not in self._fixed:
            rng = np.random.default_rng([self.tag, 1 if split == "valid" else 2])
            self._fixed[split] = self.generate_split(rng, self.sizes[split], split)
        return self._fixed[split]

    def generate_split(self, rng: np.random.Generator, count: int, split: str) -> list[Any]:
        """``count`` examples of ``split`` (valid / test); the same distribution as train
        (:meth:`generate`) unless a task draws each split from its own pool."""
        return self.generate(rng, count)

    def batches_per_epoch(self, split, batch_size, *, seq_len=None) -> int | None:
        check_split(split)
        check_positive("batch_size", batch_size)
        return None if split == "train" else math.ceil(self.sizes[split] / batch_size)

    def batches(self, split, batch_size, *, seq_len=None, start=0, seed=0) -> Iterator[Batch]:
        """Train: batch ``i`` is generated from ``(seed, i)``, forever. Valid / test: the fixed
        examples in order, ``batch_size`` at a time (the last batch may be smaller)."""
        check_split(split)
        check_positive("batch_size", batch_size)
        if split == "train":
            if seed < 0 or start < 0:
                raise ValueError(f"seed and start must be >= 0, got seed={seed}, start={start}")
            index = start
            while True:
                rng = np.random.default_rng([self.tag, 0, seed, index])
                yield self.collate(self.draw_train(rng, batch_size))
                index += 1
        examples = self.examples(split)
        for first in range(start * batch_size, len(examples), batch_size):
            yield self.collate(examples[first : first + batch_size])

    def describe(self) -> str:
        return self.summary

    # --- valid / test kept out of train (by construction) ---------------------------------
    exclude_heldout = True  # False only to measure the overlap (heldout_overlap)
    MAX_REDRAWS = 1000  # rounds of redrawing before the space is declared used up

    def key(self, example: Any) -> Any:
        """A hashable identity of an example: its text, or the bytes of its array."""
        if isinstance(example, np.ndarray):
            return example.tobytes()
        if isinstance(example, tuple):
            return example[0]
        return example

    def heldout_keys(self) -> set:
        """The keys of every valid and test example (computed once)."""
        if getattr(self, "_heldout", None) is None:
            splits = ("valid", "test")
            self._heldout = {self.key(e) for split in splits for e in self.examples(split)}
        return self._heldout

    def draw_train(self, rng: np.random.Generator, count: int) -> list[Any]:
        """``count`` training examples from ``rng``, none equal to a valid or test example."""
        examples = self.generate(rng, count)
        if not self.exclude_heldout:
            return examples
        held = self.heldout_keys()
        kept = [e for e in examples if self.key(e) not in held]
        rounds = 0
        while len(kept) < count:
            rounds += 1
            if rounds > self.MAX_REDRAWS:
                raise ValueError(
                    f"task {self.name!r}: almost every example drawn is a valid/test example "
                    "(the space is too small for these valid_size/test_size); make the task "
                    "larger or valid_size/test_size smaller"
                )
            kept += [e for e in self.generate(rng, count - len(kept)) if self.key(e) not in held]
        return kept


def heldout_overlap(task: GeneratedTask, examples: int = 65536, seed: int = 0) -> float:
    """The fraction of distinct test examples that the first ``examples`` training examples
    would contain if train were *not* filtered (batches of 256 from ``seed``)."""
    test = {task.key(e) for e in task.examples("test")}
    seen: set = set()
    previous = task.exclude_heldout
    task.exclude_heldout = False
    try:
        for index in range(math.ceil(examples / 256)):
            rng = np.random.default_rng([task.tag, 0, seed, index])
            seen.update(task.key(e) for e in task.draw_train(rng, 256))
    finally:
        task.exclude_heldout = previous
    return len(test & seen) / len(test)


class TokenSequenceTask(GeneratedTask):
    """A generated task over symbols: examples are ``(text, answer_start)`` pairs.

    ``answer_start`` is the index in ``text`` of the first symbol whose prediction counts.
    """

    vocab: list[str]  # id -> symbol
    vocabulary: Vocabulary
    causal = True  # the target at t is the symbol after input t (the answer must be computed)

    def set_vocab(self, symbols: list[str]) -> None:
        self.vocabulary = Vocabulary(symbols)
        self.vocab = self.vocabulary.symbols
        self.input = Tokens(len(self.vocab))
        self.output = Tokens(len(self.vocab))
        self.info["vocab_size"] = len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        """Text -> ``(N,)`` int64 ids."""
        return self.vocabulary.encode(text)

    def decode(self, ids) -> str:
        """Ids -> text."""
        return self.vocabulary.decode(ids)

    def collate(self, examples: list[tuple[str, int]]) -> Batch:
        """Pad ``(text, answer_start)`` examples into a teacher-forced batch.

        inputs / targets ``(T, B)`` int64 with ``T = max(len(text)) - 1``; ``mask`` ``(T, B)``
        marks targets at text positions ``>= answer_start``; ``lengths`` ``(B,)`` when the
        examples differ in length.
        """
        ids = [self.vocabulary.encode(text) for text, _ in examples]
        lengths = torch.tensor([len(x) - 1 for x in ids], dtype=torch.int64)
        steps = int(lengths.max())
        pad = self.vocabulary.index.get(PAD, 0)
        padded = torch.full((steps + 1, len(ids)), pad, dtype=torch.int64)
        for b, x in enumerate(ids):
            padded[: len(x), b] = x
        starts = torch.tensor([start for _, start in examples], dtype=torch.int64)
        t = torch.arange(steps)[:, None]  # (T, 1); target t is text position t + 1
        counted = (t + 1 >= starts[None, :]) & (t < lengths[None, :])  # (T, B)
        same_length = bool((lengths == steps).all())
        return Batch(
            inputs=padded[:-1],
            targets=padded[1:],
            mask=None if bool(counted.all()) else counted,
            lengths=None if same_length else lengths,
        )


def _number(rng: np.random.Generator, max_digits: int) -> int:
    """A non-negative integer with a uniform number of digits in [1, max_digits], then uniform."""
    digits = int(rng.integers(1, max_digits + 1))
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return int(rng.integers(low, 10**digits))


@register("arithmetic")
class Arithmetic(TokenSequenceTask):
    """Sum or difference of two integers of up to ``digits`` digits, with distractor letters.

    ``3e36d9-h1h39f94eeh43keg3c=-13991064``: the question ``3369-13994433`` with random lowercase
    letters interleaved, ``=``, then the answer, predicted character by character.

    Args:
        digits: the most digits of each operand (the number of digits is uniform in
            ``[1, digits]``, then the value uniform). Default 8.
        distractors: after each question character, another random letter is inserted with this
            probability, repeatedly (a geometric number, mean ``p / (1 - p)``). Default 0.5.
        valid_size, test_size: fixed evaluation examples. Default 1000 each.
    Metric: ``accuracy`` over answer characters (primary) and ``sequence_accuracy`` (whole
    answers).
    """

    name = "arithmetic"
    training_defaults = JOZEFOWICZ_TRAINING
    summary = (
        "Jozefowicz et al. (2015) arithmetic: the sum or difference of two integers of up to 8 "
        "digits, written with random lowercase distractor letters interleaved, then '=', then "
        "the answer, which the model predicts character by character (teacher forced; only the "
        "answer characters count). Generated from a seed, unbounded train, fixed valid/test. "
        "Metric: accuracy on the answer characters (Jozefowicz: LSTM 0.89, GRU 0.90, MUT1 0.92), "
        "plus whole-answer accuracy. Example: '3e36d9-h1h39f94eeh43keg3c=' -> '-13991064'."
    )

    def __init__(
        self,
        digits: int = 8,
        distractors: float = 0.5,
        valid_size: int = 1000,
        test_size: int = 1000,
    ):
        super().__init__(valid_size, test_size)
        check_positive("digits", digits)
        if not 0 <= distractors < 1:
            raise ValueError(f"distractors must be a probability in [0, 1), got {distractors}")
        self.digits = digits
        self.distractors = distractors
        self.set_vocab([PAD, *string.digits, "+", "-", "=", *LETTERS])
        self.info.update(digits=digits, distractors=distractors)

    def question(self, rng: np.random.Generator) -> tuple[str, str]:
        """One ``(question with distractors, answer)`` pair."""
        a, b = _number(rng, self.digits), _number(rng, self.digits)
        op = "+" if rng.random() < 0.5 else "-"
        answer = a + b if op == "+" else a - b
        chars = []
        for c in f"{a}{op}{b}":
            chars.append(c)
            while rng.random() < self.distractors:
                chars.append(LETTERS[int(rng.integers(26))])
        return "".join(chars), str(answer)

    def generate(self, rng, count):
        examples = []
        for _ in range(count):
            question, answer = self.question(rng)
            text = f"{question}={answer}"
            examples.append((text, len(question) + 1))
        return examples

    def metric(self) -> TokenMetric:
        return TokenMetric("accuracy", sequences=True)


@register("addition")
class Addition(TokenSequenceTask):
    """Addition of two ``digits``-digit integers (Grid LSTM paper: 15 digits).

    ``a+b=`` then the sum, predicted digit by digit; both operands have exactly ``digits``
    digits (uniform in ``[10^(d-1), 10^d)``).

    Args:
        digits: operand length. Default 15.
        reverse: write every number least-significant digit first (easier: carries flow
            forward in time). Default False.
        valid_size, test_size: fixed evaluation examples. Default 1000 each.
    Metric: ``sequence_accuracy`` (the whole sum right; primary) and per-digit ``accuracy``.
    """

    name = "addition"
    training_defaults = GRID_TRAINING
    summary = (
        "Integer addition as in the Grid LSTM paper (Kalchbrenner et al. 2016): two random "
        "15-digit integers (digits= to change), read as 'a+b=', then the sum predicted digit by "
        "digit with teacher forcing; only the sum's digits count. Generated from a seed, "
        "unbounded train, fixed valid/test. Metric: exact-sequence accuracy (the whole sum "
        "right), plus per-digit accuracy. Example (digits=3): '123+989=' -> '1112'."
    )

    def __init__(
        self, digits: int = 15, reverse: bool = False, valid_size: int = 1000, test_size: int = 1000
    ):
        super().__init__(valid_size, test_size)
        check_positive("digits", digits)
        self.digits = digits
        self.reverse = reverse
        self.set_vocab([PAD, *string.digits, "+", "="])
        self.info.update(digits=digits, reverse=reverse)

    def operand(self, rng: np.random.Generator) -> str:
        """A uniform ``digits``-digit integer, drawn digit by digit (numpy stops at 2^63)."""
        rest = "".join(str(d) for d in rng.integers(0, 10, self.digits - 1).tolist())
        return str(int(rng.integers(1, 10))) + rest

    def generate(self, rng, count):
        examples = []
        for _ in range(count):
            a, b = self.operand(rng), self.operand(rng)
            total = str(int(a) + int(b))
            if self.reverse:
                a, b, total = a[::-1], b[::-1], total[::-1]
            question = f"{a}+{b}="
            examples.append((question + total, len(question)))
        return examples

    def metric(self) -> TokenMetric:
        return TokenMetric("sequence_accuracy", sequences=True)


COPY_SYMBOLS = string.ascii_lowercase + string.ascii_uppercase + string.digits + "#@"


@register("copy")
class Copy(TokenSequenceTask):
    """Sequence memorisation: read ``length`` random symbols, ``=``, then reproduce them.

    Args:
        length: symbols to memorise. Default 20.
        symbols: alphabet size, 2 to 64. Default 64.
        valid_size, test_size: fixed evaluation examples. Default 1000 each.
    Metric: ``sequence_accuracy`` (all symbols right; primary) and per-symbol ``accuracy``.
    """

    name = "copy"
    training_defaults = GRID_TRAINING
    summary = (
        "Sequence memorisation (the Grid LSTM paper's memorisation task): read a random "
        "sequence of 20 symbols from an alphabet of 64 (length= and symbols= to change), then "
        "'=', then reproduce the sequence symbol by symbol (teacher forced; only the "
        "reproduction counts). Generated from a seed, unbounded train, fixed valid/test. "
        "Metric: exact-sequence accuracy, plus per-symbol accuracy. Example (length=5): "
        "'qA7#c=' -> 'qA7#c'."
    )
    primary = "sequence_accuracy"

    def __init__(
        self, length: int = 20, symbols: int = 64, valid_size: int = 1000, test_size: int = 1000
    ):
        super().__init__(valid_size, test_size)
        check_positive("length", length)
        if not 2 <= symbols <= len(COPY_SYMBOLS):
            raise ValueError(f"symbols must be in [2, {len(COPY_SYMBOLS)}], got {symbols}")
        self.length = length
        self.alphabet = COPY_SYMBOLS[:symbols]
        self.set_vocab([PAD, *self.alphabet, "="])
        self.info.update(length=length, symbols=symbols)

    def generate(self, rng, count):
        picks = rng.integers(0, len(self.alphabet), size=(count, self.length))
        examples = []
        for row in picks:
            sequence = "".join(self.alphabet[i] for i in row)
            examples.append((f"{sequence}={sequence}", self.length + 1))
        return examples

    def metric(self) -> TokenMetric:
        return TokenMetric(self.primary, sequences=True)


@register("memorize")
class Memorize(Copy):
    """Jozefowicz et al.'s memorisation filter: read 5 letters of 26, ``=``, reproduce them.

    Args:
        length: symbols to memorise. Default 5.
        symbols: alphabet size. Default 26 (lowercase letters).
        valid_size, test_size: fixed evaluation examples. Default 1000 each.
    Metric: per-symbol ``accuracy`` (primary; a candidate cell had to reach 95%) and
    ``sequence_accuracy``.
    """

    name = "memorize"
    training_defaults = GRID_TRAINING
    summary = (
        "Jozefowicz et al.'s memorisation problem, the filter every candidate architecture had "
        "to pass (95% accuracy): read 5 random symbols of 26 (lowercase letters), then '=', "
        "then reproduce them symbol by symbol (teacher forced; only the reproduction counts). "
        "Generated from a seed, unbounded train, fixed valid/test. Metric: per-symbol accuracy, "
        "plus whole-sequence accuracy. Example: 'qdkza=' -> 'qdkza'."
    )
    primary = "accuracy"

    def __init__(
        self, length: int = 5, symbols: int = 26, valid_size: int = 1000, test_size: int = 1000
    ):
        super().__init__(length, symbols, valid_size, test_size)


@register("xml")
class Xml(TokenSequenceTask):
    """Synthetic XML: nested tags of 2–10 random lowercase letters, one per line, indented.

    A document starts by opening a tag. Then at every step, if tags are open: close the most
    recent one with probability ``close`` (0.5), or always once the document's outermost tag
    has been open ``max_steps`` (50) steps; else open a new random tag. The document ends when
    its outermost tag closes, and the next one starts. Each tag is written on its own line,
    indented by one space per enclosing open tag::

        <xkcdc>
         <ahdh>
          <bbz>
          </bbz>
         </ahdh>
        </xkcdc>

    A sequence is the first ``seq_len + 1`` characters of such a stream; the model predicts
    every next character. The length is fixed when the task is made (so valid and test stay
    the same); the ``seq_len`` argument of :meth:`batches` is ignored, as for the other
    generated tasks.

    Args:
        seq_len: characters per sequence (targets). Default 100.
        close, max_steps: see above. Defaults 0.5 and 50.
        indent: write the indentation spaces. Default True.
        valid_size, test_size: fixed evaluation sequences. Default 1000 each.
    Metric: next-character ``accuracy`` (primary) and ``bits_per_char``.
    """

    name = "xml"
    training_defaults = JOZEFOWICZ_TRAINING
    summary = (
        "Jozefowicz et al. (2015) XML modelling: a stream of nested tags whose names are random "
        "strings of 2-10 lowercase letters; at each step, with probability 0.5 (or always once "
        "the outermost tag has been open 50 steps) the most recent open tag is closed, else a "
        "new one is opened; one tag per line, indented by depth. The model predicts every next "
        "character; closing tags are predictable only by remembering what is open. Metric: "
        "next-character accuracy (Jozefowicz: LSTM 0.43, GRU 0.46) and bits per character. "
        "Example: '<xkcdc>\\n <ahdh>\\n </ahdh>\\n</' -> next characters 'xkcdc>'."
    )

    def __init__(
        self,
        seq_len: int = 100,
        close: float = 0.5,
        max_steps: int = 50,
        indent: bool = True,
        valid_size: int = 1000,
        test_size: int = 1000,
    ):
        super().__init__(valid_size, test_size)
        check_positive("seq_len", seq_len)
        check_positive("max_steps", max_steps)
        if not 0 < close < 1:
            raise ValueError(f"close must be a probability in (0, 1), got {close}")
        self.seq_len = seq_len
        self.close = close
        self.max_steps = max_steps
        self.indent = indent
        self.set_vocab(["\n", " ", "/", "<", ">", *LETTERS])
        self.info.update(seq_len=seq_len, close=close, max_steps=max_steps, indent=indent)

    def document(self, rng: np.random.Generator) -> str:
        """One complete document: from opening its outermost tag to closing it."""
        stack: list[str] = []
        lines = []
        steps = 0
        while True:
            must_close = steps >= self.max_steps
            if stack and (must_close or rng.random() < self.close):
                tag = stack.pop()
                lines.append(self._line(len(stack), f"</{tag}>"))
                if not stack:
                    return "".join(lines)
            else:
                size = int(rng.integers(2, 11))
                tag = "".join(LETTERS[i] for i in rng.integers(0, 26, size))
                lines.append(self._line(len(stack), f"<{tag}>"))
                stack.append(tag)
            steps += 1

    def _line(self, depth: int, tag: str) -> str:
        return (" " * depth if self.indent else "") + tag + "\n"

    def generate(self, rng, count):
        examples = []
        for _ in range(count):
            parts, size = [], 0
            while size < self.seq_len + 1:
                parts.append(self.document(rng))
                size += len(parts[-1])
            examples.append(("".join(parts)[: self.seq_len + 1], 1))
        return examples

    def metric(self) -> TokenMetric:
        return TokenMetric("accuracy")


@register("parity")
class Parity(GeneratedTask):
    """k-bit parity: is the number of ones in a random k-bit string odd?

    Args:
        bits: k. Default 250 (the Grid LSTM paper solved k = 250 with a 1-D Grid LSTM).
        form: ``"vector"``: all k bits at once, one step (inputs ``(1, B, k)``), as the Grid LSTM
            paper does; ``"sequence"``: one bit per step (inputs ``(k, B, 1)``).
            Default ``"vector"``.
        signed: give the bits as −1.0 / +1.0 instead of 0.0 / 1.0. Default False. (Measured: a
            1-D Grid LSTM of 2 × 256 learns 16-bit parity to 99% in 1,000 steps with signed bits
            and stays at chance after 1,500 with 0/1 bits.)
        valid_size, test_size: fixed evaluation examples. Default 1000 each.
    Bits are 0.0 / 1.0 floats (±1 with ``signed``); each bit is uniform and independent, so
    labels are balanced.
    Targets ``(B,)`` int64: 1 if odd. Metric: ``accuracy``.
    """

    causal = False  # one label per bit string, read after the whole string

    name = "parity"
    training_defaults = {**GRID_TRAINING, "task.batch_size": 128}  # grid-parity
    summary = (
        "k-bit parity from the Grid LSTM paper (Kalchbrenner et al. 2016): a random string of "
        "k bits (default 250, bits= to change) is given all at once as one feature vector "
        "(form='sequence' gives one bit per step instead); the model outputs 1 if the number "
        "of ones is odd, else 0. The paper solved k = 250 with a deep 1-D Grid LSTM. Generated "
        "from a seed, unbounded train, fixed valid/test. Metric: accuracy (0.5 is chance). "
        "Example (bits=5): [1, 0, 1, 1, 0] -> 1."
    )

    def __init__(
        self, bits: int = 250, form: str = "vector", signed: bool = False,
        valid_size: int = 1000, test_size: int = 1000,
    ):
        super().__init__(valid_size, test_size)
        check_positive("bits", bits)
        if form not in ("vector", "sequence"):
            raise ValueError(f"form must be 'vector' or 'sequence', got {form!r}")
        self.bits = bits
        self.form = form
        self.signed = bool(signed)
        self.input = Features(bits if form == "vector" else 1)
        self.output = Classes(2)
        self.info.update(bits=bits, form=form, signed=self.signed)

    def generate(self, rng, count):
        strings = rng.integers(0, 2, size=(count, self.bits), dtype=np.int8)
        return list(strings)

    def collate(self, examples) -> Batch:
        bits = torch.from_numpy(np.stack(examples)).to(torch.float32)  # (B, k)
        labels = bits.sum(1).to(torch.int64) % 2  # (B,)
        if self.signed:
            bits = 2 * bits - 1
        if self.form == "vector":
            inputs = bits[None]  # (1, B, k)
        else:
            inputs = bits.t()[..., None].contiguous()  # (k, B, 1)
        return Batch(inputs=inputs, targets=labels)

    def metric(self) -> ClassMetric:
        return ClassMetric()
