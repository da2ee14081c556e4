"""The comparison: configuration parsing, parameter matching, seed 000's default experiment."""

import pytest

import rnnlab.tasks
from rnnlab.train.compare import (
    DEFAULT_BUDGET,
    SEED_SPECS,
    contenders,
    match_hidden_size,
    parameter_count,
    parse_spec,
    seed_experiment_config,
)
from rnnlab.train.config import ConfigError, ExperimentConfig


def test_spec_parsing_resolves_short_keys():
    assert parse_spec("small:cell=gru,hidden_size=64,lr=0.01") == (
        "small",
        ["model.cell=gru", "model.hidden_size=64", "train.lr=0.01"],
    )
    assert parse_spec("model.num_layers=2") == (None, ["model.num_layers=2"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_spec("cell")
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_spec("colour=red")


def test_labels_are_derived_and_unique():
    items = contenders(seed_experiment_config(), ["cell=gru", "cell=gru", "body=grid"])
    assert [c.label for c in items] == ["gru", "gru-2", "grid"]
    with pytest.raises(ConfigError, match="one task"):
        contenders(ExperimentConfig(), ["task=copy", "task=xml"])


def test_seed_experiment_is_3_layer_lstm_against_3_layer_grid_lstm_of_equal_size():
    base = seed_experiment_config()
    assert base.task.name == "text" and base.train.budget_seconds == DEFAULT_BUDGET
    assert 2 * DEFAULT_BUDGET < 300  # both models together fit in five minutes
    lstm, grid = contenders(base, list(SEED_SPECS))
    assert (lstm.config.model.body, lstm.config.model.cell) == ("stack", "lstm")
    assert grid.config.model.body == "grid"
    assert lstm.config.model.num_layers == grid.config.model.num_layers == 3
    task = rnnlab.tasks.make("text")
    target = parameter_count(lstm.config, task)
    grid.config.model.hidden_size = match_hidden_size(grid.config, task, target)
    assert abs(parameter_count(grid.config, task) - target) / target < 0.1
    # same data and budget: only the model section differs
    assert lstm.config.task == grid.config.task and lstm.config.train == grid.config.train


def test_matching_finds_the_closest_hidden_size():
    config = seed_experiment_config()
    config.model.cell = "gru"
    task = rnnlab.tasks.make("copy")
    target = 50_000
    best = match_hidden_size(config, task, target)

    def gap(hidden):
        config.model.hidden_size = hidden
        return abs(parameter_count(config, task) - target)

    assert gap(best) <= gap(best - 1) and gap(best) <= gap(best + 1)


def test_the_compare_directory_names_the_corpus_and_any_body_can_be_compared(tmp_path):
    from rnnlab.train.compare import compare
    from rnnlab.train.config import apply_overrides

    corpus = tmp_path / "my_novel.txt"
    corpus.write_text("a tale of two cities. " * 500, encoding="utf-8")
    base = apply_overrides(ExperimentConfig(), [
        "task.name=text", f"task.path={corpus}", "task.seq_len=8", "task.batch_size=4",
        "task.eval_batch_size=64", "task.eval_max_batches=1", "model.hidden_size=8",
        "train.epochs=none", "train.max_steps=2", "run.quiet=true", "run.plots=false",
        f"run.root={tmp_path / 'runs'}",
    ])
    text, out_dir, rows = compare(base, ["body=grid_deep,tied=true"],
                                  match_params=False, echo=lambda *a: None)
    assert out_dir.name.endswith("-text-my_novel")
    assert [row["status"] for row in rows] == ["completed"]
    assert "grid_deep" in text


class _FakeRun:
    """What equal_steps reads of a run directory: its metrics records and summary."""

    def __init__(self, steps: list[int], values: list[float]):
        self.records = [{"split": "valid", "step": s, "loss": v} for s, v in zip(steps, values)]

    def metrics(self):
        return self.records

    def summary(self):
        return {"primary": "loss"}


def test_equal_steps_takes_each_run_s_last_validation_at_the_fewest_steps():
    from rnnlab.train.compare import equal_steps

    runs = [_FakeRun([100, 200, 300], [3.0, 2.5, 2.0]), _FakeRun([100, 200], [2.9, 2.4])]
    line = equal_steps(runs, ["lstm", "grid"])
    assert line.endswith("200): lstm 2.5000 (step 200), grid 2.4000 (step 200).")


def test_equal_steps_when_one_run_validated_only_before_the_other_s_first():
    # a short budget on a slow machine: the grid validated once, at its end (step 19), before
    # the LSTM's first validation (step 100); there is no equal-steps view, and it says so
    from rnnlab.train.compare import equal_steps

    runs = [_FakeRun([100, 140], [3.0, 2.8]), _FakeRun([19], [4.4])]
    line = equal_steps(runs, ["lstm", "grid"])
    assert line.startswith("No equal-steps view: lstm first validated at step 100, after the "
                           "others' last validation (step 19)"), line
