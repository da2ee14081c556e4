"""Greff et al.'s LSTM variant study on Optuna storage (DESIGN.md layer 7).

    rnnlab study run                      # the default study: jsb, 9 cells, a few minutes
    rnnlab study run --preset greff-jsb   # Greff's study, 30 trials per cell (~5 h, 2 cores)
    rnnlab study run --trials 200 ...     # the paper's scale; add --workers / machines
    rnnlab study report                   # box plots, Welch tests, fANOVA, report.md
    rnnlab study dashboard                # optuna-dashboard on 127.0.0.1

``space.py``: the hyperparameter space and fixed settings; ``presets.py``: named studies and
their sizing (budgets in epochs, never seconds); ``objective.py``: one trial (the
ordinary trainer); ``runner.py``: studies on a storage, workers, progress; ``analysis.py``:
loading and statistics; ``fanova.py``: main effects and pairwise interactions (Hutter et al.
2014); ``report.py``: the report files; ``dashboard.py``: the live view. See docs/study.md.
"""

from rnnlab.study.analysis import CellTrials, StudyNotFound, importance, load, summarize, welch
from rnnlab.study.fanova import FanovaResult, fanova, fanova_forest
from rnnlab.study.presets import PRESETS, Preset, preset
from rnnlab.study.runner import StudyError, StudyRun, run_study, study_name
from rnnlab.study.space import GREFF_CELLS, PAPER_SETTINGS, PAPER_SPACE, StudySpace, load_space

__all__ = [
    "GREFF_CELLS",
    "PAPER_SETTINGS",
    "PAPER_SPACE",
    "PRESETS",
    "CellTrials",
    "FanovaResult",
    "Preset",
    "StudyError",
    "StudyNotFound",
    "StudyRun",
    "StudySpace",
    "fanova",
    "fanova_forest",
    "importance",
    "load",
    "load_space",
    "preset",
    "run_study",
    "study_name",
    "summarize",
    "welch",
]
