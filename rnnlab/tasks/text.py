"""Text corpora for language modelling: the stdlib corpus, Tiny Shakespeare, enwik8, text8, PTB.

Every task here is a :class:`~rnnlab.tasks.stream.StreamTask` (contiguous streams, truncated
BPTT, state carried across batches). Character tasks report bits per character, the word task
perplexity. Files are found or downloaded as :mod:`rnnlab.tasks.download` describes.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnlab.tasks import register
from rnnlab.tasks.base import check_positive
from rnnlab.tasks.download import Checksum, DataFile, find
from rnnlab.tasks.stream import StreamTask
from rnnlab.tasks.vocab import Vocabulary, char_vocabulary


def split_by_fraction(ids: Tensor, fractions: tuple[float, float, float]) -> dict[str, Tensor]:
    """Cut ``(N,)`` ids into contiguous train / valid / test parts of the given fractions."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    n = ids.numel()
    a = int(n * fractions[0])
    b = a + int(n * fractions[1])
    return {"train": ids[:a], "valid": ids[a:b], "test": ids[b:]}


def byte_ids(data: bytes) -> tuple[Vocabulary, Tensor]:
    """A byte corpus -> (vocabulary of the byte values present, ``(N,)`` uint8 ids).

    Symbols are ``chr(byte)`` (latin-1), so ``decode`` gives one character per byte.
    """
    array = np.frombuffer(data, dtype=np.uint8)
    present = np.flatnonzero(np.bincount(array, minlength=256))
    lookup = np.zeros(256, dtype=np.uint8)
    lookup[present] = np.arange(len(present), dtype=np.uint8)
    return Vocabulary([chr(b) for b in present.tolist()]), torch.from_numpy(lookup[array])


def _keep_first(splits: dict[str, Tensor], name: str, count: int, info: dict) -> None:
    """Cut the train split to its first ``count`` tokens (the option ``name``), noted in info."""
    check_positive(name, count)
    have = splits["train"].numel()
    if count > have:
        raise ValueError(f"{name}={count} exceeds the train split's {have} tokens")
    splits["train"] = splits["train"][:count]
    info[name] = count


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_text(name: str, text: str) -> None:
    if not text.strip():
        raise ValueError(f"{name}: the corpus is empty; expected text to model")


# ---------------------------------------------------------------------------------------------
# The default corpus: the running Python's own standard library


