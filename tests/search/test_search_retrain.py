"""`rnnlab search retrain` on a tiny search: every cell x task, n = seeds x settings per row,
the same settings for every cell, the GRU untested against itself, resuming trains nothing,
more seeds train only the new runs, other options are refused, bad options are one line."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from rnnlab.cli.main import main
from rnnlab.search import Budget, SearchConfig, SearchError, retrain, run
from rnnlab.search.retraining import describe
from rnnlab.trials import open_storage

TINY = Budget(hidden=8, batch_size=8, train_steps=4, eval_batches=1, filter_steps=4,
              filter_threshold=0.0, filter_hidden=8, filter_batch_size=8)
CELLS = {"GRU", "LSTM", "LSTM-b", "MUT1"}  # besides the search's best found cell


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished tiny search, and its re-training: 1 found cell + GRU, LSTM, LSTM-b + MUT1,
    2 seeds x 1 setting of 8 steps on arithmetic."""
    folder = tmp_path_factory.mktemp("search")
    config = SearchConfig(name="s", tasks=("arithmetic",), steps=4, budget=TINY,
                          directory=str(folder), quiet=True, reevaluate=0.0, lease_seconds=2.0)
    run(config)
    text, document, paths = retrain(config, n=1, seeds=2, settings=1, train_steps=8,
                                    cells=["mut1"])
    return config, text, document, paths


def complete_runs(config: SearchConfig, study: str) -> list:
    storage = open_storage(config.storage, config.folder)
    trials = optuna.load_study(study_name=study, storage=storage).get_trials()
    return [t for t in trials if t.state == TrialState.COMPLETE]


def test_every_cell_and_task_with_seeds_x_settings_runs(searched):
    config, text, document, paths = searched
    assert [p.name for p in paths] == ["retrain.json", "retrain.md"]
    assert json.loads(paths[0].read_text()) == json.loads(json.dumps(document))
    labels = [c["label"] for c in document["cells"]]
    assert CELLS <= set(labels) and len(labels) == len(CELLS) + 1
    found = next(label for label in labels if label not in CELLS)
    assert found.startswith("#")  # '#3 <hash>': its rank in `rnnlab search top`
    assert [(r["cell"], r["task"]) for r in document["rows"]] == [
        (label, "arithmetic") for label in labels]
    assert [r["cell"] for r in document["fitness"]] == labels
    for row in document["rows"] + document["fitness"]:
        assert row["n"] == 2 and len(row["values"]) == 2
        if row["cell"] == "GRU":
            assert row["p"] is None and row["verdict"] == "(the reference)"
        elif row["p"] is not None:
            assert 0.0 <= row["p"] <= 1.0
    gru = next(r for r in document["rows"] if r["cell"] == "GRU")
    assert gru["mean"] == pytest.approx(1.0)  # relative to its own mean
    assert document["budget"]["train_steps"] == 8 and document["search_train_steps"] == 4
    for label in labels:
        assert f"| {label} | arithmetic | 2 |" in text
    assert "Welch" in text and paths[1].read_text() == text


def test_every_cell_gets_the_same_settings_and_seeds(searched):
    config, _, document, _ = searched
    runs = {}
    for cell in document["cells"]:
        trials = complete_runs(config, cell["study"])
        assert sorted(t.user_attrs["index"] for t in trials) == [0, 1]
        runs[cell["label"]] = {t.user_attrs["index"]: (t.user_attrs["setting"],
                                                       t.user_attrs["training_seed"])
                               for t in trials}
    assert len({json.dumps(r, sort_keys=True) for r in runs.values()}) == 1
    assert runs["GRU"][0][1] != runs["GRU"][1][1]  # two seeds, one setting
    assert runs["GRU"][0][0] == runs["GRU"][1][0]
    assert document["settings"] == [{"task": "arithmetic", "index": 0, **runs["GRU"][0][0]}]


