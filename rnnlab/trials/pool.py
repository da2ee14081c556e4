"""Run exactly N trials of a study, from any number of processes and machines at once.

Every worker runs the same loop over the shared storage::

    while fewer than N trials are settled:
        re-queue the trials whose worker died (lease expired)
        if settled + live running < N: ask a trial (re-queued ones first), run it, tell
        else: wait for the running ones to settle or go stale

**Settled** = COMPLETE or PRUNED, or FAIL raised by the objective itself (a deterministic
failure is recorded, not retried). **Leases**: while a trial runs, a thread of its worker writes
``lease_until`` (now + ``lease_seconds``) on the trial every ``lease_seconds / 4``. A RUNNING
trial whose lease has passed belongs to a dead worker (SIGKILL, lost machine): the first worker
to see it marks it FAIL (``stale``) and enqueues a re-run with the same parameters and index.
This one mechanism serves every storage; Optuna's own heartbeat exists only for RDB storages
and only inside ``study.optimize``, which cannot stop at an exact count across workers.
Leases compare wall clocks: machines sharing a database need clocks synchronised to well under
``lease_seconds``.

**Exactly N**: a worker asks a trial first and then checks it: if the claims (settled + live
running trials) that come before it already reach N, or a claim with the same index precedes
it (two workers re-queued the same stale trial), it is marked FAIL (``surplus``) unrun.

**Reproducible trials**: each trial carries ``index`` (its number; a re-run keeps the index of
the attempt it replaces, so the indices of a study are unique and stable but need not be
0 … N−1) and ``seed`` (derived from the study seed and the index), and the study
samples with :class:`SeededSampler`, so a parameter depends only on (seed, index, name) — not on
which worker drew it or in what order.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from rnnlab.trials.studies import open_study

_FINISHED_BY_OBJECTIVE = "error"  # user attr of a FAIL raised by the objective (settled)


def _derive(*parts: object) -> int:
    """A 32-bit seed from the parts (stable across processes, unlike hash())."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


class SeededSampler(optuna.samplers.BaseSampler):
    """Independent random sampling where each value depends on (seed, trial index, name) only.

    Optuna's ``RandomSampler(seed)`` draws from one generator per process, so two workers with
    the same seed would draw the same settings; this sampler keys every draw on the trial.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        index = trial.user_attrs.get("index", trial.number)
        draw = optuna.samplers.RandomSampler(seed=_derive(self.seed, index, param_name))
        return draw.sample_independent(study, trial, param_name, param_distribution)


def trial_index(trial: FrozenTrial) -> int | None:
    """The trial's stable index (re-runs keep the index of the attempt they replace)."""
    return trial.user_attrs.get("index")


def trial_seed(trial: FrozenTrial) -> int | None:
    """The seed the trial's objective was given."""
    return trial.user_attrs.get("seed")


def settled(trial: FrozenTrial) -> bool:
    """Finished for good: complete, pruned, or failed by its own objective."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and _FINISHED_BY_OBJECTIVE in trial.user_attrs


def _lease_deadline(trial: FrozenTrial, lease_seconds: float) -> float:
    lease = trial.user_attrs.get("lease_until")
    if lease is not None:
        return float(lease)
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    return started + lease_seconds  # asked, lease not written yet


def _live(trial: FrozenTrial, lease_seconds: float, now: float) -> bool:
    return trial.state == TrialState.RUNNING and _lease_deadline(trial, lease_seconds) >= now


def study_counts(storage, study_name: str, lease_seconds: float = 60.0) -> dict[str, int]:
    """Trials of the study by condition: complete, failed (by the objective), running (live),
    stale (running, lease expired), waiting (queued re-runs), settled; all 0 before the study
    exists (its first worker has not started yet)."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
    except KeyError:
        trials = []
    now = time.time()
    running = [t for t in trials if t.state == TrialState.RUNNING]
    return {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "failed": sum(settled(t) and t.state == TrialState.FAIL for t in trials),
        "running": sum(_live(t, lease_seconds, now) for t in running),
        "stale": sum(not _live(t, lease_seconds, now) for t in running),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
        "settled": sum(settled(t) for t in trials),
    }


