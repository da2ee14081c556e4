"""Reading a study back from its storage, and the statistics of Greff et al.'s analysis.

Each (task, cell) is one Optuna study named ``<name>.<task>.<cell>``; :func:`load` gathers the
complete trials of every such study into :class:`CellTrials` (hyperparameters as sampled, valid
and test metric, parameter count, epochs, wall time). On top:

- :func:`summarize`: per cell count, mean, std, median, quartiles, min / max of the test metric,
  and the same for the best 10% of trials (ranked by **validation**, the selection rule; the paper
  plots the best 10% beside all trials);
- :func:`welch`: each variant against the vanilla LSTM, Welch's unequal-variance t-test on the
  test metric (scipy.stats.ttest_ind with equal_var=False), significant at p < 0.05, over all
  trials and over the best 10%; beside it the **paired** comparison this study's design allows
  (trial i of every cell draws the same hyperparameters, so variant − vanilla per index removes
  the spread the learning rate causes): the median difference and the Wilcoxon signed-rank p;
- :func:`importance`: fANOVA main effects and pairwise interactions (rnnlab.study.fanova) of the
  four hyperparameters on the study's objective — the validation metric, each trial's value,
  the same number optuna-dashboard's importances use — per cell and pooled over a task's cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rnnlab.study.fanova import FanovaResult, fanova
from rnnlab.study.space import GREFF_CELLS, PARAMETERS, VANILLA

ALPHA = 0.05  # significance level of the Welch tests
BEST_FRACTION = 0.1  # the paper's "best 10%"


class StudyNotFound(LookupError):
    """No study (or no complete trial) under the given name in the storage."""


@dataclass
class CellTrials:
    """The complete trials of one (task, cell) study, as arrays (one entry per trial)."""

    study: str
    task: str
    cell: str
    metric: str = "metric"
    higher_is_better: bool = False
    params: dict[str, np.ndarray] = field(default_factory=dict)  # by hyperparameter name
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0))
    test: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parameters: np.ndarray = field(default_factory=lambda: np.zeros(0))
    epochs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wall_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # trial indices
    failed: int = 0  # trials that raised (e.g. diverged), excluded from the statistics
    requested: int | None = None  # the trial count the last run asked for
    space: dict | None = None  # the stored fingerprint of the space

    @property
    def n(self) -> int:
        return len(self.test)

    @property
    def objective(self) -> str:
        """The name of the study's objective, each trial's value: ``valid <metric>``."""
        return f"valid {self.metric}"

    def best(self, fraction: float = BEST_FRACTION) -> np.ndarray:
        """Indices of the best ``fraction`` of trials by validation metric (at least one)."""
        k = max(1, int(round(fraction * self.n)))
        order = np.argsort(-self.valid if self.higher_is_better else self.valid, kind="stable")
        return order[:k]


def study_names(storage, name: str) -> list[str]:
    """Names of the studies ``<name>.<task>.<cell>`` in ``storage``, sorted."""
    prefix = f"{name}."
    return sorted(
        s.study_name for s in storage.get_all_studies() if s.study_name.startswith(prefix)
    )


def load(storage, name: str, tasks=None, cells=None) -> dict[str, dict[str, CellTrials]]:
    """``{task: {cell: CellTrials}}`` for every study of ``name`` (optionally only these tasks /
    cells), cells in Greff's order. Raises StudyNotFound when there is none."""
    import optuna
    from optuna.trial import TrialState

    from rnnlab.trials import settled

    found: dict[str, dict[str, CellTrials]] = {}
    for study_name in study_names(storage, name):
        study = optuna.load_study(study_name=study_name, storage=storage)
        attrs = study.user_attrs
        task = attrs.get("task") or study_name[len(name) + 1:].split(".")[0]
        cell = attrs.get("cell") or study_name.rsplit(".", 1)[-1]
        if (tasks and task not in tasks) or (cells and cell not in cells):
            continue
        rows = []
        failed = 0
        for trial in study.get_trials(deepcopy=False):
            if trial.state == TrialState.COMPLETE and "test" in trial.user_attrs:
                rows.append(trial)
            elif trial.state == TrialState.FAIL and settled(trial):
                failed += 1  # raised by the objective (e.g. diverged); not stale or surplus
        result = CellTrials(
            study=study_name, task=task, cell=cell, failed=failed,
            requested=attrs.get("requested"), space=attrs.get("space"),
        )
        if rows:
            first = rows[0].user_attrs
            result.metric = first.get("metric", "metric")
            result.higher_is_better = bool(first.get("higher_is_better", False))
            for hp, (optuna_name, _) in PARAMETERS.items():
                result.params[hp] = np.array([t.params.get(optuna_name, np.nan) for t in rows])
            for key in ("valid", "test", "parameters", "epochs", "wall_seconds"):
                setattr(result, key, np.array([float(t.user_attrs[key]) for t in rows]))
            # the trials layer's index: the same draw in every cell (a re-run keeps its index)
            result.index = np.array([int(t.user_attrs.get("index", t.number)) for t in rows])
        found.setdefault(task, {})[cell] = result
    if not found:
        which = f" (tasks {tasks}, cells {cells})" if tasks or cells else ""
        raise StudyNotFound(
            f"no study named {name}.<task>.<cell>{which} in this storage; run "
            f"`rnnlab study run --name {name}` first or check --name / --storage"
        )
    order = {cell: i for i, cell in enumerate(GREFF_CELLS)}
    return {
        task: dict(sorted(by_cell.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))
        for task, by_cell in sorted(found.items())
    }


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"n": 0}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {
        "n": int(len(values)),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "max": float(values.max()),
    }


