"""Named studies: what ``rnnlab study run --preset NAME`` runs when no option says otherwise.

A preset fixes the study's name, tasks, cells, trial count, workers, and the trials' budget in
**epochs** with early stopping (never seconds: a budget in seconds trains less on a busy
machine, so a study's result would depend on what else ran beside it). Options given on the
command line override the preset's values, so a preset can be tried at a tiny size::

    rnnlab study run --preset greff-jsb                        # the full study (hours)
    rnnlab study run --preset greff-jsb --trials 2 --epochs 1  # the same pipeline, seconds

``quick`` is the default of ``rnnlab study run``: JSB, the nine cells, 12 trials of at most 6
epochs (patience 3): 108 trials × (6 × 0.88 s + 1.2 s) / 2 workers ≈ 6 minutes by the
measurement below, about 10 on a busier machine.

**greff-jsb**: Greff et al.'s study of the vanilla LSTM and its eight variants on JSB Chorales
at a size that two cores finish in an afternoon: 30 trials per cell from the paper's space
(hidden size log-uniform [20, 200], learning rate log-uniform [1e-6, 1e-2], momentum 1 − m with
m log-uniform [0.01, 1], input noise std uniform [0, 1]), one layer, SGD with Nesterov
momentum, one sequence per update, at most 100 epochs, early stopping after 10 epochs without
a better validation loss, 2 workers.

Measured cost of one trial (one thread, on this project's 2-core development machine
(AMD EPYC) with one other single-threaded job running; seconds per epoch = the trainer's own
``train_seconds`` over 5 epochs / 5, an epoch being 229 updates of one chorale plus one
validation; lr 1e-3, momentum 0.9)::

    hidden size        20      63     200
    peephole (V)     0.51    0.63    2.01   s/epoch
    nfg              0.46    0.56    1.66
    fgr              0.63    0.96    5.62

and about 1.2 s a trial for loading JSB, building the model and the final evaluation of valid
and test. The cost grows like a + b·H² (fitted to the table: V a = 0.45 s, b = 3.9e-5 s; NFG
0.45 s, 3.0e-5 s; FGR 0.58 s, 1.26e-4 s); over the paper's log-uniform H in [20, 200],
E[H²] = (200² − 20²) / (2 ln 10) ≈ 8,600, so an epoch costs on average 0.79 s for V (and at
most that for NIG, NOG, NIAF, NOAF, NP and CIFG, which drop or share weights), 0.71 s for NFG and
1.66 s for FGR: **0.87 s per epoch averaged over the nine cells** (an upper bound).

Sizing: 9 cells × 30 trials = 270 trials on 2 workers is 135 trials per worker. If every
trial ran the whole 100 epochs, a worker would need 135 × (100 × 0.87 + 1.2) s = 11,900 s =
3.3 h; trials whose learning rate is high enough to converge stop early (a vanilla LSTM of 63
units at lr 1e-2, momentum 0.9 stopped after 56 epochs at test NLL 8.52), so the expected wall
time is about 3 h, and at most 3.3 h on two free cores. Other jobs on the machine stretch it
in proportion (a check run under a load average of about 6 trained V at H = 97 at 2.2 s an
epoch, 2.6 times the model's 0.82 s): the first progress lines tell. The slowest trials are
FGR at H near 200 (100 × 5.6 s ≈ 9.4 min): the last one bounds the tail. Measured on
2026-12-07: about 55 trials an hour with two workers on the development machine (other work
on it at times), about 5 h in all: most trials run all 100 epochs, and a batch-1 update costs
more than the per-epoch estimate above.

What this size can and cannot show is in docs/study.md ("The greff-jsb preset").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rnnlab.study.space import GREFF_CELLS, PAPER_SETTINGS


@dataclass(frozen=True)
class Preset:
    """A named study: the defaults ``rnnlab study run --preset NAME`` gives its options."""

    name: str  # the study name (Optuna studies NAME.TASK.CELL, folder studies/NAME)
    summary: str  # one line for --help
    tasks: tuple[str, ...] = ("jsb",)
    cells: tuple[str, ...] = GREFF_CELLS
    trials: int = 12  # settled trials per (task, cell)
    workers: int = 2  # worker processes on this machine
    settings: dict = field(default_factory=dict)  # fixed trial settings over PAPER_SETTINGS

    def all_settings(self) -> dict:
        """The fixed settings of every trial: the paper's, then the preset's."""
        return {**PAPER_SETTINGS, **self.settings}


PRESETS = {
    "quick": Preset(
        name="greff",
        summary="JSB, the nine cells, 12 trials of at most 6 epochs each (about 10 minutes "
        "on 2 cores)",
        trials=12,
        settings={"train.epochs": 6, "train.patience": 3},
    ),
    "greff-jsb": Preset(
        name="greff-jsb",
        summary="Greff et al.'s study on JSB Chorales: 30 trials per cell, at most 100 "
        "epochs, patience 10 (about 5 hours on 2 cores)",
        trials=30,
        settings={"train.epochs": 100, "train.patience": 10},
    ),
}
DEFAULT_PRESET = "quick"


def preset(name: str | None) -> Preset:
    """The preset called ``name`` (None: the default); ValueError naming the presets."""
    name = DEFAULT_PRESET if name is None else name
    if name not in PRESETS:
        raise ValueError(f"unknown study preset {name!r}; the presets are "
                         f"{', '.join(PRESETS)}")
    return PRESETS[name]
