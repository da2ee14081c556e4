"""Where a run's settings come from: a given limit wins over default limits, each task's
training defaults, and compare's equal-time and equal-steps comparisons."""

import json

import pytest

import rnnlab.tasks
from rnnlab.cli.main import main
from rnnlab.train.compare import DEFAULT_BUDGET, SOURCE, seed_experiment_config
from rnnlab.train.config import (
    LIMITS,
    RUN,
    STOPPING_RULES,
    ConfigError,
    ExperimentConfig,
    Limits,
    compose,
    sections,
)

TINY = ["--task.chars=60000", "--task.seq_len=8", "--task.batch_size=4",
        "--task.eval_max_batches=1", "--task.eval_batch_size=64", "--model.hidden_size=8",
        "--run.plots=false"]


# --- a given limit lifts the default ones, and the run says which limits apply ---------------
def test_a_given_step_limit_lifts_the_default_epoch_limit(tmp_path, capsys):
    # 10 default epochs of 2 steps would stop this run at step 20
    assert main(["train", *TINY, "--train.steps_per_epoch=2", "--train.max_steps=23",
                 "--train.eval_every=50", f"--run.dir={tmp_path / 'r'}"]) == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["steps"] == 23
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["epochs"] is None and config["train"]["max_steps"] == 23
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first == ("limits: train.max_steps=23 (given); lifted by the given limit: "
                     "train.epochs=10 (default)")


def test_a_given_time_budget_lifts_the_default_epoch_limit():
    config, limits = compose(ExperimentConfig(), [("train.budget_seconds", "240")])
    assert config.train.epochs is None and config.train.budget_seconds == 240
    assert limits.line(config) == ("limits: train.budget_seconds=240 (given); lifted by the "
                                   "given limit: train.epochs=10 (default)")


def test_limits_given_together_all_apply_and_defaults_stay_without_a_given_limit():
    config, limits = compose(ExperimentConfig(), [("train.max_steps", "50"),
                                                  ("train.epochs", "2")])
    assert (config.train.epochs, config.train.max_steps) == (2, 50) and not limits.lifted
    assert limits.line(config) == "limits: train.epochs=2 (given), train.max_steps=50 (given)"
    config, limits = compose(ExperimentConfig(), [("train.patience", "3")])
    assert config.train.epochs == 10  # patience is early stopping, not a limit
    assert limits.line(config) == "limits: train.epochs=10 (default), train.patience=3 (given)"
    config, _ = compose(ExperimentConfig(), [("train.epochs", "none"), ("train.max_steps", "5")])
    assert config.train.epochs is None and config.train.max_steps == 5
    with pytest.raises(ConfigError, match="needs a limit"):
        compose(ExperimentConfig(), [("train.epochs", "none")])  # clearing is not giving


def test_a_resumed_run_keeps_its_own_limits_beside_the_given_ones():
    saved, _ = compose(ExperimentConfig(), [("train.budget_seconds", "60")])
    config, limits = compose(saved, [("train.max_steps", "9")], source=RUN, defaults=False)
    assert (config.train.budget_seconds, config.train.max_steps) == (60, 9)
    assert limits.line(config) == ("limits: train.max_steps=9 (given), "
                                   "train.budget_seconds=60 (from the run)")


def test_compare_at_equal_steps_lifts_the_default_time_budget(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "lstm:cell=lstm", "gru:cell=gru", *TINY, "--model.num_layers=1",
                 "--train.max_steps=3", "--train.eval_every=2", "--out", str(out)]) == 0
    record = json.loads((out / "compare.json").read_text())
    for configuration in record["configurations"]:
        assert configuration["config"]["train"]["budget_seconds"] is None
        assert configuration["config"]["train"]["max_steps"] == 3
    assert [row["steps"] for row in record["rows"]] == [3, 3]
    assert (f"lifted by the given limit: train.budget_seconds={DEFAULT_BUDGET:g} ({SOURCE})"
            in capsys.readouterr().err)


def test_compare_refuses_two_time_budgets_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "cell=lstm", *TINY, "--budget-seconds=8", "--train.budget_seconds=3",
              "--out", str(tmp_path / "cmp")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--budget-seconds=8" in err and "give one" in err
    assert not (tmp_path / "cmp").exists()


def test_compare_budget_seconds_is_the_time_budget_and_a_spec_limit_lifts_it(tmp_path):
    base, limits = compose(seed_experiment_config(), [("train.budget_seconds", "7")],
                           source=SOURCE)
    assert base.train.budget_seconds == 7 and limits.sources["train.budget_seconds"] == "given"
    base, limits = compose(seed_experiment_config(), [], source=SOURCE)
    from rnnlab.train.compare import contenders

    timed, stepped = contenders(base, ["cell=lstm", "cell=gru,max_steps=40"], limits)
    assert timed.config.train.budget_seconds == DEFAULT_BUDGET
    assert (stepped.config.train.budget_seconds, stepped.config.train.max_steps) == (None, 40)
    assert stepped.limits.line(stepped.config).startswith("limits: train.max_steps=40 (given)")