def summarize(cell: CellTrials) -> dict:
    """Counts and summary statistics of one cell's test metric (all trials and best 10%)."""
    out = {
        "study": cell.study,
        "complete": cell.n,
        "failed": cell.failed,
        "requested": cell.requested,
        "metric": cell.metric,
        "test": _stats(cell.test),
        "test_best10": _stats(cell.test[cell.best()]) if cell.n else {"n": 0},
        "valid": _stats(cell.valid),
    }
    if cell.n:
        best = int(cell.best(0)[0])
        out["best_trial"] = {
            "valid": float(cell.valid[best]),
            "test": float(cell.test[best]),
            "parameters": int(cell.parameters[best]),
            "hyperparameters": hyperparameters(cell, best),
        }
        out["mean_parameters"] = float(cell.parameters.mean())
        out["mean_epochs"] = float(cell.epochs.mean())
        out["mean_wall_seconds"] = float(cell.wall_seconds.mean())
        out["total_wall_seconds"] = float(cell.wall_seconds.sum())
    return out


def hyperparameters(cell: CellTrials, i: int) -> dict:
    """Trial i's hyperparameters as the trainer took them (momentum, not the stored 1 − m)."""
    values = {hp: float(v[i]) for hp, v in cell.params.items()}
    if "momentum" in values:  # stored as 1 - momentum
        values["momentum"] = 1.0 - values["momentum"]
    if "hidden_size" in values:
        values["hidden_size"] = int(values["hidden_size"])
    return values


def welch(cells: dict[str, CellTrials], vanilla: str = VANILLA) -> list[dict]:
    """Each cell but ``vanilla`` against it: mean test metric difference (variant - vanilla),
    Welch's t statistic and two-sided p-value, over all trials and over the best 10%
    (``best10_*``), and the paired comparison over the trial indices both cells completed
    (``paired_*``: n, median of variant − vanilla, Wilcoxon signed-rank two-sided p).

    ``worse`` says whether the variant's mean is worse in the metric's direction; ``significant``
    is p < 0.05 (``paired_worse`` and ``paired_significant`` the same for the paired median).
    Cells with fewer than 2 trials (pairs: 6, the fewest that can reach p < 0.05) get p = None.
    """
    from scipy.stats import ttest_ind

    if vanilla not in cells or cells[vanilla].n == 0:
        return []
    base = cells[vanilla]
    rows = []
    for name, cell in cells.items():
        if name == vanilla:
            continue
        row = {"cell": name, "n": cell.n, "n_vanilla": base.n}
        for label, a, b in (
            ("", cell.test, base.test),
            ("best10_", cell.test[cell.best()] if cell.n else cell.test,
             base.test[base.best()]),
        ):
            row[f"{label}mean"] = float(a.mean()) if len(a) else None
            row[f"{label}mean_vanilla"] = float(b.mean())
            diff = float(a.mean() - b.mean()) if len(a) else None
            row[f"{label}difference"] = diff
            if len(a) >= 2 and len(b) >= 2:
                t, p = ttest_ind(a, b, equal_var=False)
                t, p = float(t), float(p)
                p = None if not np.isfinite(p) else p
            else:
                t, p = None, None
            row[f"{label}t"] = t
            row[f"{label}p"] = p
            row[f"{label}significant"] = p is not None and p < ALPHA
            row[f"{label}worse"] = _worse(diff, base.higher_is_better)
        row.update(paired(cell, base))
        rows.append(row)
    return rows