def test_resuming_a_finished_retraining_trains_nothing(searched):
    config, _, document, _ = searched
    journal = config.folder / "trials.journal"
    before = journal.read_bytes()
    _, again, _ = retrain(config, n=1, seeds=2, settings=1, train_steps=8, cells=["mut1"])
    assert journal.read_bytes() == before
    assert again["rows"] == document["rows"]


def test_more_seeds_train_only_the_new_runs(searched, tmp_path):
    config, _, document, _ = searched
    gru = next(c["study"] for c in document["cells"] if c["label"] == "GRU")
    old = {t.user_attrs["index"]: t.value for t in complete_runs(config, gru)}
    _, more, _ = retrain(config, n=0, seeds=3, settings=1, train_steps=8, tag="retrain")
    assert [c["label"] for c in more["cells"]] == ["GRU", "LSTM", "LSTM-b"]
    runs = {t.user_attrs["index"]: t.value for t in complete_runs(config, gru)}
    assert sorted(runs) == [0, 1, 2] and {i: runs[i] for i in old} == old
    assert all(r["n"] == 3 for r in more["rows"])


def test_other_options_under_the_same_tag_are_refused_and_write_nothing(searched):
    config, *_ = searched
    journal = config.folder / "trials.journal"
    before = journal.read_bytes()
    with pytest.raises(SearchError, match=r"budget.train_steps=8 \(asked 9\).*another --tag"):
        retrain(config, n=1, seeds=2, settings=1, train_steps=9)
    assert journal.read_bytes() == before


def test_the_verdict_needs_p_below_005_and_a_higher_mean():
    gru = [0.50, 0.51, 0.49, 0.50, 0.52, 0.48]
    assert describe([0.60, 0.61, 0.59, 0.60, 0.62, 0.58], gru)["verdict"] == \
        "beats GRU beyond noise"
    assert describe([0.40, 0.41, 0.39, 0.40, 0.42, 0.38], gru)["verdict"] == \
        "below GRU beyond noise"
    row = describe([0.30, 0.70, 0.50, 0.55, 0.45, 0.60], gru)
    assert row["verdict"] == "within noise" and row["p"] > 0.05
    low, high = row["interval"]
    assert low < row["mean"] < high
    assert describe(gru, None)["p"] is None


def test_cli_reports_what_is_stored(searched, capsys):
    config, *_ = searched
    assert main(["search", "retrain", "--name=s", f"--dir={config.folder}", "-n=1", "--seeds=2",
                 "--settings=1", "--train-steps=8", "--cells=MUT1", "--no-train"]) == 0
    out = capsys.readouterr().out
    assert "| MUT1 | arithmetic | 2 |" in out and "retrain.md" in out


@pytest.mark.parametrize("options, expected", [
    (["-n=-1"], "-n must be an integer >= 0"),
    (["--seeds=0"], "--seeds must be an integer >= 1"),
    (["--seeds=1", "--settings=1"], "--seeds x --settings must be >= 2"),
    (["--train-steps=0"], "--train-steps must be an integer >= 1"),
    (["--tag=a b"], "--tag must be a word"),
    (["--cells=nope"], "unknown cell 'nope'"),
    (["--workers=0"], "--workers must be an integer >= 1"),
])
def test_bad_options_are_one_line(searched, options, expected, capsys):
    config, *_ = searched
    journal = config.folder / "trials.journal"
    before = journal.read_bytes()
    assert main(["search", "retrain", "--name=s", f"--dir={config.folder}", "--quiet",
                 *options]) == 1
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert journal.read_bytes() == before


def test_no_search_is_one_line(tmp_path, capsys):
    assert main(["search", "retrain", f"--dir={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1


def test_help_gives_each_default_once_and_in_words(capsys):
    with pytest.raises(SystemExit):
        main(["search", "retrain", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default:" not in out and "None" not in out
    assert "[default: 4x the search's]" in out and "[default: 3]" in out
