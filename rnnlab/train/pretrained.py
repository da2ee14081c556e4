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
from rnnlab.train.model import SequenceModel
from rnnlab.train.run import BEST, CHECKPOINT, TASK, VOCAB, RunDir
from rnnlab.train.trainer import build, seed_everything

WHICH = ("best", "last")


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


def load_trained(run_dir: str | os.PathLike, which: str = "best", *, data: str | None = None):
    """``(config, task, model)`` of a run, with the ``best`` validated parameters (best.pt;
    falls back to the last ones when the run never validated) or the ``last`` ones
    (checkpoint.pt). The model is in eval mode.

    The task's data must be the data the run was trained on (same sha256, recorded in
    task.json); ``data`` names another file (or folder) to evaluate on instead, on purpose.
    """
    run = RunDir(run_dir)
    config = run.config()
    path = _parameters_file(run, which)
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
