"""Translation tasks: numbers written out in one language, translated into another.

Seed 000's future work is "machine translation — 3D Grid-LSTM instead of encoder decoder". The
parallel corpus here is generated, so it needs no download and has an exact answer: a number
written in words in the source language (``num2words``) -> the same number in the target
language::

    en -> fr   "three hundred and twelve"  ->  "trois cent douze"
    en -> de   "twenty-first"              ->  "einundzwanzigste"        (kind=ordinal)
    en -> es   "nineteen eighty-four"      ->  "mil novecientos ochenta y cuatro"   (kind=year)

**Held-out numbers.** Which split a number belongs to is a function of the number itself
(``crc32`` of ``kind:value``: 1 in 10 test, 1 in 10 valid, the rest train), so no test number is
ever a training example, in any batch, and memorising translations does not help; the model
must learn how number words compose.

**Layout.** Each example is one character sequence ``source = target ⏎`` read with teacher
forcing, as the other generated token tasks (:mod:`rnnlab.tasks.synthetic`): the model reads
the source, ``=`` and the target shifted by one, and only the target characters and the final
``⏎`` count. Any causal body can translate this way (a decoder-only network); the
encoder–decoder bodies (``seq2seq``, ``reencoder``) split each sequence at its ``=``.
Metrics: per-character ``accuracy`` and ``sequence_accuracy`` — the fraction of targets whose
every character is predicted right from the true prefix, which is exactly the fraction that
greedy decoding reproduces word for word (exact match). BLEU needs free-running decoding:
``rnnlab translate --evaluate RUN`` computes it with sacrebleu.

``parallel`` reads the same layout from two aligned text files of one's own (line i of the
source file translates to line i of the target file), split by a hash of the source line.
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from rnnlab.tasks import register
from rnnlab.tasks.base import TokenMetric, check_positive
from rnnlab.tasks.synthetic import PAD, TokenSequenceTask

SEP, END = "=", "\n"
PAD_ID, SEP_ID, END_ID = 0, 1, 2  # every translation vocabulary starts [PAD, SEP, END, ...]
KINDS = ("cardinal", "ordinal", "year")
YEARS = (1000, 2100)  # inclusive range of kind=year


def split_of(key: str) -> str:
    """The split a source item belongs to: test (1 in 10), valid (1 in 10) or train."""
    bucket = zlib.crc32(key.encode()) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


@lru_cache(maxsize=64)
def words(value: int, language: str, kind: str) -> str:
    from num2words import num2words

    return num2words(value, lang=language, to=kind)


@lru_cache(maxsize=16)
def alphabet(language: str) -> frozenset[str]:
    """Every character ``num2words`` writes for ``language``: number words compose from the
    words of 0–1,100, the powers of ten, their ordinals and the years, so these cover it."""
    values = [*range(1101), *(10**k for k in range(3, 10))]
    chars: set[str] = set()
    for value in values:
        for kind in ("cardinal", "ordinal"):
            chars.update(words(value, language, kind))
    for value in range(YEARS[0], YEARS[1] + 1):
        chars.update(words(value, language, "year"))
    return frozenset(chars)


CHECKED_VALUES = 100_000  # Numbers.out_of_domain and longest_target write out at most this many
WORD_BREAK = re.compile(r"[\s,-]+")


@lru_cache(maxsize=8)
def written(language: str, ranges: tuple[tuple[str, int, int], ...]) -> frozenset[str] | None:
    """Every number of ``ranges`` (``(kind, low, high)``, inclusive) written in ``language``;
    None when that is more than :data:`CHECKED_VALUES` numbers."""
    if sum(high - low + 1 for _, low, high in ranges) > CHECKED_VALUES:
        return None
    return frozenset(words(value, language, kind) for kind, low, high in ranges
                     for value in range(low, high + 1))


@lru_cache(maxsize=8)
def source_words(language: str, ranges: tuple[tuple[str, int, int], ...]) -> frozenset[str]:
    """Every word the numbers of ``ranges`` use in ``language``: number words compose from the
    words of 0–1,100 and the powers of ten, so those values give them all (a range of at most
    1,101 numbers, such as the years, is written out whole)."""
    found: set[str] = set()
    skeleton = (*range(1101), *(10**k for k in range(3, 19)))
    for kind, low, high in ranges:
        values = range(low, high + 1) if high - low <= 1100 else \
            [v for v in skeleton if low <= v <= high]
        for value in values:
            found.update(WORD_BREAK.split(words(value, language, kind)))
    return frozenset(found)


@register("numbers")
class Numbers(TokenSequenceTask):
    """Numbers in words, source language -> target language (see the module docstring).

    Args:
        source, target: ``num2words`` language codes. Defaults ``"en"`` and ``"fr"``.
        kinds: comma-separated, any of cardinal, ordinal, year (each example draws one).
            Default ``"cardinal"``.
        max_value: cardinals and ordinals are drawn uniformly from ``[0, max_value]``.
            Default 9999. Years: 1000–2100.
        valid_size, test_size: fixed evaluation examples. Default 500 each.
    """

    name = "numbers"
    training_defaults = {  # numbers-grid (rnnlab/reproduce/entries.py)
        "task.batch_size": 32,
        "task.eval_batch_size": 250,
        "train.eval_every": 100,
    }
    pairs = True  # examples are source=target sequences (encoder-decoder bodies may read them)
    summary = (
        "Translation of numbers written in words (seed 000's translation future work, with a "
        "generated parallel corpus): a number in English words (num2words; source=) -> the same "
        "number in French (target=: de, es, it, ...); cardinals up to 9999 (max_value=), "
        "ordinals and years (kinds=). Test and valid numbers are held out by a hash of the "
        "number, never seen in training. Read as 'source=target' characters with teacher "
        "forcing; only the target counts. Metric: character accuracy and exact match. "
        "Example: 'three hundred and twelve=' -> 'trois cent douze'."
    )

    def __init__(
        self,
        source: str = "en",
        target: str = "fr",
        kinds: str = "cardinal",
        max_value: int = 9999,
        valid_size: int = 500,
        test_size: int = 500,
    ):
        super().__init__(valid_size, test_size)
        check_positive("max_value", max_value)
        chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
        if not chosen or any(k not in KINDS for k in chosen):
            raise ValueError(f"kinds must be a comma-separated subset of {KINDS}, got {kinds!r}")
        if source == target:
            raise ValueError(f"source and target languages must differ, both are {source!r}")
        for language in (source, target):
            try:
                words(1, language, "cardinal")
            except NotImplementedError:
                raise ValueError(
                    f"num2words has no language {language!r}; try en, fr, de, es, it, pt, nl"
                ) from None
        self.source, self.target, self.kinds, self.max_value = source, target, chosen, max_value
        symbols = sorted((alphabet(source) | alphabet(target)) - {SEP, END, PAD})
        self.set_vocab([PAD, SEP, END, *symbols])
        self.info.update(source=source, target=target, kinds=",".join(chosen),
                         max_value=max_value)

    def draw_item(self, rng: np.random.Generator) -> tuple[str, int]:
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        if kind == "year":
            return kind, int(rng.integers(YEARS[0], YEARS[1] + 1))
        # uniform over the values (not the number of digits first): a test set drawn by digit
        # count would be a quarter one-digit numbers, which are too few to hold out fairly
        return kind, int(rng.integers(0, self.max_value + 1))

    def pair(self, kind: str, value: int) -> tuple[str, str]:
        """(source words, target words) of one number."""
        return words(value, self.source, kind), words(value, self.target, kind)

    def ranges(self) -> dict[str, tuple[int, int]]:
        """The inclusive range of the numbers of each kind this task draws."""
        return {kind: YEARS if kind == "year" else (0, self.max_value) for kind in self.kinds}

    def out_of_domain(self, source: str) -> str | None:
        """Why ``source`` is none of the numbers this task writes in its source language (the
        only sources a model of it was trained on), or None when it is one of them: ``'one
        million'`` is outside cardinals 0–9,999, ``'three hundred twelve'`` is not how
        num2words writes 312. Ranges of more than :data:`CHECKED_VALUES` numbers are checked
        word by word: only a source using a word none of its numbers uses is reported."""
        ranges = self.range_key()
        sentences = written(self.source, ranges)
        if sentences is not None:
            inside = source in sentences
        else:
            inside = set(WORD_BREAK.split(source)) <= source_words(self.source, ranges)
        if inside:
            return None
        spans = ", ".join(f"{kind}s {low:,}–{high:,}" for kind, low, high in ranges)
        return (f"{source!r} is none of the numbers the model was trained on ({self.source} "
                f"{spans}, as num2words writes them); its translation is a guess")

    def longest_target(self) -> int | None:
        """The length of the longest target this task writes (None: a range of more than
        :data:`CHECKED_VALUES` numbers, not enumerated)."""
        targets = written(self.target, self.range_key())
        return None if targets is None else max(map(len, targets))

    def range_key(self) -> tuple[tuple[str, int, int], ...]:
        return tuple((kind, low, high) for kind, (low, high) in self.ranges().items())

    def generate_split(
        self, rng: np.random.Generator, count: int, split: str
    ) -> list[tuple[str, int]]:
        """``count`` examples whose numbers belong to ``split`` (rejection sampling)."""
        examples = []
        while len(examples) < count:
            kind, value = self.draw_item(rng)
            if split_of(f"{kind}:{value}") != split:
                continue
            source, target = self.pair(kind, value)
            examples.append((f"{source}{SEP}{target}{END}", len(source) + 1))
        return examples

    def generate(self, rng, count):
        """``count`` train examples."""
        return self.generate_split(rng, count, "train")

    def metric(self) -> TokenMetric:
        return TokenMetric("sequence_accuracy", sequences=True)


@register("parallel")
class ParallelText(TokenSequenceTask):
    """A parallel corpus of one's own: two aligned UTF-8 text files, one sentence per line.

    Args:
        path: the source-language file. target_path: the target-language file (same number of
            lines; line i of one translates line i of the other).
        valid_size, test_size: ignored; lines go to test / valid / train by a hash of the source
            line (1 in 10, 1 in 10, the rest), so a repeated source sentence stays in one split.
    The layout and metrics are those of ``numbers``.
    """

    name = "parallel"
    pairs = True
    summary = (
        "Translation on your own parallel corpus: two aligned UTF-8 files (path=, target_path=), "
        "line i of one translating line i of the other; split by a hash of the source line (1 in "
        "10 test, 1 in 10 valid); character vocabulary; read as 'source=target' with teacher "
        "forcing as the numbers task. Metric: character accuracy and exact match. Example: "
        "'the cat=' -> 'le chat'."
    )

    def __init__(self, path=None, target_path=None, valid_size: int = 1, test_size: int = 1):
        super().__init__(valid_size, test_size)
        if path is None or target_path is None:
            raise ValueError("the parallel task needs path=SOURCE_FILE and target_path=TARGET_FILE")
        lines = []
        for file in (Path(path), Path(target_path)):
            try:
                lines.append(file.read_text(encoding="utf-8").splitlines())
            except (OSError, UnicodeDecodeError) as error:
                raise ValueError(f"cannot read {file} as UTF-8 text: {error}") from None
        sources, targets = lines
        if len(sources) != len(targets):
            raise ValueError(
                f"{path} has {len(sources)} lines but {target_path} has {len(targets)}: the files "
                "must be aligned line by line"
            )
        pairs = [(s.strip(), t.strip()) for s, t in zip(sources, targets) if s.strip()]
        bad = {c for s, t in pairs for c in s + t} & {SEP, END, PAD}
        if bad:
            raise ValueError(f"the corpus uses the reserved symbols {sorted(bad)!r}")
        self.by_split: dict[str, list[tuple[str, int]]] = {"train": [], "valid": [], "test": []}
        for s, t in pairs:
            self.by_split[split_of(s)].append((f"{s}{SEP}{t}{END}", len(s) + 1))
        for split, examples in self.by_split.items():
            if not examples:
                raise ValueError(f"no line of {path} falls in the {split} split; add more lines")
        self.sizes = {split: len(self.by_split[split]) for split in ("valid", "test")}
        symbols = sorted({c for text, _ in self.by_split["train"] for c in text} - {SEP, END})
        unseen = {c for split in ("valid", "test") for text, _ in self.by_split[split]
                  for c in text} - set(symbols) - {SEP, END}
        self.set_vocab([PAD, SEP, END, *symbols, *sorted(unseen)])
        self.info.update(path=str(Path(path).resolve()), target_path=str(Path(target_path)
                         .resolve()), pairs=len(pairs))

    def longest_target(self) -> int:
        """The length of the longest target line of the corpus."""
        return max(len(text) - start for split in self.by_split.values()
                   for text, start in split) - 1  # without the end mark

    def generate(self, rng, count):
        train = self.by_split["train"]
        return [train[int(i)] for i in rng.integers(0, len(train), count)]

    def examples(self, split: str):
        if split in ("valid", "test"):
            return self.by_split[split]
        return super().examples(split)

    def metric(self) -> TokenMetric:
        return TokenMetric("sequence_accuracy", sequences=True)
