"""Trials on shared storage: the layer under ``rnnlab study`` and ``rnnlab search``.

    >>> from rnnlab.trials import open_storage, run_trials
    >>> storage = open_storage(None, "studies/demo")          # journal file, no server
    >>> run_trials(storage, "demo", 10, objective, seed=0)    # exactly 10, with any workers

``storage.py`` names and opens storages (embedded journal file by default, PostgreSQL for many
machines); ``studies.py`` opens a study, created once and checked against the identity it
was created with (``open_study``, shared by the study and the search); ``pool.py`` runs
exactly N trials of a study from any number of processes, with leases that re-run a killed
worker's trial and a sampler keyed on the trial, so results do not depend on which worker ran
what; ``placement.py`` gives each worker process its GPU (one worker per visible GPU). See
docs/trials.md.
"""

from rnnlab.trials.placement import place, placement
from rnnlab.trials.pool import (
    SeededSampler,
    run_trials,
    run_workers,
    settled,
    study_counts,
    trial_index,
    trial_seed,
)
from rnnlab.trials.storage import StorageError, describe_storage, open_storage
from rnnlab.trials.studies import StudyMismatch, check_study, differences, open_study

__all__ = [
    "SeededSampler",
    "StorageError",
    "StudyMismatch",
    "check_study",
    "describe_storage",
    "differences",
    "open_storage",
    "open_study",
    "place",
    "placement",
    "run_trials",
    "run_workers",
    "settled",
    "study_counts",
    "trial_index",
    "trial_seed",
]