def stdlib_corpus(chars: int = 1_500_000) -> tuple[str, list[str]]:
    """The sorted top-level ``.py`` files of the stdlib, concatenated until ``chars`` characters.

    Returns the text and the file names used (whole files only, in sorted order).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"))
    if not files:
        raise FileNotFoundError(
            f"no standard-library .py files in {root}; this Python ships its stdlib compiled or "
            "zipped. Use make('text', path=<a text file>) or another text task."
        )
    parts, names, total = [], [], 0
    for file in files:
        if total >= chars:
            break
        text = file.read_text(encoding="utf-8")
        parts.append(text)
        names.append(file.name)
        total += len(text)
    if total < chars:
        raise ValueError(
            f"the stdlib in {root} has only {total:,} characters of top-level .py files, fewer "
            f"than chars={chars:,}; ask for fewer"
        )
    return "".join(parts), names


def read_corpus(path) -> tuple[str, dict]:
    """Your own corpus: a UTF-8 file, or a folder whose files (recursively, hidden ones
    excepted, sorted by their path inside the folder) are read and concatenated.

    Returns the text and its provenance: the absolute ``source`` and, for a folder, the
    ``files`` read (the sha256 of the text is added by the task).
    """
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(
            f"{root} does not exist; task.path must be a UTF-8 text file or a folder of them"
        )
    if root.is_dir():
        files = sorted(
            f for f in root.rglob("*")
            if f.is_file() and not any(p.startswith(".") for p in f.relative_to(root).parts)
        )
        if not files:
            raise ValueError(f"{root} is a folder with no files; expected text files in it")
    else:
        files = [root]
    parts = []
    for file in files:
        try:
            parts.append(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{file} is not UTF-8 text ({error.reason} at byte {error.start}); expected a "
                "text corpus"
            ) from None
    source = {"source": str(root)}
    if root.is_dir():
        source["files"] = [str(f.relative_to(root)) for f in files]
    return "".join(parts), source


@register("text")
class StdlibText(StreamTask):
    """Character LM on a corpus built from this Python's standard library (the default task).

    Args:
        path: a UTF-8 text file to use instead of the stdlib corpus (your own corpus), or a
            folder: every file under it (hidden ones excepted), in sorted order, concatenated.
        chars: how much stdlib source to take (whole files, sorted by name, until at least this
            many characters). Default 1,500,000.
        seq_len: truncated-BPTT length. Default 100.
        fractions: contiguous train / valid / test fractions. Default (0.9, 0.05, 0.05).
        vocab: the symbols to encode with (a trained run's, to evaluate it on other text);
            None: the corpus's own characters.
    """

    name = "text"
    summary = (
        "Character-level language modelling on a corpus that needs no download and no data "
        "folder: the running Python's standard-library sources (the sorted top-level *.py files "
        "of sysconfig's stdlib folder, whole files until about 1.5 million characters; the file "
        "list and a sha256 of the text are in task.info so a run can be reproduced), cut "
        "90/5/5 into contiguous train/valid/test streams for truncated BPTT with the state "
        "carried across batches. Metric: bits per character (also accuracy, perplexity). "
        "Example: after 'def __init__(self' the next character is most likely ')' or ','."
    )

    def __init__(
        self,
        path=None,
        *,
        chars: int = 1_500_000,
        seq_len: int = 100,
        fractions=(0.9, 0.05, 0.05),
        vocab: list[str] | None = None,
    ):
        if path is None:
            text, files = stdlib_corpus(chars)
            source = {
                "source": "stdlib",
                "stdlib": sysconfig.get_paths()["stdlib"],
                "python": sys.version.split()[0],
                "files": files,
            }
        else:
            text, source = read_corpus(path)
        _check_text(self.name, text)
        vocabulary = char_vocabulary(text) if vocab is None else Vocabulary(list(vocab))
        splits = split_by_fraction(vocabulary.encode(text), tuple(fractions))
        self.setup(
            vocabulary,
            splits,
            seq_len,
            {**source, "sha256": sha256_text(text), "chars": len(text)},
        )


# ---------------------------------------------------------------------------------------------
# Tiny Shakespeare

SHAKESPEARE = DataFile(
    "input.txt",
    "tinyshakespeare",
    Checksum("86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    url="https://raw.githubusercontent.com/karpathy/char-rnn/"
    "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
)


@register("tinyshakespeare")
class TinyShakespeare(StreamTask):
    """Character LM on Tiny Shakespeare (1,115,394 characters, 65 symbols).

    Args:
        path: the file ``input.txt`` or a folder holding it (or ``tinyshakespeare/input.txt``).
        seq_len: truncated-BPTT length. Default 100.
        fractions: contiguous train / valid / test fractions. Default (0.9, 0.05, 0.05).
        train_chars: keep only the first this many characters of the train split (valid and
            test unchanged; the vocabulary is still the whole file's). A small training set
            that a network overfits, to compare regularisers. Default None: all of it.
        download: fetch it (sha256-checked) into the cache if it is not found. Default True.
        verify: check the sha256 of a file that is found. Default True.
    """

    name = "tinyshakespeare"
    summary = (
        "Character-level language modelling on Tiny Shakespeare (karpathy/char-rnn's "
        "input.txt: 1,115,394 characters, 65 distinct), cut 90/5/5 into contiguous train/valid/"
        "test streams for truncated BPTT. Read from path=, $RNNLAB_DATA/tinyshakespeare/ or the "
        "cache, or downloaded with a sha256 check. Metric: bits per character (char-rnn LSTMs "
        "reach about 1.4-1.6 nats, 2.0-2.3 bits). Example: 'First Citizen:\\nBefore we proceed' "
        "-> next character ' '."
    )

    def __init__(
        self,
        path=None,
        *,
        seq_len: int = 100,
        fractions=(0.9, 0.05, 0.05),
        train_chars: int | None = None,
        download: bool = True,
        verify: bool = True,
    ):
        _, file = find([SHAKESPEARE], path, download=download, verify=verify)
        text = file.read_text(encoding="utf-8")
        _check_text(self.name, text)
        vocab = char_vocabulary(text)
        splits = split_by_fraction(vocab.encode(text), tuple(fractions))
        info = {"source": str(file), "sha256": sha256_text(text), "chars": len(text)}
        if train_chars is not None:
            _keep_first(splits, "train_chars", train_chars, info)
        self.setup(vocab, splits, seq_len, info)


# ---------------------------------------------------------------------------------------------
# enwik8 and text8 (Mahoney): 100,000,000 bytes each, split 90M / 5M / 5M

HUNDRED_MILLION = 100_000_000
MAHONEY_SPLIT = (90_000_000, 95_000_000)


def _mahoney_files(name: str, zip_sha256: str, raw: Checksum) -> list[DataFile]:
    return [
        DataFile(name, name, raw),
        DataFile(
            f"{name}.zip", name, Checksum(zip_sha256), url=f"http://mattmahoney.net/dc/{name}.zip"
        ),
    ]


ENWIK8 = _mahoney_files(
    "enwik8",
    "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
    Checksum("2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"),
)
TEXT8 = _mahoney_files(
    "text8",
    "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
    Checksum("3bea1919949baf155f99411df5fada7e", algorithm="md5"),
)


def _read_mahoney(
    name: str, files: list[DataFile], path, download: bool, verify: bool
) -> tuple[bytes, str]:
    spec, file = find(files, path, download=download, verify=verify)
    if spec.name.endswith(".zip"):
        try:
            with zipfile.ZipFile(file) as archive:
                data = archive.read(name)
        except (zipfile.BadZipFile, KeyError) as error:
            raise ValueError(f"{file} is not a zip holding '{name}': {error}") from error
    else:
        data = file.read_bytes()
    if len(data) != HUNDRED_MILLION:
        raise ValueError(
            f"{name} from {file} has {len(data):,} bytes, expected {HUNDRED_MILLION:,}; the file "
            "is truncated or not the benchmark file"
        )
    return data, str(file)


class MahoneyTask(StreamTask):
    """enwik8 / text8 loader: bytes [0, 90M) train, [90M, 95M) valid, [95M, 100M) test."""

    files: list[DataFile]

    def __init__(
        self, path=None, *, seq_len: int = 100, download: bool = True, verify: bool = True
    ):
        data, source = _read_mahoney(self.name, self.files, path, download, verify)
        vocab, ids = byte_ids(data)
        a, b = MAHONEY_SPLIT
        splits = {"train": ids[:a], "valid": ids[a:b], "test": ids[b:]}
        self.setup(vocab, splits, seq_len, {"source": source, "bytes": len(data)})


@register("enwik8")
class Enwik8(MahoneyTask):
    """Byte-level LM on enwik8 (first 10^8 bytes of English Wikipedia, 2006).

    Args:
        path: ``enwik8`` or ``enwik8.zip``, or a folder holding either.
        seq_len: truncated-BPTT length. Default 100.
        download: fetch ``enwik8.zip`` (36,445,475 bytes, sha256-checked). Default True.
        verify: check the checksum of a file that is found. Default True.
    """

    name = "enwik8"
    files = ENWIK8
    summary = (
        "Byte-level language modelling on enwik8, the Hutter Prize file (the first 10^8 bytes "
        "of an English Wikipedia XML dump; about 205 distinct byte values), split into the "
        "standard 90M/5M/5M contiguous train/valid/test streams. Downloaded from "
        "mattmahoney.net/dc/enwik8.zip with a sha256 check, or read from path=. Metric: bits "
        "per character (Grid LSTM: 1.47; stacked LSTM: 1.67). Example: '<title>Anarchism</tit' "
        "-> next byte 'l'."
    )


@register("text8")
class Text8(MahoneyTask):
    """Character LM on text8 (10^8 characters of cleaned Wikipedia: a-z and space).

    Args:
        path: ``text8`` or ``text8.zip``, or a folder holding either.
        seq_len: truncated-BPTT length. Default 100.
        download: fetch ``text8.zip`` (31,344,016 bytes, sha256-checked). Default True.
        verify: check the checksum of a file that is found. Default True.
    """

    name = "text8"
    files = TEXT8
    summary = (
        "Character-level language modelling on text8 (Mahoney's cleaned first 10^8 characters "
        "of Wikipedia: 27 symbols, a-z and space), split into the standard 90M/5M/5M contiguous "
        "train/valid/test streams. Downloaded from mattmahoney.net/dc/text8.zip with a sha256 "
        "check, or read from path=. Metric: bits per character. Example: ' anarchism originated "
        "as a ter' -> next character 'm'."
    )


# ---------------------------------------------------------------------------------------------
# Penn Treebank (Mikolov's preprocessing), word and character level

PTB_ZIP = DataFile(
    "ptb.zip",
    "ptb",
    Checksum("6957baa63e145820032f12d3f1e6f4ba71789c3f5dbf289902bc3f0a96beef7a"),
    url="https://raw.githubusercontent.com/timbmg/RNNLM/"
    "4e5bddfd042beb3e1aa1f282954cc31567294c83/data/ptb.zip",
)
PTB_SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
PTB_CHAR_SHA256 = {
    "train": "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
    "valid": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    "test": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
}
SPLITS = ("train", "valid", "test")


def _check_multi_file_path(path, name: str) -> None:
    """PTB has three files: ``path`` must be their folder (or the zip that holds them)."""
    if path is not None and Path(path).expanduser().is_file() and not str(path).endswith(".zip"):
        raise ValueError(
            f"{name} has a file per split; pass the folder holding them (or ptb.zip), "
            f"not the single file {path}"
        )


def read_ptb_words(split: str, path=None, *, download: bool = True, verify: bool = True) -> str:
    """The text of ``ptb.<split>.txt``, from the plain file or from ``ptb.zip``."""
    _check_multi_file_path(path, "ptb")
    plain = DataFile(f"ptb.{split}.txt", "ptb", Checksum(PTB_SHA256[split]))
    spec, file = find([plain, PTB_ZIP], path, download=download, verify=verify)
    if not spec.name.endswith(".zip"):
        return file.read_text(encoding="utf-8")
    try:
        with zipfile.ZipFile(file) as archive:
            data = archive.read(f"ptb.{split}.txt")
    except (zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"{file} is not a zip holding ptb.{split}.txt: {error}") from error
    if verify and hashlib.sha256(data).hexdigest() != PTB_SHA256[split]:
        raise ValueError(f"ptb.{split}.txt inside {file} does not match its known sha256")
    return data.decode("utf-8")


def ptb_word_tokens(text: str) -> list[str]:
    """Words of each line followed by ``<eos>`` (Mikolov's convention)."""
    tokens = []
    for line in text.splitlines():
        tokens.extend(line.split())
        tokens.append("<eos>")
    return tokens


@register("ptb")
class PennTreebank(StreamTask):
    """Word-level LM on the Penn Treebank (Mikolov's 10k vocabulary, ``<eos>`` per line).

    Args:
        path: a folder with ``ptb.{train,valid,test}.txt`` or ``ptb.zip`` (or ``ptb/`` inside).
        seq_len: truncated-BPTT length. Default 35 (Zaremba et al.'s medium/large; small: 20).
        train_words: keep only the first this many tokens of the train split (valid, test and
            the vocabulary unchanged): a training set that a model overfits, to compare
            regularisers. Default None: all 929,589.
        download: fetch ``ptb.zip`` (sha256-checked) into the cache if not found. Default True.
        verify: check the sha256 of files that are found. Default True.
    """

    name = "ptb"
    # Zaremba et al. 2014's batches (zaremba-ptb-small; its SGD schedule needs its
    # initialisation, model.init_all, so the optimiser stays the default): 20 x 20 words,
    # and no second 10,000-way softmax per step for the logged train metric
    training_defaults = {"task.seq_len": 20, "task.batch_size": 20,
                         "train.train_metric": "last"}
    unit = "word"
    summary = (
        "Word-level language modelling on the Penn Treebank with Mikolov's preprocessing "
        "(10,000-word vocabulary including <unk> and the end-of-sentence token <eos>; train / "
        "valid / test = 929,589 / 73,760 / 82,430 tokens), as contiguous streams for truncated "
        "BPTT. Metric: perplexity (Zaremba et al. 2014: small 114.5, medium 82.7, large 78.4 "
        "test). Example: 'the company said it expects' -> next word 'to'."
    )

    def __init__(self, path=None, *, seq_len: int = 35, train_words: int | None = None,
                 download: bool = True, verify: bool = True):
        words = {}
        for split in SPLITS:
            text = read_ptb_words(split, path, download=download, verify=verify)
            _check_text(f"ptb {split}", text)
            words[split] = ptb_word_tokens(text)
        vocab = Vocabulary(sorted(set(words["train"])), words=True)
        splits = {}
        for split in SPLITS:
            unknown = set(words[split]) - vocab.index.keys()
            if unknown:
                raise ValueError(
                    f"ptb {split} has words missing from the train vocabulary, e.g. "
                    f"{sorted(unknown)[:5]}; expected Mikolov's preprocessed files"
                )
            splits[split] = vocab.encode_symbols(words[split])
        info = {"source": str(path) if path else "ptb"}
        if train_words is not None:
            _keep_first(splits, "train_words", train_words, info)
        self.setup(vocab, splits, seq_len, info)


def ptb_char_from_words(text: str) -> str:
    """Mikolov's character rewrite of a word-level PTB file.

    Each line's words are joined by ``_`` and followed by a newline; all these characters are
    then written separated by single spaces, plus a final space. Reproduces ``ptb.char.*.txt``
    byte for byte.
    """
    symbols = []
    for line in text.splitlines():
        symbols.extend("_".join(line.split()))
        symbols.append("\n")
    return " ".join(symbols) + " "


def read_ptb_chars(
    split: str, path=None, *, download: bool = True, verify: bool = True
) -> tuple[str, str]:
    """The text of ``ptb.char.<split>.txt`` and where it came from.

    Read from ``ptb.char.<split>.txt`` or ``.txt.gz`` if present; otherwise derived from the
    word-level file with :func:`ptb_char_from_words` (the same bytes).
    """
    _check_multi_file_path(path, "ptb_char")
    checksum = PTB_CHAR_SHA256[split]
    options = [
        DataFile(f"ptb.char.{split}.txt", "ptb_char", Checksum(checksum)),
        DataFile(f"ptb.char.{split}.txt.gz", "ptb_char", Checksum(checksum, gunzip=True)),
    ]
    derive = path is not None and str(path).endswith(".zip")  # the word-level ptb.zip
    if not derive:
        try:
            spec, file = find(options, path, download=False, verify=verify)
        except FileNotFoundError:
            derive = True
    if derive:
        words = read_ptb_words(split, path, download=download, verify=verify)
        return ptb_char_from_words(words), f"derived from ptb.{split}.txt"
    opener = gzip.open if spec.name.endswith(".gz") else open
    with opener(file, "rb") as f:
        return f.read().decode("utf-8"), str(file)


@register("ptb_char")
class PennTreebankChars(StreamTask):
    """Character-level LM on the Penn Treebank (``ptb.char.*``: 50 symbols with end of line).

    Args:
        path: a folder with ``ptb.char.{train,valid,test}.txt`` (or ``.txt.gz``), or with the
            word-level files from which the character files are derived exactly.
        seq_len: truncated-BPTT length. Default 100.
        download: fetch the word-level ``ptb.zip`` if nothing is found. Default True.
        verify: check the sha256 of files that are found. Default True.
    """

    name = "ptb_char"
    summary = (
        "Character-level language modelling on Mikolov's ptb.char files: the PTB sentences "
        "spelled out, '_' between words, one end-of-line symbol per sentence (50 symbols; "
        "train / valid / test = 5,017,482 / 393,042 / 442,423 symbols). Read from ptb.char.* "
        "files or derived byte-exactly from the word-level PTB. Contiguous streams for "
        "truncated BPTT. Metric: bits per character. Example: 'the_company_sai' -> next "
        "character 'd'."
    )

    def __init__(
        self, path=None, *, seq_len: int = 100, download: bool = True, verify: bool = True
    ):
        symbols, sources = {}, {}
        for split in SPLITS:
            text, sources[split] = read_ptb_chars(split, path, download=download, verify=verify)
            symbols[split] = [s for s in text.split(" ") if s]
            if not symbols[split]:
                raise ValueError(f"ptb_char {split} is empty; expected space-separated symbols")
            if any(len(s) != 1 for s in symbols[split]):
                raise ValueError(
                    f"ptb_char {split} is malformed: expected single characters separated by "
                    f"spaces, found {next(s for s in symbols[split] if len(s) != 1)!r}"
                )
        vocab = Vocabulary(sorted(set(symbols["train"])))
        splits = {s: vocab.encode("".join(symbols[s])) for s in SPLITS}
        self.setup(vocab, splits, seq_len, {"source": sources})