def _mark(storage, trial_id: int, **attrs) -> bool:
    """Mark a running trial FAIL with user attrs; False if it had already finished."""
    try:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except RuntimeError:  # UpdateFinishedTrialError: another worker got there first
        return False


def _requeue(study: optuna.Study, trial: FrozenTrial, reason: str, seed: int) -> None:
    """Fail a running trial for ``reason`` and queue a re-run with its parameters and index.

    A trial whose worker died between asking it and writing its index has run nothing and
    drawn nothing: it is only failed, and a fresh trial takes its place (a re-run queued with
    no index would reach the objective without a seed). One whose worker died between writing
    the index and the seed gets the seed it would have had (``seed``: the study's).
    """
    index = trial_index(trial)
    if _mark(study._storage, trial._trial_id, **{reason: True}) and index is not None:
        own = trial_seed(trial)
        attrs = {"index": index, "seed": _derive(seed, index) if own is None else own,
                 "rerun_of": trial.number}
        study.enqueue_trial(dict(trial.params), user_attrs=attrs)


class _Lease:
    """Refreshes ``lease_until`` on a running trial from a background thread."""

    def __init__(self, storage, trial_id: int, lease_seconds: float):
        self.storage, self.trial_id, self.lease_seconds = storage, trial_id, lease_seconds
        self._stop = threading.Event()
        self.renew()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rnnlab-lease")
        self._thread.start()

    def renew(self) -> None:
        until = time.time() + self.lease_seconds
        self.storage.set_trial_user_attr(self.trial_id, "lease_until", until)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self.renew()
            except Exception:  # the trial was finished (or declared stale) meanwhile
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _surplus(trials: list[FrozenTrial], mine: FrozenTrial, n_trials: int, lease: float) -> bool:
    """True if ``mine`` would make more than n_trials claims, or repeats an earlier claim."""
    now = time.time()
    before = [
        t for t in trials
        if t.number < mine.number and (settled(t) or _live(t, lease, now))
    ]
    index = trial_index(mine)
    return len(before) >= n_trials or any(trial_index(t) == index for t in before)


