"""One trial of a study: draw Greff's hyperparameters, train with the ordinary trainer, record.

The trial's value is the task's primary metric on **validation** (what the search selects on,
as in the paper); the test metric and the rest are stored as the trial's user attributes::

    valid, test          primary metric of the best validated parameters (e.g. NLL, nats/frame)
    metric               its name; higher_is_better says which way is good
    parameters           trainable parameter count
    epochs, steps        training done before the stop
    stop                 completed | budget | early_stopped
    wall_seconds         wall time of the whole trial (data, model, training, evaluation)
    train_seconds        time in training steps and validations
    momentum             the momentum used (1 - one_minus_momentum)

The training run goes to a temporary directory that is deleted afterwards unless ``keep_runs``
names a folder (then ``<keep_runs>/<study>/trial-<index>-<number>``).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rnnlab.study.space import StudySpace


@dataclass
class TrialObjective:
    """``objective(trial) -> valid metric`` for one (task, cell) study; picklable."""

    space: StudySpace
    task: str
    cell: str
    study_name: str
    keep_runs: str | None = None  # folder for the trials' run directories; None: discard them
    threads: int = 1  # torch threads per trial (each worker process runs one trial at a time)
    device: str = "cpu"  # run.device of every trial: cpu, or cuda (the worker's one GPU)

    def __call__(self, trial) -> float:
        from rnnlab.train.trainer import train

        started = time.perf_counter()
        sample = self.space.suggest(trial)
        seed = int(trial.user_attrs.get("seed", trial.number))
        index = trial.user_attrs.get("index", trial.number)
        config = self.space.trial_config(self.cell, self.task, sample, seed=seed)
        config.run.quiet = True
        config.run.plots = False
        config.run.threads = self.threads
        config.run.device = self.device
        config.train.checkpoint_every = None
        # a lost trial is re-run whole (its lease expires), never resumed: no checkpoints
        config.train.checkpoints = self.keep_runs is not None
        with contextlib.ExitStack() as stack:
            if self.keep_runs is None:
                root = stack.enter_context(tempfile.TemporaryDirectory(prefix="rnnlab-trial-"))
                config.run.dir = str(Path(root) / "run")
            else:
                config.run.dir = str(
                    Path(self.keep_runs) / self.study_name / f"trial-{index}-{trial.number}"
                )
            # the trainer prints the run directory and a result line; a worker stays quiet
            with contextlib.redirect_stdout(io.StringIO()):
                _, summary = train(config, argv=[])
        primary = summary["primary"]
        attrs = {
            "valid": summary["valid"][primary],
            "test": summary["test"][primary],
            "metric": primary,
            "higher_is_better": summary["higher_is_better"],
            "parameters": summary["parameters"],
            "epochs": summary["epochs"],
            "steps": summary["steps"],
            "stop": summary["status"],
            "train_seconds": summary["train_seconds"],
            "momentum": sample["momentum"],
            "wall_seconds": time.perf_counter() - started,
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return float(attrs["valid"])
