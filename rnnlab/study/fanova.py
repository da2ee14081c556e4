"""fANOVA: how much of a metric's variance each hyperparameter, and each pair, explains.

Hutter, Hoos & Leyton-Brown (2014), "An Efficient Approach for Assessing Hyperparameter
Importance". A random forest predicts the metric ``y`` from the hyperparameters ``x`` over the
box ``Θ = Π_d [a_d, b_d]`` (log-scaled hyperparameters are taken in log space, so that the
uniform measure on the box is the distribution they were drawn from). Each tree is a piecewise
constant function ``f`` whose leaves ``l`` are boxes ``Θ_l`` with values ``v_l``. With ``μ`` the
uniform measure on ``Θ``, the functional ANOVA of ``f`` is::

    f_∅            = ∫ f dμ = Σ_l |Θ_l| v_l                    (|·|: volume fraction of Θ)
    V              = ∫ (f - f_∅)² dμ = Σ_l |Θ_l| (v_l - f_∅)²  (the tree's total variance)
    a_U(x_U)       = ∫ f(x_U, x_rest) dμ(x_rest)               (marginal over the subset U)
                   = Σ_l [x_U ∈ Θ_l,U] v_l Π_{d∉U} |Θ_l,d|
    V_U            = ∫ (a_U - f_∅)² dμ(x_U)
    main effect    F_d  = V_{d} / V
    interaction    F_de = (V_{d,e} - V_{d} - V_{e}) / V        (the pure pairwise component)

``a_U`` is constant on the cells of the grid cut by every split threshold of the tree in the
dimensions of ``U``, so each ``V_U`` is an exact finite sum over those cells. The fractions are
computed per tree and averaged over the forest (as Hutter et al. and Optuna's evaluator do).
The forest is scikit-learn's ``RandomForestRegressor``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

PAIR = "×"  # separator of a pair's names in the result: "lr×hidden_size"


@dataclass
class FanovaResult:
    """Fractions of variance, averaged over the trees (``*_std``: spread over the trees)."""

    main: dict[str, float]
    pairwise: dict[str, float]
    main_std: dict[str, float]
    pairwise_std: dict[str, float]
    trees: int  # trees with nonzero variance that entered the averages
    # per feature: (points, mean, std) of the marginal prediction a_d over the forest, points in
    # the feature's natural units (log features were fitted in log space)
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def to_dict(self) -> dict:
        return {
            "main": self.main,
            "pairwise": self.pairwise,
            "main_std": self.main_std,
            "pairwise_std": self.pairwise_std,
            "trees": self.trees,
        }


class TreeAnova:
    """The exact functional ANOVA of one fitted scikit-learn regression tree over a box.

    ``tree`` is an ``sklearn.tree._tree.Tree`` (``estimator.tree_``); ``bounds`` is ``(D, 2)``
    with each feature's ``[low, high]`` (the box the marginals integrate over).
    """

    def __init__(self, tree, bounds: np.ndarray):
        self.bounds = np.asarray(bounds, dtype=np.float64)
        D = self.bounds.shape[0]
        left, right = tree.children_left, tree.children_right
        feature, threshold = tree.feature, tree.threshold
        values = tree.value.reshape(tree.node_count, -1)[:, 0]
        boxes, leaf_values = [], []
        # depth-first walk carrying each node's box; sklearn sends x[d] <= threshold left
        stack = [(0, self.bounds.copy())]
        self.splits: list[list[float]] = [[] for _ in range(D)]
        while stack:
            node, box = stack.pop()
            if left[node] == -1:
                boxes.append(box)
                leaf_values.append(values[node])
                continue
            d, t = feature[node], threshold[node]
            lo, hi = box[d]
            if lo < t < hi:
                self.splits[d].append(float(t))
            low_box, high_box = box.copy(), box.copy()
            low_box[d, 1] = min(hi, t)
            high_box[d, 0] = max(lo, t)
            # a branch whose box is empty (threshold outside the box) has no volume
            if low_box[d, 1] > low_box[d, 0]:
                stack.append((left[node], low_box))
            if high_box[d, 1] > high_box[d, 0]:
                stack.append((right[node], high_box))
        self.boxes = np.array(boxes)  # (L, D, 2)
        self.values = np.array(leaf_values)  # (L,)
        width = self.bounds[:, 1] - self.bounds[:, 0]
        self.fractions = (self.boxes[:, :, 1] - self.boxes[:, :, 0]) / width  # (L, D)
        volume = self.fractions.prod(axis=1)
        self.mean = float(volume @ self.values)
        self.variance = float(volume @ (self.values - self.mean) ** 2)
        self._variances: dict[tuple[int, ...], float] = {}

    def _cells(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Membership (cells, L) of each leaf in the grid cells of dimension d, and each cell's
        width as a fraction of the range."""
        lo, hi = self.bounds[d]
        cuts = np.unique([lo, *self.splits[d], hi])
        mids = (cuts[:-1] + cuts[1:]) / 2
        member = (self.boxes[None, :, d, 0] <= mids[:, None]) & (
            mids[:, None] < self.boxes[None, :, d, 1]
        )
        return member.astype(np.float64), np.diff(cuts) / (hi - lo)

    def marginal(self, d: int, points: np.ndarray) -> np.ndarray:
        """``a_{d}(x)`` at each of ``points`` (values of feature d)."""
        rest = [e for e in range(self.bounds.shape[0]) if e != d]
        weight = self.values * self.fractions[:, rest].prod(axis=1)
        inside = (self.boxes[None, :, d, 0] <= points[:, None]) & (
            points[:, None] <= self.boxes[None, :, d, 1]
        )
        # a point on a split belongs to the left leaf only (x <= threshold goes left)
        inside &= ~((points[:, None] == self.boxes[None, :, d, 0])
                    & (self.boxes[None, :, d, 0] > self.bounds[d, 0]))
        return inside.astype(np.float64) @ weight

    def marginal_variance(self, dims: tuple[int, ...]) -> float:
        """``V_U`` for ``U = dims`` (one or two features), computed once."""
        if dims not in self._variances:
            self._variances[dims] = self._marginal_variance(dims)
        return self._variances[dims]

    def _marginal_variance(self, dims: tuple[int, ...]) -> float:
        rest = [d for d in range(self.bounds.shape[0]) if d not in dims]
        weight = self.values * self.fractions[:, rest].prod(axis=1)  # (L,)
        if len(dims) == 1:
            member, width = self._cells(dims[0])
            marginal = member @ weight  # (cells,)
            return float(width @ (marginal - self.mean) ** 2)
        if len(dims) == 2:
            member_a, width_a = self._cells(dims[0])
            member_b, width_b = self._cells(dims[1])
            marginal = (member_a * weight) @ member_b.T  # (cells_a, cells_b)
            cell_weight = np.outer(width_a, width_b)
            return float((cell_weight * (marginal - self.mean) ** 2).sum())
        raise ValueError(f"marginals over 1 or 2 features are supported, got {len(dims)}")


