"""Trials on shared storage: the layer under ``rnnlab study`` and ``rnnlab search``.

    >>> from rnnlab.trials import open_storage, run_trials
    >>> storage = open_storage(None, "studies/demo")          # journal file, no server
    >>> run_trials(storage, "demo", 10, objective, seed=0)    # exactly 10, with any workers

``storage.py`` names and opens storages (embedded journal file by default, PostgreSQL for many
machines); ``pool.py`` runs exactly N trials of a study from any number of processes, with
leases that re-run a killed worker's trial and a sampler keyed on the trial, so results do not
depend on which worker ran what. See docs/trials.md.
"""

from rnnlab.trials.pool import (
    SeededSampler,
    open_study,
    run_trials,
    run_workers,
    settled,
    study_counts,
    trial_index,
    trial_seed,
)
from rnnlab.trials.storage import StorageError, describe_storage, open_storage

__all__ = [
    "SeededSampler",
    "StorageError",
    "describe_storage",
    "open_storage",
    "open_study",
    "run_trials",
    "run_workers",
    "settled",
    "study_counts",
    "trial_index",
    "trial_seed",
]
