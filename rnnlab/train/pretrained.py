"""Loading a trained model back from its run directory."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

from rnnlab.tasks import factory_options
from rnnlab.tasks.base import Tokens
from rnnlab.tasks.vocab import Vocabulary
from rnnlab.train import checkpoint as ckpt
from rnnlab.train.model import SequenceModel, model_for
from rnnlab.train.run import BEST, CHECKPOINT, TASK, VOCAB, RunDir
from rnnlab.train.trainer import build, seed_everything

WHICH = ("best", "last")

# The kind of model each command that decodes a run needs (`rnnlab evaluate` reads every kind).
NEEDS = {"translate": "translation", "transcribe": "speech", "sample": "language model"}
A_MODEL = {"translation": "a translation model", "speech": "a speech model",
           "language model": "a language model", "other": "a model"}


def task_kind(name: str) -> str:
    """What a model of task ``name`` does: ``"translation"`` (``source=target`` pairs),
    ``"speech"`` (CTC transcription of recordings), ``"language model"`` (tokens in, the next
    token out) or ``"other"`` (classification, music, timing)."""
    from rnnlab.tasks import REGISTRY
    from rnnlab.tasks.stream import StreamTask
    from rnnlab.tasks.synthetic import TokenSequenceTask

    factory = REGISTRY.get(name)
    if getattr(factory, "pairs", False):
        return "translation"
    if hasattr(factory, "transcribe_signal"):
        return "speech"
    if isinstance(factory, type) and issubclass(factory, (StreamTask, TokenSequenceTask)):
        return "language model"
    return "other"


def check_kind(run: RunDir, config, command: str) -> None:
    """Refuse, in one line, a run whose task is not of the kind ``command`` needs
    (:data:`NEEDS`), naming the tasks it takes and the command that does take the run. A task
    of no known kind (one registered outside rnnlab) whose run kept a vocabulary (vocab.json:
    tokens in) is taken as a language model."""
    from rnnlab.tasks import names

    need, kind = NEEDS[command], task_kind(config.task.name)
    if kind == "other" and run.file(VOCAB).is_file():
        kind = "language model"
    if kind == need:
        return
    takes = ", ".join(name for name in names() if task_kind(name) == need)
    other = [name for name, wanted in NEEDS.items() if wanted == kind]
    instead = f"`rnnlab {other[0]}` reads this run" if other else \
        "`rnnlab evaluate` scores this run"
    raise ValueError(
        f"{run.path} holds {A_MODEL[kind]} (task {config.task.name!r}); {command} needs "
        f"{A_MODEL[need]} (task {takes}); {instead}"
    )


def _parameters_file(run: RunDir, which: str) -> Path:
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    path = run.file(BEST if which == "best" else CHECKPOINT)
    if which == "best" and not path.is_file():
        path = run.file(CHECKPOINT)
    if not path.is_file():
        raise FileNotFoundError(
            f"{run.path} has no {path.name}: the run wrote no checkpoint yet "
            "(it stopped before its first checkpoint)"
        )
    return path


def _load_parameters(model, path: Path, which: str) -> None:
    payload = ckpt.load(path, ("model",))
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError) as error:
        reason = " ".join(str(error).split())[:200]
        raise ckpt.CheckpointError(
            f"{path} does not fit this run's model ({reason}); it is damaged or from another run"
        ) from None


def load_trained(
    run_dir: str | os.PathLike, which: str = "best", *, data: str | None = None,
    command: str | None = None, download: bool = True,
):
    """``(config, task, model)`` of a run, with the ``best`` validated parameters (best.pt;
    falls back to the last ones when the run never validated) or the ``last`` ones
    (checkpoint.pt). The model is in eval mode.

    The task's data must be the data the run was trained on (same sha256, recorded in
    task.json); ``data`` names another file (or folder) to evaluate on instead, on purpose.
    ``command`` (a key of :data:`NEEDS`) refuses a run of another kind before the task is made;
    ``download=False`` keeps a task that would download its data from doing so.
    """
    run = RunDir(run_dir)
    config = run.config()
    if command is not None:
        check_kind(run, config, command)
    path = _parameters_file(run, which)
    if not download and "download" in factory_options(config.task.name):
        config = copy.deepcopy(config)
        config.task.options["download"] = False
    if data is not None:
        config = copy.deepcopy(config)
        config.task.options["path"] = str(Path(data).expanduser().resolve())
        if run.file(VOCAB).is_file() and "vocab" in factory_options(config.task.name):
            config.task.options["vocab"] = run.read_json(VOCAB).get("symbols")
    task, model = build(config)
    recorded = run.read_json(TASK) if run.file(TASK).is_file() else {}
    old, new = recorded.get("sha256"), getattr(task, "info", {}).get("sha256")
    if old and new and old != new:
        if data is None:
            raise ValueError(
                f"the data of task {task.name!r} changed since {run.path} was trained: "
                f"{task.info.get('source', 'the data')} has sha256 {new[:16]}..., the run "
                f"recorded {old[:16]}.... Restore the original data, or evaluate on other data "
                "on purpose with --data PATH"
            )
        print(f"note: evaluating on {data}, not the data the run was trained on "
              f"(sha256 {new[:16]}... vs {old[:16]}...)", file=sys.stderr)
    _load_parameters(model, path, which)
    model.eval()
    return config, task, model


class CarriedVocabulary:
    """What sampling needs of a language-model task, read from a run's vocab.json: the spaces,
    ``encode``, ``decode`` and ``vocabulary`` (no corpus)."""

    def __init__(self, name: str, symbols: list[str], words: bool):
        self.name = name
        self.vocabulary = Vocabulary(symbols, words=words)
        self.vocab = self.vocabulary.symbols
        self.input = self.output = Tokens(len(symbols))

    def encode(self, text: str):
        return self.vocabulary.encode(text)

    def decode(self, ids) -> str:
        return self.vocabulary.decode(ids)


def load_for_sampling(run_dir: str | os.PathLike, which: str = "best"):
    """``(task, model)`` for sampling: from the run directory alone when it holds vocab.json
    (the corpus may have moved or gone), else by rebuilding the task."""
    run = RunDir(run_dir)
    config = run.config()
    check_kind(run, config, "sample")
    if not run.file(VOCAB).is_file():
        _, task, model = load_trained(run_dir, which)
        return task, model
    path = _parameters_file(run, which)
    saved = run.read_json(VOCAB)
    symbols, words = saved.get("symbols"), saved.get("words", False)
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise ValueError(f"{run.file(VOCAB)} is damaged: expected a list of symbols")
    try:
        task = CarriedVocabulary(config.task.name, symbols, bool(words))
    except ValueError as error:
        raise ValueError(f"{run.file(VOCAB)} is damaged: {error}") from None
    seed_everything(config.train.seed)
    model = SequenceModel(task.input, task.output, config.model, causal=True, task_name=task.name)
    _load_parameters(model, path, which)
    model.eval()
    return task, model


def load_for_transcription(run_dir: str | os.PathLike, which: str = "best"):
    """``(task, model)`` for transcribing, from the run directory alone: the feature statistics
    come from its task.json (:class:`rnnlab.tasks.speech.Transcriber`), so no FSDD data is read
    or downloaded. A run made before runs kept them computes them from the data when it is at
    hand (never downloading it), else is refused, saying so."""
    from rnnlab.tasks.speech import Transcriber

    run = RunDir(run_dir)
    config = run.config()
    check_kind(run, config, "transcribe")
    path = _parameters_file(run, which)
    info = run.read_json(TASK) if run.file(TASK).is_file() else {}
    if "features" not in info:  # an older run: the statistics come from the data, if it is here
        try:
            _, task, model = load_trained(run_dir, which, download=False)
        except FileNotFoundError:
            raise ValueError(
                f"{run.file(TASK)} holds no feature statistics ({run.path} was trained before "
                "run directories kept them) and the FSDD data they come from is not here: set "
                "RNNLAB_DATA to the folder holding fsdd/, or train the run again"
            ) from None
        return task, model
    task = Transcriber.from_info(info, str(run.file(TASK)))
    seed_everything(config.train.seed)
    model = model_for(task, config.model)
    _load_parameters(model, path, which)
    model.eval()
    return task, model
