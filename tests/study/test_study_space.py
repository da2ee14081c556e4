"""The study's space: the paper's defaults, overrides from a file, and bad configs."""

from __future__ import annotations

import json

import optuna
import pytest

from rnnlab.study.space import PAPER_SPACE, load_space
from rnnlab.train.config import ConfigError


def test_paper_space_and_settings():
    space = load_space(None)
    assert (PAPER_SPACE["hidden_size"].low, PAPER_SPACE["hidden_size"].high) == (20, 200)
    assert (PAPER_SPACE["lr"].low, PAPER_SPACE["lr"].high) == (1e-6, 1e-2)
    assert PAPER_SPACE["momentum"].complement and PAPER_SPACE["momentum"].log
    assert space.settings["train.optimizer"] == "sgd" and space.settings["train.nesterov"]
    assert space.settings["train.patience"] >= 1  # early stopping on validation
    config = space.trial_config(
        "cifg", "jsb", {"hidden_size": 57, "lr": 1e-3, "momentum": 0.9, "input_noise": 0.2},
        seed=5,
    )
    assert (config.model.cell, config.model.hidden_size, config.train.lr) == ("cifg", 57, 1e-3)
    assert (config.train.momentum, config.train.input_noise) == (0.9, 0.2)
    assert config.train.nesterov and config.task.batch_size == 1 and config.train.seed == 5


def test_suggest_draws_inside_the_ranges():
    space = load_space(None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(50):
        values = space.suggest(study.ask())
        assert 20 <= values["hidden_size"] <= 200 and isinstance(values["hidden_size"], int)
        assert 1e-6 <= values["lr"] <= 1e-2
        assert 0.0 <= values["momentum"] <= 0.99 + 1e-12
        assert 0.0 <= values["input_noise"] <= 1.0


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_config_file_overrides(tmp_path, suffix):
    path = tmp_path / f"space{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"space": {"lr": {"low": 1e-4, "high": 0.1}},
                                    "settings": {"train.epochs": 7}}))
    else:
        path.write_text('[space.lr]\nlow = 1e-4\nhigh = 0.1\n[settings]\n"train.epochs" = 7\n')
    space = load_space(path, {"train.patience": 2})
    assert (space.space["lr"].low, space.space["lr"].high, space.space["lr"].log) == (
        1e-4, 0.1, True)
    assert space.settings["train.epochs"] == 7 and space.settings["train.patience"] == 2
    assert space.fingerprint() != load_space(None).fingerprint()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"space": {"depth": {"low": 1, "high": 2}}}, "unknown hyperparameter space.depth"),
        ({"space": {"lr": {"low": 0.0, "high": 1.0}}}, "needs low > 0"),
        ({"space": {"lr": {"low": 1.0, "high": 0.1}}}, "low must be below high"),
        ({"settings": {"train.lr": 0.1}}, "sampled from the space"),
        ({"other": {}}, "only 'space' and 'settings'"),
    ],
)
def test_bad_config_files(tmp_path, data, message):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_space(path)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_space(tmp_path / "bad.json")
