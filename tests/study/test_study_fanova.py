"""rnnlab.study.fanova against exact decompositions and against Optuna's fANOVA evaluator."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from sklearn.ensemble import RandomForestRegressor

from rnnlab.study.fanova import TreeAnova, fanova, fanova_forest


def test_exact_decomposition_of_a_step_function():
    # f = A + B + 2AB with A = [x0 > 1/2], B = [x1 > 1/2] on the unit square:
    # Var f = 9/4; V_A = V_B = 1; pure interaction 9/4 - 2 = 1/4.
    grid = (np.arange(20) + 0.5) / 20
    X = np.array([(a, b) for a in grid for b in grid])
    A, B = (X[:, 0] > 0.5) * 1.0, (X[:, 1] > 0.5) * 1.0
    forest = RandomForestRegressor(n_estimators=3, bootstrap=False, random_state=0)
    forest.fit(X, A + B + 2 * A * B)
    result = fanova_forest(forest, [[0, 1], [0, 1]], ["a", "b"])
    assert result.main["a"] == pytest.approx(4 / 9, abs=1e-6)
    assert result.main["b"] == pytest.approx(4 / 9, abs=1e-6)
    assert result.pairwise["a×b"] == pytest.approx(1 / 9, abs=1e-6)
    assert result.trees == 3


def test_tree_mean_and_variance_are_the_integrals():
    grid = (np.arange(10) + 0.5) / 10
    X = np.array([(a, b) for a in grid for b in grid])
    y = 3 * (X[:, 0] > 0.3) - (X[:, 1] > 0.6)
    forest = RandomForestRegressor(n_estimators=1, bootstrap=False, random_state=0).fit(X, y)
    tree = TreeAnova(forest.estimators_[0].tree_, np.array([[0.0, 1.0], [0.0, 1.0]]))
    # the split falls between grid points: x0 > 0.3 on 0.7 of the range, x1 > 0.6 on 0.4
    cut0 = forest.estimators_[0].tree_.threshold[forest.estimators_[0].tree_.feature == 0][0]
    cut1 = forest.estimators_[0].tree_.threshold[forest.estimators_[0].tree_.feature == 1][0]
    p0, p1 = 1 - cut0, 1 - cut1
    assert tree.mean == pytest.approx(3 * p0 - p1)
    assert tree.variance == pytest.approx(9 * p0 * (1 - p0) + p1 * (1 - p1))
    # additive: no interaction
    assert tree.marginal_variance((0, 1)) == pytest.approx(
        tree.marginal_variance((0,)) + tree.marginal_variance((1,))
    )


def test_known_interaction_from_random_samples():
    # f = x0 + x1 + 3 x0 x1 on [-1, 1]^3: variances 1/3, 1/3, 1 (x0x1), x2 irrelevant
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 3))
    y = X[:, 0] + X[:, 1] + 3 * X[:, 0] * X[:, 1]
    result = fanova(X, y, [[-1, 1]] * 3, ["x0", "x1", "x2"], n_trees=16)
    assert result.main["x0"] == pytest.approx(0.2, abs=0.03)
    assert result.main["x1"] == pytest.approx(0.2, abs=0.03)
    assert result.main["x2"] < 0.01
    assert result.pairwise["x0×x1"] == pytest.approx(0.6, abs=0.04)
    assert abs(result.pairwise["x0×x2"]) < 0.01 and abs(result.pairwise["x1×x2"]) < 0.01


def test_marginal_curve_follows_an_additive_function():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, (300, 2))
    y = np.sin(3 * X[:, 0]) + X[:, 1]
    result = fanova(X, y, [[0, 1], [0, 1]], ["a", "b"], n_trees=16)
    points, mean, _ = result.curves["a"]
    expected = np.sin(3 * points) + 0.5  # the average over b of b is 1/2
    assert np.abs(mean - expected)[3:-3].max() < 0.1


def test_main_effects_equal_optunas_fanova_evaluator():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))

    def objective(trial):
        a = trial.suggest_float("a", 0, 2)
        b = trial.suggest_float("b", 1e-3, 1, log=True)
        c = trial.suggest_float("c", -1, 1)
        return a**2 + 3 * np.log(b) + a * c

    study.optimize(objective, n_trials=60)
    theirs = optuna.importance.FanovaImportanceEvaluator(n_trees=16, seed=3).evaluate(study)
    # Optuna fits its forest on the raw values (no log transform), columns sorted by name
    X = np.array([[t.params[n] for n in "abc"] for t in study.trials])
    y = np.array([t.value for t in study.trials])
    ours = fanova(X, y, [[0, 2], [1e-3, 1], [-1, 1]], list("abc"), n_trees=16, seed=3)
    for name in "abc":
        assert ours.main[name] == pytest.approx(theirs[name], abs=1e-9)


def test_log_features_are_analysed_in_log_space():
    rng = np.random.default_rng(2)
    lr = np.exp(rng.uniform(np.log(1e-6), np.log(1e-2), 300))
    noise = rng.uniform(0, 1, 300)
    y = np.log(lr)  # linear in log lr: all the variance is lr's
    result = fanova(np.column_stack([lr, noise]), y, [[1e-6, 1e-2], [0, 1]], ["lr", "noise"],
                    log=[True, False], n_trees=8)
    assert result.main["lr"] > 0.97
    points = result.curves["lr"][0]
    assert points[0] == pytest.approx(1e-6) and points[-1] == pytest.approx(1e-2)


def test_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        fanova(np.zeros((1, 2)), np.zeros(1), [[0, 1], [0, 1]], ["a", "b"])
    with pytest.raises(ValueError, match="X must be"):
        fanova(np.zeros((3, 2)), np.zeros(3), [[0, 1]], ["a"])
    with pytest.raises(ValueError, match="constant"):
        fanova(np.random.rand(10, 2), np.ones(10), [[0, 1], [0, 1]], ["a", "b"], n_trees=2)