def _best(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no complete trial yet
        return None


def run_trials(
    storage,
    study_name: str,
    n_trials: int,
    objective: Callable[[optuna.Trial], float],
    *,
    direction: str = "minimize",
    seed: int = 0,
    lease_seconds: float = 60.0,
    progress: Callable[[int, int, float | None], None] | None = None,
    stop_when: Callable[[], bool] | None = None,
    poll_seconds: float | None = None,
    metric_name: str | None = None,
    study_attrs: dict | None = None,
) -> int:
    """Work on ``study_name`` until ``n_trials`` of its trials are settled; see the module doc.

    ``objective(trial) -> float`` reads ``trial.user_attrs["index"]`` and ``["seed"]``.
    ``metric_name`` and ``study_attrs`` are given to the study if this call creates it
    (:func:`open_study`). Returns the number of trials this process completed.
    """
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    poll = poll_seconds if poll_seconds is not None else min(5.0, lease_seconds / 4)
    study = open_study(storage, study_name, direction=direction, sampler=SeededSampler(seed),
                       metric_name=metric_name, attrs=study_attrs)
    # the study's own storage object (Optuna wraps an RDBStorage in a cache): every read and
    # write below goes through it, so this worker never sees its own writes out of date
    store = study._storage
    completed = 0
    while stop_when is None or not stop_when():
        trials = study.get_trials(deepcopy=False)
        now = time.time()
        for stale in [t for t in trials if t.state == TrialState.RUNNING]:
            if not _live(stale, lease_seconds, now):
                _requeue(study, stale, "stale", seed)
        n_settled = sum(settled(t) for t in trials)
        if n_settled >= n_trials:
            break
        if n_settled + sum(_live(t, lease_seconds, now) for t in trials) >= n_trials:
            time.sleep(poll)  # the remaining trials run elsewhere: wait for them to settle
            continue
        trial = study.ask()
        frozen = store.get_trial(trial._trial_id)
        if "index" not in frozen.user_attrs:  # a fresh trial, not a queued re-run
            trial.set_user_attr("index", trial.number)
            trial.set_user_attr("seed", _derive(seed, trial.number))
        lease = _Lease(store, trial._trial_id, lease_seconds)
        frozen = store.get_trial(trial._trial_id)
        if _surplus(study.get_trials(deepcopy=False), frozen, n_trials, lease_seconds):
            lease.stop()
            _mark(store, trial._trial_id, surplus=True)
            continue
        completed += _run_one(study, trial, objective, lease, seed)
        if progress is not None:
            progress(sum(settled(t) for t in study.get_trials(deepcopy=False)), n_trials,
                     _best(study))
    return completed


def _run_one(study: optuna.Study, trial: optuna.Trial, objective, lease: _Lease,
             seed: int) -> int:
    """Run the objective on a claimed trial and record its outcome; 1 if it completed."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        lease.stop()
        study.tell(trial, state=TrialState.PRUNED)
        return 0
    except (KeyboardInterrupt, SystemExit):
        lease.stop()
        _requeue(study, study._storage.get_trial(trial._trial_id), "interrupted", seed)
        raise
    except Exception as error:
        lease.stop()
        message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        trial.set_user_attr(_FINISHED_BY_OBJECTIVE, message)
        study.tell(trial, state=TrialState.FAIL)
        return 0
    lease.stop()
    try:
        study.tell(trial, value)
    except RuntimeError:  # declared stale while it ran (lease thread starved): a re-run exists
        return 0
    return 1


def run_workers(
    n_workers: int,
    target: Callable,
    args: tuple = (),
    *,
    watch: Callable[[], None] | None = None,
    poll_seconds: float = 1.0,
    gpus: Sequence[str | None] | None = None,
) -> None:
    """``target(*args)`` in ``n_workers`` processes (1: in this one), ``watch()`` meanwhile.

    Workers are started with "spawn" (no forked torch thread pools); ``target`` must be a
    top-level function and ``args`` picklable. ``gpus`` (one entry per worker, from
    :func:`rnnlab.trials.placement.placement`) pins worker k to a GPU: it starts with
    ``CUDA_VISIBLE_DEVICES=gpus[k]`` and sees that one GPU as ``cuda``; a None entry, or no
    ``gpus``, leaves its environment alone. A single worker runs here, where ``cuda`` is this
    process's first visible GPU, which is ``gpus[0]``. Raises RuntimeError naming the workers
    that exited with an error or were killed; the others have finished their trials by then.
    """
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1, got {n_workers}")
    if gpus is not None and len(gpus) != n_workers:
        raise ValueError(f"gpus must give one entry per worker: {n_workers} workers, "
                         f"{len(gpus)} entries")
    if n_workers == 1:
        target(*args)
        return
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=target, args=args, name=f"rnnlab-worker-{i}")
        for i in range(n_workers)
    ]
    for i, process in enumerate(processes):
        with _environment("CUDA_VISIBLE_DEVICES", None if gpus is None else gpus[i]):
            process.start()
    try:
        while any(p.is_alive() for p in processes):
            if watch is not None:
                watch()
            for process in processes:
                process.join(timeout=poll_seconds / n_workers)
        if watch is not None:
            watch()
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()
        raise
    failed = [f"{p.name} (exit code {p.exitcode})" for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError("worker(s) failed: " + ", ".join(failed))


@contextlib.contextmanager
def _environment(name: str, value: str | None):
    """``os.environ[name] = value`` while a worker process starts (None: left alone).

    A started process inherits this environment (spawn: the new interpreter's; fork: the
    copy's), so the variable holds before the worker imports anything, then it is restored.
    """
    if value is None:
        yield
        return
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before