def _worse(difference: float | None, higher_is_better: bool) -> bool | None:
    if difference is None:
        return None
    return difference < 0 if higher_is_better else difference > 0


PAIRED_MIN = 6  # the fewest pairs whose signed-rank test can reach p < 0.05 (2 / 2^6 = 0.031)


def paired(cell: CellTrials, base: CellTrials) -> dict:
    """``cell`` against ``base`` on the trial indices both completed: ``paired_n``,
    ``paired_median`` (of cell − base, test metric), ``paired_p`` (Wilcoxon signed-rank,
    two-sided; None under PAIRED_MIN pairs or when every difference is 0), ``paired_worse``,
    ``paired_significant``."""
    from scipy.stats import wilcoxon

    mine = dict(zip(cell.index.tolist(), cell.test))
    theirs = dict(zip(base.index.tolist(), base.test))
    common = sorted(set(mine) & set(theirs))
    diffs = np.array([mine[i] - theirs[i] for i in common])
    median = float(np.median(diffs)) if len(diffs) else None
    p = None
    if len(diffs) >= PAIRED_MIN and np.any(diffs != 0):
        p = float(wilcoxon(diffs).pvalue)
        p = p if np.isfinite(p) else None
    return {
        "paired_n": len(diffs),
        "paired_median": median,
        "paired_p": p,
        "paired_worse": _worse(median, base.higher_is_better),
        "paired_significant": p is not None and p < ALPHA,
    }


def _features(cells: list[CellTrials]):
    """(X, y, bounds, names, log) for fANOVA on the objective (the validation metric) of the
    given cells' trials."""
    names = list(PARAMETERS)
    X = np.column_stack([np.concatenate([c.params[n] for c in cells]) for n in names])
    y = np.concatenate([c.valid for c in cells])
    space = next((c.space for c in cells if c.space), None)
    bounds, log = [], []
    for n in names:
        spec = space["space"][PARAMETERS[n][0]] if space else None
        if spec is None:
            column = X[:, names.index(n)]
            bounds.append([column.min(), column.max()])
            log.append(False)
        else:
            bounds.append([spec["low"], spec["high"]])
            log.append(bool(spec["log"]))
    return X, y, np.array(bounds, dtype=np.float64), names, log


def importance(
    cells: dict[str, CellTrials], *, min_trials: int = 5, seed: int = 0, n_trees: int = 64,
    ranks: bool = False,
) -> dict[str, FanovaResult]:
    """fANOVA of the objective per cell, and pooled over the task's cells under ``"all"``.

    The objective is the validation metric (``CellTrials.objective``): what each trial's value
    is and what a search selects on, so these importances and optuna-dashboard's agree. Cells
    with fewer than ``min_trials`` complete trials, a constant objective, or a single
    hyperparameter draw are left out. ``ranks``: explain the objective's ranks instead of its
    values (fANOVA splits variance, so a few trials that barely trained — a NLL several times
    the rest's — can decide the raw importances alone; ranks weigh every trial alike).
    """
    out: dict[str, FanovaResult] = {}
    groups = {name: [cell] for name, cell in cells.items()}
    groups["all"] = list(cells.values())
    for name, group in groups.items():
        group = [c for c in group if c.n]
        if sum(c.n for c in group) < min_trials:
            continue
        X, y, bounds, names, log = _features(group)
        if ranks:
            from scipy.stats import rankdata

            y = rankdata(y)
        # nothing to explain: one value, or one draw (trial i of every cell shares its draw,
        # so a study of one trial per cell pools nine copies of the same hyperparameters)
        if np.ptp(y) == 0 or len(np.unique(X, axis=0)) < 2:
            continue
        out[name] = fanova(X, y, bounds, names, log=log, seed=seed, n_trees=n_trees)
    return out
