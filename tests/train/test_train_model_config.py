"""The model section typed by its body: one settings class per body with exactly the settings its
builder reads, tuple settings from the command line and from saved configs, a setting of another
body refused in one line, older run directories (every body's settings, comma strings) loaded."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rnnlab.cli.main import main
from rnnlab.cli.options import Parser, add_config_options, config_from_args
from rnnlab.train import bodies
from rnnlab.train.bodies import BODIES, SHARED, ModelConfig
from rnnlab.train.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    from_dict,
)
from rnnlab.train.run import RunDir

INPUT_SIZE = 12  # features or vocabulary: room for the default band_size (10)


class Reads:
    """Stands in for a config and records every setting read from it."""

    def __init__(self, config: ModelConfig):
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "names", set())

    def __getattr__(self, name: str):
        self.names.add(name)
        return getattr(self.config, name)


@pytest.mark.parametrize("body", BODIES)
def test_each_body_settings_class_has_exactly_the_settings_its_builder_reads(body):
    config = ModelConfig(body=body, hidden_size=4)
    reads = Reads(config)
    module = BODIES[body].build(reads, INPUT_SIZE)
    assert module.output_size > 0
    own = {f.name for f in dataclasses.fields(config)} - set(SHARED)
    assert reads.names - set(SHARED) == own == set(bodies.body_settings(body))


def test_choosing_a_body_changes_the_class_and_keeps_what_both_bodies_have():
    config = ModelConfig(hidden_size=8, cell="gru", bidirectional=True)
    config.body = "freq_time"
    assert type(config) is BODIES["freq_time"].settings
    assert (config.hidden_size, config.cell, config.bidirectional) == (8, "gru", True)
    assert config.frequency_size == 16  # the new body's own settings start at their defaults
    config.body = "seq2seq"  # bidirectional is not a seq2seq setting: kept, to be refused
    with pytest.raises(bodies.BodyError, match="model.bidirectional=True .*body=seq2seq"):
        bodies.check_settings(config)
    with pytest.raises(bodies.BodyError, match="model.body must be one of stack, grid"):
        ModelConfig(body="tree")


@pytest.mark.parametrize("order", [0, 1])
def test_tuple_settings_parse_from_the_command_line_in_any_order(order):
    argv = ["--model.priority=time", "--model.transforms=lstm,tanh", "--model.body=grid"]
    argv = argv if order else argv[::-1]
    parser = Parser(prog="rnnlab train")
    add_config_options(parser, ExperimentConfig())
    config, _ = config_from_args(parser, parser.parse_args(argv), [], ExperimentConfig())
    assert config.model.priority == ("time",)
    assert config.model.transforms == ("lstm", "tanh")
    stack = apply_overrides(ExperimentConfig(), ["model.num_layers=3", "model.dilations=1,2,4"])
    assert stack.model.dilations == (1, 2, 4)
    assert apply_overrides(stack, ["model.dilations=none"]).model.dilations == ()
    with pytest.raises(ConfigError, match="model.dilations must be comma-separated int"):
        apply_overrides(ExperimentConfig(), ["model.dilations=1,two"])
    with pytest.raises(ConfigError, match="3 positive integer"):
        apply_overrides(ExperimentConfig(), ["model.num_layers=3", "model.dilations=1,2"])


def test_tuple_settings_round_trip_through_a_saved_config(tmp_path):
    config = apply_overrides(ExperimentConfig(), [
        "task=fsdd", "body=grid_spectrogram", "model.corners=top_left,top_right",
        "model.priority=bands", "model.transforms=lstm,tanh,lstm", f"run.dir={tmp_path}"])
    RunDir(tmp_path).create(config, ["train"])
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"]["corners"] == ["top_left", "top_right"]
    assert "cell" not in saved["model"]  # only the chosen body's settings are written
    again = RunDir(tmp_path).config()
    assert again == config and again.model.corners == ("top_left", "top_right")


GRID_HAS = ("transforms, tied, priority, schedule, input_dropout, recurrent_dropout, "
            "output_dropout, weight_drop, zoneout, layer_norm")


@pytest.mark.parametrize("argv, body, has", [
    (["--model.body=grid", "--model.cell=gru"], "grid", GRID_HAS),
    (["--model.cell=lstm", "--model.body=grid"], "grid", GRID_HAS),
    (["--model.tied"], "stack", "cell, bidirectional, skip, forget_bias, init, dilations, "
     "input_dropout, recurrent_dropout, output_dropout, weight_drop, zoneout, layer_norm"),
    (["--model.body=highway", "--model.dilations=1"], "highway", "activation, transform_bias"),
])
def test_a_setting_of_another_body_is_refused_in_one_line(argv, body, has, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--task=copy", "--train.max_steps=1", f"--run.dir={tmp_path}", *argv])
    assert exit_.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert f"is not a setting of body={body} (body={body} has: {has};" in lines[0]


def test_a_setting_of_the_chosen_body_given_before_the_body_is_taken():
    config = apply_overrides(ExperimentConfig(), ["model.tied=true", "body=grid_deep"])
    assert config.model.tied is True and config.model.body == "grid_deep"


# The model sections older versions wrote (every body's settings; lists as comma strings).
OLD_COMMON = {
    "hidden_size": 8, "num_layers": 2, "embedding_size": None, "dropout": 0.0, "init_all": None,
    "input_projection": True, "cell": "lstm", "bidirectional": False, "skip": False,
    "forget_bias": None, "init": None, "dilations": None, "transforms": "lstm", "priority": None,
    "tied": False, "schedule": None, "patch": 4, "corners": "top_left", "combine": "sum",
    "band_size": 10, "band_stride": None, "activation": "relu", "transform_bias": -2.0,
    "frequency_size": 16, "attention_size": None,
}
OLD_GRID = {**OLD_COMMON, "body": "grid", "transforms": "lstm,tanh", "priority": "time"}
OLD_STACK = {**OLD_COMMON, "body": "stack", "cell": "gru", "dilations": "1,2"}


def old_config(model: dict, run_dir) -> dict:
    return {"task": {"name": "copy", "batch_size": 4, "options": {"length": 3, "symbols": 4}},
            "model": model, "train": {"max_steps": 2, "epochs": None, "eval_every": 2,
                                      "log_every": 1, "evaluate_last": True},
            "run": {"dir": str(run_dir), "quiet": True, "plots": False}}


def test_an_old_run_directory_config_with_comma_strings_loads(tmp_path):
    grid = from_dict(old_config(OLD_GRID, tmp_path))
    assert type(grid.model) is BODIES["grid"].settings
    assert (grid.model.transforms, grid.model.priority) == (("lstm", "tanh"), ("time",))
    stack = from_dict(old_config(OLD_STACK, tmp_path)).model
    assert (stack.cell, stack.dilations) == ("gru", (1, 2))
    changed = {**OLD_GRID, "cell": "gru"}  # another body's setting away from its default
    with pytest.raises(ConfigError, match="model.cell='gru' is not a setting of body=grid"):
        from_dict(old_config(changed, tmp_path))


def test_an_old_run_directory_resumes(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--task=text", "--task.chars=20000", "--task.seq_len=8",
            "--task.batch_size=4", "--task.eval_max_batches=1", "--body=grid",
            "--model.hidden_size=8", "--model.num_layers=2",
            "--model.transforms=lstm,tanh", "--model.priority=time", "--train.max_steps=2",
            "--train.epochs=none", "--train.eval_every=2", "--quiet", "--run.plots=false",
            f"--run.dir={run_dir}"]
    assert main(argv) == 0
    saved = json.loads((run_dir / "config.json").read_text())
    saved["model"] = OLD_GRID  # as an older version wrote it
    (run_dir / "config.json").write_text(json.dumps(saved))
    assert main(["train", "--resume", str(run_dir), "--train.max_steps=3", "--quiet"]) == 0
    resumed = json.loads((run_dir / "config.json").read_text())
    assert resumed["train"]["max_steps"] == 3
    assert resumed["model"]["transforms"] == ["lstm", "tanh"] and "cell" not in resumed["model"]
    with pytest.raises(SystemExit):  # a resumed run keeps its model
        main(["train", "--resume", str(run_dir), "--model.tied", "--train.max_steps=4"])
    assert "model.tied: False -> True" in capsys.readouterr().err


def test_train_help_lists_every_body_setting(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name in bodies.settings_fields():
        assert f"--model.{name}" in text
    assert "--model.dilations INT,..." in text
