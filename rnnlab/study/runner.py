"""Running a study: one Optuna study per (task, cell), filled to the requested trial count.

::

    from rnnlab.study import StudyRun, run_study
    run_study(StudyRun(name="greff", tasks=("jsb",), trials=200, workers=4))

Each (task, cell) pair is the Optuna study ``<name>.<task>.<cell>`` on one storage (the journal
file ``<out>/trials.journal`` by default, or any URL rnnlab.trials.open_storage accepts). It is
created with its objective's name (``valid nll``: the validation metric, what every trial's
value is) and user attributes that record the task, the cell, the variant, the objective and
the *fingerprint* of the space (ranges, fixed settings, seed); a later run under the same name
must have the same fingerprint, so that one study never mixes trials from two distributions,
and a refused run writes nothing. The trial count is a target: running again
tops the studies up, keeping what is done; a trial whose worker died is re-run by the trials
layer (rnnlab.trials: leases), so every study ends with exactly the requested settled trials
however many processes, on however many machines, work on it at once.

A worker goes through the studies in order, first skipping any whose remaining trials are all
running elsewhere, then waiting on each until it is settled, so workers spread over studies
instead of queueing behind the last trial of one.

Trials train on ``device`` (cpu, cuda or auto, as ``run.device``). On CUDA the default is one
worker per visible GPU, and worker k sees only GPU k (round-robin when there are more workers
than GPUs; rnnlab.trials.placement). Where a trial trains is not part of the study: a study
begun on CPUs can be topped up on GPUs.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rnnlab.study.objective import TrialObjective
from rnnlab.study.space import (
    GREFF_CELLS,
    PAPER_NAMES,
    VANILLA,
    VARIANT_MEANINGS,
    StudySpace,
    load_space,
)

if TYPE_CHECKING:
    from rnnlab.trials import StudyMismatch


class StudyError(ValueError):
    """A study that cannot be run or read as asked; the message says what to do."""


def study_name(name: str, task: str, cell: str) -> str:
    """The Optuna study of one (task, cell) pair: ``<name>.<task>.<cell>``."""
    return f"{name}.{task}.{cell}"


@dataclass
class StudyRun:
    """What ``rnnlab study run`` is asked to do (defaults: the 10-minute default study)."""

    name: str = "greff"  # prefix of the Optuna study names
    tasks: tuple[str, ...] = ("jsb",)  # rnnlab task names
    cells: tuple[str, ...] = GREFF_CELLS  # rnnlab cell names; the first vanilla is "peephole"
    trials: int = 12  # settled trials wanted per (task, cell)
    storage: str | None = None  # Optuna storage URL; None: <out>/trials.journal
    out: str | None = None  # study folder (journal, report); None: studies/<name>
    workers: int | None = None  # processes on this machine; None: one per GPU on CUDA, else 1
    device: str = "cpu"  # where trials train: cpu | cuda | auto (cuda: worker k on GPU k)
    seed: int = 0  # sampling seed (each trial's parameters and training seed derive from it)
    space: StudySpace = field(default_factory=lambda: load_space(None))
    keep_runs: bool = False  # keep each trial's run directory under <out>/runs
    lease_seconds: float = 60.0  # a running trial silent this long is re-run elsewhere
    threads: int = 1  # torch threads per worker
    quiet: bool = False  # no progress bar or lines

    @property
    def directory(self) -> str:
        return self.out or os.path.join("studies", self.name)

    def studies(self) -> list[tuple[str, str, str]]:
        """(study name, task, cell) of every pair, tasks outermost."""
        return [(study_name(self.name, t, c), t, c) for t in self.tasks for c in self.cells]

    def fingerprint(self) -> dict:
        return {**self.space.fingerprint(), "seed": self.seed}


def check_names(tasks, cells) -> None:
    """Unknown task or cell names -> StudyError listing the known ones."""
    import rnnlab.cells
    import rnnlab.tasks

    for task in tasks:
        if task not in rnnlab.tasks.names():
            raise StudyError(
                f"unknown task {task!r}; the study's tasks are jsb and nottingham, and any of: "
                f"{', '.join(rnnlab.tasks.names())}"
            )
    for cell in cells:
        if cell not in rnnlab.cells.names():
            raise StudyError(
                f"unknown cell {cell!r}; Greff's cells are {', '.join(GREFF_CELLS)} (peephole "
                f"is the vanilla LSTM, V); every "
                f"cell: {', '.join(rnnlab.cells.names())}"
            )


def prepare(run: StudyRun, storage) -> dict[str, str]:
    """Create (or check) every study of ``run``; returns the optimisation direction per task.

    Every existing study is checked before anything is written, so a refused run leaves the
    storage as it was: a study that exists with another fingerprint or direction raises
    StudyError (the name clash). A study created here is given its objective's name
    (``valid <metric>``, what optuna-dashboard shows) and user attributes that say what it is
    (task, cell, variant, objective, space); an existing one keeps its own.
    """
    import json

    from rnnlab.train.trainer import make_task
    from rnnlab.trials import StudyMismatch, check_study, open_study

    check_names(run.tasks, run.cells)
    directions, metrics = {}, {}
    for task in run.tasks:
        try:  # every setting must be a valid config override for this task
            config = run.space.trial_config(run.cells[0], task, run.space.lowest())
        except ValueError as error:
            raise StudyError(f"study settings for task {task}: {error}") from None
        metric = make_task(config).metric()
        directions[task] = "maximize" if metric.higher_is_better else "minimize"
        metrics[task] = metric.primary
    fingerprint = json.loads(json.dumps(run.fingerprint()))  # as stored: plain JSON types
    attrs = {name: study_attrs(run, task, cell, metrics[task], directions[task], fingerprint)
             for name, task, cell in run.studies()}
    try:
        for name, task, _ in run.studies():  # every study checked before any is written
            check_study(storage, name, direction=directions[task], identity="space",
                        attrs=attrs[name])
        for name, task, _ in run.studies():
            study = open_study(storage, name, direction=directions[task],
                               metric_name=f"valid {metrics[task]}", attrs=attrs[name],
                               identity="space")
            if study.user_attrs.get("requested") != run.trials:
                study.set_user_attr("requested", run.trials)
    except StudyMismatch as error:
        raise StudyError(_mismatch(error, task, directions[task])) from None
    return directions


def _mismatch(error: StudyMismatch, task: str, direction: str) -> str:
    """What a run that asks for another study than the stored one is told to do."""
    name = error.name
    if error.stored_direction is not None:
        return (f"study {name} exists with direction {error.stored_direction}, but task {task} "
                f"is to {direction}; pick a new --name")
    path, old, new = error.differences[0]
    return (f"study {name} already exists in this storage with a different search space or "
            f"settings ({path}: {old!r} -> {new!r}); pick a new --name, or run with the "
            "settings it was made with")


def study_attrs(run: StudyRun, task: str, cell: str, metric: str, direction: str,
                fingerprint: dict) -> dict:
    """The user attributes a new study is created with: enough to read it without the code."""
    return {
        "name": run.name,
        "task": task,
        "cell": cell,
        "variant": f"{PAPER_NAMES.get(cell, cell)}: {VARIANT_MEANINGS.get(cell, 'rnnlab cell')}",
        "vanilla": VANILLA,
        "objective": f"valid {metric} ({direction}): the task's primary metric on the "
                     "validation set, at the best validated parameters",
        "seed": run.seed,
        "space": fingerprint,
    }


@dataclass
class _WorkerJob:
    """Everything a worker process needs (picklable)."""

    run: StudyRun
    directions: dict[str, str]


def _work(job: _WorkerJob, progress=None) -> None:
    """One worker: fill every study of the run (see the module docstring for the order)."""
    import optuna
    import torch

    from rnnlab.trials import open_storage, run_trials, study_counts

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says enough
    run = job.run
    torch.set_num_threads(run.threads)
    storage = open_storage(run.storage, run.directory)
    keep = os.path.join(run.directory, "runs") if run.keep_runs else None

    def all_claimed(name):
        # the rest of this study is running in other workers: move on to another study
        counts = study_counts(storage, name, run.lease_seconds)
        return counts["settled"] + counts["running"] >= run.trials

    for waiting in (False, True):
        for name, task, cell in run.studies():
            objective = TrialObjective(run.space, task, cell, name, keep, run.threads,
                                       run.device)
            run_trials(
                storage, name, run.trials, objective,
                direction=job.directions[task], seed=run.seed,
                lease_seconds=run.lease_seconds,
                # waiting on another worker's last trial: look again every second at most
                poll_seconds=min(1.0, run.lease_seconds / 4),
                progress=progress,
                stop_when=None if waiting else (lambda name=name: all_claimed(name)),
            )


class Watch:
    """The study's progress: a tqdm bar (settled / requested trials over all studies, best
    validation value so far per task) on a terminal, else a line whenever a trial settles."""

    def __init__(self, run: StudyRun, storage, stream=None):
        from tqdm import tqdm

        self.run, self.storage = run, storage
        self.stream = stream if stream is not None else sys.stderr
        self.total = run.trials * len(run.studies())
        self.last = -1
        self.first: int | None = None  # trials settled when this run began
        self.began = time.monotonic()
        self.bar = None
        if not run.quiet and getattr(self.stream, "isatty", lambda: False)():
            self.bar = tqdm(total=self.total, desc=f"study {run.name}", unit="trial",
                            file=self.stream, dynamic_ncols=True)
        self()

    def counts(self) -> tuple[int, dict[str, tuple[float, str]]]:
        import optuna
        from optuna.trial import TrialState

        from rnnlab.trials import settled

        done, best = 0, {}
        for name, task, cell in self.run.studies():
            try:
                study = optuna.load_study(study_name=name, storage=self.storage)
            except KeyError:
                continue
            maximize = study.direction.name == "MAXIMIZE"
            for trial in study.get_trials(deepcopy=False):
                done += settled(trial)
                if trial.state == TrialState.COMPLETE and trial.value is not None:
                    value = trial.value
                    old = best.get(task)
                    if old is None or (value > old[0] if maximize else value < old[0]):
                        best[task] = (value, cell)
        return min(done, self.total), best

    def __call__(self, *_ignored) -> None:
        done, best = self.counts()
        if done == self.last:
            return
        self.last = done
        text = ", ".join(f"{task} {cell} {value:.4g}" for task, (value, cell) in best.items())
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix_str(f"best valid: {text}" if text else "", refresh=False)
            self.bar.refresh()
        elif not self.run.quiet:
            line = f"study {self.run.name}: {done}/{self.total} trials"
            if text:
                line += f", best valid {text}"
            line += self.eta(done)
            print(line, file=self.stream, flush=True)

    def eta(self, done: int) -> str:
        """``, about 2 h 05 min left`` at the rate trials have settled since this run began
        (every worker's, on any machine sharing the storage); empty before the first."""
        if self.first is None:
            self.first = done
        settled = done - self.first
        if settled <= 0 or done >= self.total:
            return ""
        left = (self.total - done) * (time.monotonic() - self.began) / settled
        hours, minutes = divmod(round(left / 60), 60)
        return f", about {hours} h {minutes:02d} min left" if hours else \
            f", about {minutes} min left"

    def close(self) -> None:
        self()
        if self.bar is not None:
            self.bar.close()


def run_study(run: StudyRun, *, stream=None) -> dict:
    """Fill every study of ``run`` to ``run.trials`` settled trials; returns
    ``{"seconds": wall time, "settled": trials settled, "storage": description}``."""
    import optuna

    from rnnlab.trials import describe_storage, open_storage, place, run_workers
    from rnnlab.trials.placement import kind

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if run.trials < 0:
        raise StudyError(f"--trials must be >= 0, got {run.trials}")
    try:  # worker k's GPU; the workers are given the resolved device (cpu or cuda)
        gpus = place(run.workers, run.device)
    except ValueError as error:
        raise StudyError(str(error)) from None
    run = replace(run, workers=len(gpus), device=kind(gpus))
    if not math.isfinite(run.lease_seconds) or run.lease_seconds <= 0:
        raise StudyError(f"lease seconds must be positive, got {run.lease_seconds}")
    check_names(run.tasks, run.cells)
    storage = open_storage(run.storage, run.directory)
    directions = prepare(run, storage)
    started = time.perf_counter()
    watch = Watch(run, storage, stream)
    job = _WorkerJob(run, directions)
    if watch.last >= watch.total:  # every study is already full: start no worker
        watch.close()
        return {"seconds": time.perf_counter() - started, "settled": watch.last,
                "storage": describe_storage(run.storage, run.directory)}
    try:
        if run.workers == 1:
            run_workers(1, _work, (job, watch), gpus=gpus)
        else:
            run_workers(run.workers, _work, (job,), watch=watch, poll_seconds=2.0, gpus=gpus)
    finally:
        watch.close()
    return {
        "seconds": time.perf_counter() - started,
        "settled": watch.last,
        "storage": describe_storage(run.storage, run.directory),
    }
