"""A trial worker run as its own process by the pool tests (so it can be SIGKILLed).

    python trials_worker.py STORAGE_URL STUDY N_TRIALS SLEEP_SECONDS [LEASE_SECONDS]

Objective: x ~ U(-1, 1) (sampled), records the worker's pid, sleeps, returns x².
"""

import os
import sys
import time

from rnnlab.trials import open_storage, run_trials


def objective(trial, sleep_seconds):
    x = trial.suggest_float("x", -1.0, 1.0)
    trial.set_user_attr("pid", os.getpid())
    time.sleep(sleep_seconds)
    return x * x


def work(url, study, n_trials, sleep_seconds, lease_seconds=2.0):
    """Top-level (picklable) worker for run_workers."""
    storage = open_storage(url)
    run_trials(storage, study, n_trials, lambda t: objective(t, sleep_seconds),
               seed=7, lease_seconds=lease_seconds, poll_seconds=0.2)


if __name__ == "__main__":
    url, study, n, sleep = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    lease = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
    work(url, study, n, sleep, lease)
