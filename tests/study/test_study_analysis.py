"""Reading studies back, summary statistics, Welch tests and the report files."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from scipy.stats import ttest_ind

from rnnlab.study import report
from rnnlab.study.analysis import CellTrials, StudyNotFound, importance, load, summarize, welch
from rnnlab.study.report import write_report
from rnnlab.study.space import load_space

OFFSETS = {"peephole": 0.0, "nfg": 3.0, "cifg": 0.05}  # nfg clearly worse, cifg the same
N = 30


def _storage_with_trials(n=N, valid=None):
    """A study of three cells whose test metric is a known function of lr and hidden size;
    ``valid(test, params)``: the validation metric, the trial's value (default test - 0.1)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    space = load_space(None)
    fingerprint = json.loads(json.dumps({**space.fingerprint(), "seed": 0}))
    rng = np.random.default_rng(0)
    distributions = {
        "hidden_size": IntDistribution(20, 200, log=True),
        "lr": FloatDistribution(1e-6, 1e-2, log=True),
        "one_minus_momentum": FloatDistribution(0.01, 1, log=True),
        "input_noise": FloatDistribution(0, 1),
    }
    expected = {}
    for cell, offset in OFFSETS.items():
        study = optuna.create_study(storage=storage, study_name=f"s.jsb.{cell}")
        for key, value in (("space", fingerprint), ("task", "jsb"), ("cell", cell),
                           ("requested", n)):
            study.set_user_attr(key, value)
        tests = []
        for i in range(n):
            lr = float(np.exp(rng.uniform(np.log(1e-6), np.log(1e-2))))
            hidden = int(np.exp(rng.uniform(np.log(20), np.log(200))))
            test = 8 + 2 * abs(np.log10(lr) + 2) + 100 / hidden + offset + rng.normal(0, 0.1)
            tests.append(test)
            params = {"hidden_size": hidden, "lr": lr,
                      "one_minus_momentum": float(rng.uniform(0.01, 1)),
                      "input_noise": float(rng.uniform(0, 1))}
            value = test - 0.1 if valid is None else valid(test, params)
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=distributions, value=value,
                user_attrs={"valid": value, "test": test, "metric": "nll",
                            "higher_is_better": False, "parameters": 1000 * hidden,
                            "epochs": 3.0, "wall_seconds": 2.0, "index": i},
            ))
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, user_attrs={"error": "TrainingDiverged: nan"},
        ))
        expected[cell] = np.array(tests)
    return storage, expected


def test_load_summarize_and_welch_match_scipy():
    storage, expected = _storage_with_trials()
    data = load(storage, "s")
    assert list(data) == ["jsb"] and list(data["jsb"]) == ["peephole", "nfg", "cifg"]
    vanilla = data["jsb"]["peephole"]
    assert vanilla.n == N and vanilla.failed == 1 and vanilla.requested == N
    np.testing.assert_allclose(vanilla.test, expected["peephole"])
    summary = summarize(vanilla)
    assert summary["test"]["mean"] == pytest.approx(expected["peephole"].mean())
    assert summary["test_best10"]["n"] == 3
    rows = {r["cell"]: r for r in welch(data["jsb"])}
    t, p = ttest_ind(expected["nfg"], expected["peephole"], equal_var=False)
    assert rows["nfg"]["p"] == pytest.approx(p) and rows["nfg"]["t"] == pytest.approx(t)
    assert rows["nfg"]["significant"] and rows["nfg"]["worse"]
    assert rows["nfg"]["difference"] == pytest.approx(
        expected["nfg"].mean() - expected["peephole"].mean())
    assert not rows["cifg"]["significant"]


def test_importance_finds_the_learning_rate():
    storage, _ = _storage_with_trials()
    result = importance(load(storage, "s")["jsb"], n_trees=16)
    assert set(result) == {"peephole", "nfg", "cifg", "all"}
    main = result["peephole"].main
    assert max(main, key=main.get) == "lr"
    assert main["lr"] > 0.5 and main["input_noise"] < 0.1
    assert set(result["all"].pairwise) == {
        "hidden_size×lr", "hidden_size×momentum", "hidden_size×input_noise", "lr×momentum",
        "lr×input_noise", "momentum×input_noise",
    }