def fanova_forest(
    forest, bounds, names: list[str], pairs: bool = True, log: list[bool] | None = None,
    points: int = 50,
) -> FanovaResult:
    """fANOVA fractions of a fitted forest (anything with ``estimators_`` of sklearn trees).

    ``bounds`` (D, 2) in the space the forest was fitted in; ``names`` the D feature names;
    ``log[d]``: feature d was fitted as its log (only changes the units of ``curves``).
    """
    bounds = np.asarray(bounds, dtype=np.float64)
    if bounds.shape != (len(names), 2) or np.any(bounds[:, 1] <= bounds[:, 0]):
        raise ValueError(f"bounds must be ({len(names)}, 2) with low < high, got {bounds}")
    trees = [TreeAnova(estimator.tree_, bounds) for estimator in forest.estimators_]
    trees = [tree for tree in trees if tree.variance > 0]
    if not trees:
        raise ValueError(
            "the forest predicts a constant (every trial has the same value?); fANOVA needs "
            "variation in the metric"
        )
    D = len(names)
    main = np.array([[t.marginal_variance((d,)) / t.variance for d in range(D)] for t in trees])
    result = FanovaResult(
        main={n: float(v) for n, v in zip(names, main.mean(axis=0))},
        pairwise={},
        main_std={n: float(v) for n, v in zip(names, main.std(axis=0))},
        pairwise_std={},
        trees=len(trees),
    )
    result.curves = {}
    for d, name in enumerate(names):
        grid = np.linspace(bounds[d, 0], bounds[d, 1], points)
        curves = np.array([t.marginal(d, grid) for t in trees])
        units = np.exp(grid) if log is not None and log[d] else grid
        result.curves[name] = (units, curves.mean(axis=0), curves.std(axis=0))
    if pairs:
        for a, b in itertools.combinations(range(D), 2):
            pure = np.array(
                [
                    (t.marginal_variance((a, b)) - t.marginal_variance((a,))
                     - t.marginal_variance((b,))) / t.variance
                    for t in trees
                ]
            )
            key = f"{names[a]}{PAIR}{names[b]}"
            result.pairwise[key] = float(pure.mean())
            result.pairwise_std[key] = float(pure.std())
    return result


def fanova(
    X,
    y,
    bounds,
    names: list[str],
    *,
    log: list[bool] | None = None,
    n_trees: int = 64,
    max_depth: int = 64,
    seed: int = 0,
    pairs: bool = True,
) -> FanovaResult:
    """Fit a random forest to ``y`` (N,) from ``X`` (N, D) and return its fANOVA fractions.

    ``bounds`` (D, 2) is the box the hyperparameters were drawn from, in their natural units;
    ``log[d]`` takes feature d (and its bounds) in log space first. The forest's settings are
    Optuna's FanovaImportanceEvaluator's (64 trees, depth 64, leaves of one sample).
    """
    from sklearn.ensemble import RandomForestRegressor

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    bounds = np.asarray(bounds, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[1] != len(names):
        raise ValueError(f"X must be (N, {len(names)}) and y (N,), got {X.shape} and {y.shape}")
    if X.shape[0] < 2:
        raise ValueError(f"fANOVA needs at least 2 trials, got {X.shape[0]}")
    if log is not None:
        mask = np.asarray(log, dtype=bool)
        X, bounds = X.copy(), bounds.copy()
        X[:, mask] = np.log(X[:, mask])
        bounds[mask] = np.log(bounds[mask])
    forest = RandomForestRegressor(
        n_estimators=n_trees,
        max_depth=max_depth,
        min_samples_split=2,
        min_samples_leaf=1,
        random_state=seed,
    )
    forest.fit(X, y)
    return fanova_forest(forest, bounds, names, pairs=pairs, log=log)