# --- each task carries its training defaults; compare and train apply them -------------------
def test_a_task_brings_its_training_defaults_unless_the_user_sets_them():
    config, _ = compose(ExperimentConfig(), [("task", "pianomidi")])
    assert (config.task.batch_size, config.train.optimizer, config.train.clip_norm) == (
        8, "rmsprop", 1.0)
    config, _ = compose(ExperimentConfig(), [("task", "pianomidi"), ("task.batch_size", "4")])
    assert config.task.batch_size == 4 and config.train.optimizer == "rmsprop"
    # compare: the seed experiment's shared settings, then the task's
    config, _ = compose(seed_experiment_config(), [("task.name", "jsb")], source=SOURCE)
    assert config.model.num_layers == 3 and config.train.budget_seconds == DEFAULT_BUDGET
    assert (config.task.batch_size, config.train.eval_every, config.task.eval_max_batches) == (
        8, None, None)  # the character model's validation every 100 steps is not the music's
    config, _ = compose(seed_experiment_config(), [], source=SOURCE)  # text: unchanged
    assert (config.task.batch_size, config.train.eval_every) == (32, 100)


@pytest.mark.parametrize("name", rnnlab.tasks.names())
def test_every_task_default_is_a_known_field_and_never_a_stopping_rule(name):
    defaults = rnnlab.tasks.training_defaults(name)
    for key in defaults:
        section, _, field = key.partition(".")
        assert section in ("task", "train") and field in vars(sections()[section]())
        assert key not in STOPPING_RULES
    for base in (ExperimentConfig(), seed_experiment_config()):
        config, limits = compose(base, [("task", name)])
        for key, value in defaults.items():
            section, _, field = key.partition(".")
            assert getattr(getattr(config, section), field) == value
        assert not limits.lifted


def test_compare_on_a_task_uses_its_defaults(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "cell=lstm", "--task=copy", "--model.hidden_size=8",
                 "--model.num_layers=1", "--task.valid_size=8", "--task.test_size=8",
                 "--train.max_steps=2", "--run.plots=false", "--quiet",
                 "--out", str(out)]) == 0
    config = json.loads((out / "compare.json").read_text())["configurations"][0]["config"]
    assert config["task"]["batch_size"] == rnnlab.tasks.training_defaults("copy")[
        "task.batch_size"] != 32
    assert config["train"]["lr"] == rnnlab.tasks.training_defaults("copy")["train.lr"]


def test_limits_guessed_for_a_config_built_in_python():
    config, _ = compose(ExperimentConfig(), [("train.max_steps", "5")])
    assert Limits.guess(config).line(config) == "limits: train.max_steps=5 (set)"
    assert set(LIMITS) < set(STOPPING_RULES)


def test_train_on_a_task_uses_its_defaults(tmp_path):
    run_dir = tmp_path / "r"
    assert main(["train", "--task=copy", "--model.hidden_size=8", "--task.valid_size=8",
                 "--task.test_size=8", "--train.max_steps=1", "--run.plots=false", "--quiet",
                 f"--run.dir={run_dir}"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    defaults = rnnlab.tasks.training_defaults("copy")
    assert config["task"]["batch_size"] == defaults["task.batch_size"] != 32
    assert config["train"]["eval_every"] == defaults["train.eval_every"]


def test_compare_warns_about_a_configuration_stopped_before_its_first_validation(tmp_path):
    from rnnlab.train.compare import compare

    base, limits = compose(seed_experiment_config(), [
        ("task.chars", "60000"), ("task.seq_len", "8"), ("task.batch_size", "4"),
        ("task.eval_batch_size", "64"), ("model.hidden_size", "8"), ("model.num_layers", "1"),
        ("train.max_steps", "3"), ("run.quiet", "true"), ("run.plots", "false")],
        source=SOURCE)
    lines = []
    base.train.eval_every = 5  # after the 3 steps: the run never validates before its end
    compare(base, ["cell=lstm"], out=str(tmp_path / "cmp"), echo=lines.append, limits=limits)
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 1 and "before its first validation (every 5 steps)" in warnings[0]
    lines.clear()
    base.train.eval_every = 2
    compare(base, ["cell=lstm"], out=str(tmp_path / "cmp2"), echo=lines.append, limits=limits)
    assert not [line for line in lines if "warning" in line]


def test_a_finished_run_held_by_its_epochs_says_to_raise_the_epochs(tmp_path, capsys):
    # A run stopped by its (default) epoch limit: raising max_steps on resume changes nothing,
    # so the refusal names the limit that holds it (before: it suggested --train.max_steps).
    run = tmp_path / "r"
    assert main(["train", *TINY, "--train.steps_per_epoch=2", "--train.epochs=2",
                 "--train.eval_every=50", f"--run.dir={run}"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--train.max_steps=100"]) == 1
    err = capsys.readouterr().err
    assert "held by train.epochs=2" in err and "--train.epochs=none" in err
    assert "train.max_steps=100 (" not in err  # not held by the step limit
    assert main(["train", "--resume", str(run), "--train.epochs=3"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