def test_report_writes_every_file(tmp_path):
    storage, expected = _storage_with_trials()
    path, study = write_report(storage, "s", tmp_path, storage_text="memory", n_trees=8)
    for name in ("boxplot.png", "welch.csv", "importance.json", "importance.png",
                 "marginal_jsb.png", "report.md", "study.json", "trials.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    # trials.csv: every complete trial (not the failed ones), its draw, the hyperparameters as
    # the trainer took them (momentum, not the stored 1 − m), the two metrics as stored
    trials = list(csv.DictReader(open(tmp_path / "trials.csv")))
    assert len(trials) == N * len(OFFSETS)
    for cell in OFFSETS:
        mine = [t for t in trials if t["cell"] == cell]
        assert [int(t["draw"]) for t in mine] == list(range(N))
        assert [float(t["test"]) for t in mine] == expected[cell].tolist()
    study_nfg = optuna.load_study(study_name="s.jsb.nfg", storage=storage)
    stored = {t.user_attrs["index"]: t.params for t in study_nfg.trials if t.params}
    for row in (t for t in trials if t["cell"] == "nfg"):
        params = stored[int(row["draw"])]
        assert float(row["momentum"]) == 1.0 - params["one_minus_momentum"]
        assert int(row["hidden_size"]) == params["hidden_size"]
        assert float(row["lr"]) == params["lr"]
    assert all(t["objective"] == "valid nll" for t in trials)
    assert all(abs(float(t["valid"]) - (float(t["test"]) - 0.1)) < 1e-9 for t in trials)
    importance_json = json.loads((tmp_path / "importance.json").read_text())
    assert set(importance_json["jsb"]["all"]) >= {"main", "pairwise"}
    assert "lr×momentum" in importance_json["jsb"]["peephole"]["pairwise"]
    rows = list(csv.DictReader(open(tmp_path / "welch.csv")))
    assert [r["cell"] for r in rows] == ["nfg", "cifg"]
    assert rows[0]["significant"] == "True"
    text = path.read_text()
    assert "Greff et al. 2016" in text and "NFG" in text and "fANOVA" in text
    # every pairwise fANOVA term is a column, and each finding has a verdict
    assert all(pair in text for pair in ("hidden_size×lr", "lr×momentum", "lr×input_noise",
                                         "momentum×input_noise"))
    nfg = next(line for line in text.splitlines() if line.startswith("| NFG | The forget"))
    assert nfg.endswith("| shown (p < 0.05: Welch, all trials; Welch, best 10%; paired) |"), nfg
    assert "| lr × hidden size |" in text and "| CIFG and NP |" in text
    worst = next(line for line in text.splitlines() if line.startswith("| worst variants |"))
    assert "Largest paired median differences (worse first): NFG +3" in worst, worst
    assert rows[0]["best10_significant"] == "True" and rows[0]["paired_n"] == str(N)
    assert study["tasks"]["jsb"]["nfg"]["complete"] == N
    assert study["tasks"]["jsb"]["nfg"]["failed"] == 1


def test_the_paired_test_sees_a_small_shift_the_spread_of_the_draws_hides():
    # 30 draws whose test metric spreads over 10 nats (the learning rate's doing); the variant
    # is 0.2 worse on each draw: Welch cannot tell, the signed-rank test over the draws can
    rng = np.random.default_rng(1)
    spread = rng.uniform(8, 18, 30)

    def cell(name, test, index):
        return CellTrials(study=f"s.jsb.{name}", task="jsb", cell=name, metric="nll",
                          valid=test - 0.1, test=test, index=np.asarray(index))

    vanilla = cell("peephole", spread, range(30))
    # draw 29 missing from the variant (failed), and one draw it has that vanilla lacks
    shifted = np.append(spread[:29] + 0.2 + rng.normal(0, 0.05, 29), 9.0)
    variant = cell("nfg", shifted, [*range(29), 31])
    (row,) = welch({"peephole": vanilla, "nfg": variant})
    assert row["p"] > 0.5 and not row["significant"]
    assert row["paired_n"] == 29 and abs(row["paired_median"] - 0.2) < 0.05
    assert row["paired_p"] < 1e-6 and row["paired_significant"] and row["paired_worse"]
    assert report._verdict_crucial(row) == (
        "shown by the paired test only (not by the paper's Welch test)")
    few = cell("nfg", spread[:5] + 0.2, range(5))  # five pairs cannot reach p < 0.05
    (row,) = welch({"peephole": vanilla, "nfg": few})
    assert row["paired_n"] == 5 and row["paired_p"] is None and not row["paired_significant"]


def test_one_draw_per_cell_has_no_importance_to_report():
    # one trial per cell: every cell ran draw 0, so the pooled trials vary in value only
    draw = {"hidden_size": np.array([50.0]), "lr": np.array([1e-3]),
            "momentum": np.array([0.1]), "input_noise": np.array([0.5])}
    cells = {name: CellTrials(study=f"s.jsb.{name}", task="jsb", cell=name, params=draw,
                              valid=np.array([10.0 + i]), test=np.array([10.0 + i]),
                              index=np.array([0]))
             for i, name in enumerate(("peephole", "nig", "nfg", "nog", "niaf", "noaf"))}
    assert importance(cells, n_trees=4) == {}


def test_missing_study_is_a_clear_error():
    storage, _ = _storage_with_trials()
    with pytest.raises(StudyNotFound, match="rnnlab study run --name other"):
        load(storage, "other")


def test_importance_explains_the_objective_the_dashboard_shows(tmp_path):
    # the validation metric (each trial's value) follows the input noise, the test metric the
    # learning rate: fANOVA explains the objective, as optuna-dashboard's importances do
    storage, _ = _storage_with_trials(valid=lambda test, p: 10 + 5 * p["input_noise"])
    main = importance(load(storage, "s")["jsb"], n_trees=16)["all"].main
    assert max(main, key=main.get) == "input_noise" and main["input_noise"] > 0.8
    path, _ = write_report(storage, "s", tmp_path, n_trees=8)
    saved = json.loads((tmp_path / "importance.json").read_text())
    assert saved["jsb"]["all"]["objective"] == "valid nll"
    assert saved["jsb"]["all"]["main"]["input_noise"] > 0.8
    text = path.read_text()
    assert "fANOVA of the objective, valid nll" in text
    assert "fANOVA of valid nll: input_noise" in text  # the findings name it too


def test_findings_list_the_largest_differences_in_size():
    vanilla = CellTrials(study="s.t.peephole", task="t", cell="peephole", metric="nll")
    rows = [{"cell": cell, "difference": diff, "p": 0.3, "significant": False, "worse": diff > 0}
            for cell, diff in (("nfg", -4.64), ("noaf", -5.29), ("cifg", 0.5))]
    rows = [{**r, "best10_difference": r["difference"], "best10_p": 0.4,
             "best10_significant": False, "best10_worse": r["worse"], "paired_n": 30,
             "paired_median": r["difference"], "paired_p": 0.5, "paired_significant": False,
             "paired_worse": r["worse"]} for r in rows]
    found = report._findings("t", {"peephole": vanilla}, rows, {})
    findings = {topic: ours for topic, _, ours, _ in found}
    verdicts = {topic: verdict for topic, _, _, verdict in found}
    text = findings["worst variants"]
    assert "in size: NOAF -5.29 (better, p = 0.3); NFG -4.64 (better, p = 0.3)." in text, text
    means, _, by_draw = text.partition(" Largest paired median differences")
    assert "CIFG" not in means
    assert by_draw == " (worse first): CIFG +0.5 (p = 0.5); NFG -4.64 (p = 0.5)."
    # better than vanilla without significance: the paper's finding is not shown
    assert verdicts["NFG"] == verdicts["NOAF"] == "not shown"
    assert verdicts["worst variants"] == "not shown: the two worst means are CIFG"
    assert verdicts["better than vanilla"] == "consistent"
    assert "draw by draw" not in findings["better than vanilla"]
    # a variant better draw by draw only: the paper's test still says no difference
    rows[2] |= {"paired_median": -0.07, "paired_p": 0.001, "paired_significant": True,
                "paired_worse": False}
    found = report._findings("t", {"peephole": vanilla}, rows, {})
    better = {topic: (ours, verdict) for topic, _, ours, verdict in found}["better than vanilla"]
    assert better[0].endswith(
        "none. Better draw by draw (paired median differences): CIFG -0.07 (p = 0.001)."), better
    assert better[1] == "consistent (Welch); draw by draw 1 better (paired)", better
    # CIFG worse draw by draw only: "without hurting much" holds by Welch, the loss is named
    rows[2] |= {"paired_median": 0.04, "paired_worse": True}
    found = report._findings("t", {"peephole": vanilla}, rows, {})
    verdict = {topic: verdict for topic, _, _, verdict in found}["CIFG and NP"]
    assert verdict == ("consistent: not significantly worse (Welch); draw by draw worse "
                       "(paired median): CIFG +0.04"), verdict


def test_a_single_best_trial_is_one_value_and_the_plots_say_n_and_the_variants(
    tmp_path, monkeypatch
):
    storage, _ = _storage_with_trials(n=5)  # the best 10% of 5 trials is one trial
    figures = []
    monkeypatch.setattr(report.plt, "close", figures.append)  # keep the figures to read
    path, _ = write_report(storage, "s", tmp_path, n_trees=4)
    text = path.read_text()
    assert re.search(r"(\d+\.\d+)-\1", text) is None  # no "11.49-11.49"
    assert "is one trial (n = 1 of 5): test NLL" in text
    assert "NFG: no forget gate" in text and "CIFG: coupled input and forget gate" in text
    boxes, importances, marginals = figures
    caption = " ".join(t.get_text() for t in boxes.texts)
    assert "NFG: no forget gate" in caption and "CIFG: coupled input and forget gate" in caption
    best = boxes.axes[1]
    assert [t.get_text() for t in best.get_xticklabels()] == [
        "V (vanilla)\nn = 1", "NFG\nn = 1", "CIFG\nn = 1"]
    assert "one trial per cell (n = 1)" in best.get_title()
    assert [t.get_text() for t in boxes.axes[0].get_xticklabels()][1] == "NFG\nn = 5"
    assert "valid nll" in importances.axes[0].get_title()
    assert "NFG: no forget gate" in " ".join(t.get_text() for t in marginals.texts)
    assert marginals.axes[0].get_ylabel() == "valid nll"


def test_the_ranks_show_what_a_few_untrained_trials_hide_from_the_raw_fanova(tmp_path):
    # the objective falls with the learning rate in every trial, and the 10% of draws at the
    # lowest momenta (1 − m > 0.9) barely train (an objective 100 nats higher): their variance
    # decides the raw fANOVA, the ranks see the learning rate
    def valid(test, params):
        return test + (100.0 if params["one_minus_momentum"] > 0.9 else 0.0)

    storage, _ = _storage_with_trials(valid=valid)
    data = load(storage, "s")["jsb"]
    raw = importance(data, n_trees=16)["all"].main
    ranked = importance(data, n_trees=16, ranks=True)["all"].main
    assert max(raw, key=raw.get) == "momentum", raw
    assert max(ranked, key=ranked.get) == "lr" and ranked["lr"] > 0.5, ranked
    path, _ = write_report(storage, "s", tmp_path, storage_text="memory", n_trees=8)
    text = path.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| importance |"))
    assert "Of its ranks: lr" in row and row.endswith(
        "| not shown: lr is not first; of the ranks: consistent |"), row
    assert "| all, ranks |" in text
    saved = json.loads((tmp_path / "importance.json").read_text())
    assert saved["jsb"]["all"]["ranks"]["main"]["lr"] == pytest.approx(
        importance(data, n_trees=8, ranks=True)["all"].main["lr"])


def test_the_two_worst_draw_by_draw_are_named_when_the_means_say_otherwise():
    # untrained trials move the means (here NP's), the paired medians are NFG's and NOAF's
    vanilla = CellTrials(study="s.t.peephole", task="t", cell="peephole", metric="nll")
    rows = []
    for cell, mean, median in (("nfg", 0.1, 0.107), ("noaf", 1.9, 1.0), ("np", 2.5, 0.03)):
        rows.append({"cell": cell, "difference": mean, "p": 0.3, "significant": False,
                     "worse": True, "best10_difference": 0.0, "best10_p": 0.9,
                     "best10_significant": False, "best10_worse": False, "paired_n": 30,
                     "paired_median": median, "paired_p": 0.001 if cell != "np" else 0.4,
                     "paired_significant": cell != "np", "paired_worse": True})
    verdicts = {topic: verdict for topic, _, _, verdict in
                report._findings("t", {"peephole": vanilla}, rows, {})}
    assert verdicts["worst variants"] == (
        "not shown: the two worst means are NP, NOAF; draw by draw (paired medians) NFG and "
        "NOAF are the two worst, both significantly")
