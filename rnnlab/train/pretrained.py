"""Loading a trained model back from its run directory."""

from __future__ import annotations

import os

from rnnlab.train import checkpoint as ckpt
from rnnlab.train.run import BEST, CHECKPOINT, RunDir
from rnnlab.train.trainer import build

WHICH = ("best", "last")


def load_trained(run_dir: str | os.PathLike, which: str = "best"):
    """``(config, task, model)`` of a run, with the ``best`` validated parameters (best.pt;
    falls back to the last ones when the run never validated) or the ``last`` ones
    (checkpoint.pt). The model is in eval mode."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    run = RunDir(run_dir)
    config = run.config()
    path = run.file(BEST if which == "best" else CHECKPOINT)
    if which == "best" and not path.is_file():
        path = run.file(CHECKPOINT)
    if not path.is_file():
        raise FileNotFoundError(
            f"{run.path} has no {path.name}: the run wrote no checkpoint yet "
            "(it stopped before its first checkpoint)"
        )
    task, model = build(config)
    payload = ckpt.load(path)
    model.load_state_dict(payload["model"])
    model.eval()
    return config, task, model
