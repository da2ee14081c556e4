"""Config dataclasses: overrides, type checks, registry names, JSON round trip."""

import json

import pytest

import rnnlab.cells
import rnnlab.tasks
from rnnlab.train.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    describe_fields,
    field_comments,
    from_dict,
    sections,
    to_dict,
)


def test_overrides_convert_to_field_types():
    config = apply_overrides(
        ExperimentConfig(),
        [
            "model.hidden_size=256",
            "--train.lr=0.1",
            "train.clip_norm=none",
            "model.bidirectional=true",
            "cell=cifg",
            "task=arithmetic",
            "task.digits=3",
            "train.epochs=none",
            "train.max_steps=7",
        ],
    )
    assert config.model.hidden_size == 256 and isinstance(config.model.hidden_size, int)
    assert config.train.lr == 0.1
    assert config.train.clip_norm is None
    assert config.model.bidirectional is True
    assert config.model.cell == "cifg"
    assert config.task.name == "arithmetic"
    assert config.task.options == {"digits": 3}


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.hidden_size=abc", ["model.hidden_size", "integer", "abc"]),
        ("model.hidden_size=0", ["model.hidden_size", ">= 1", "0"]),
        ("train.lr=fast", ["train.lr", "number"]),
        ("model.bidirectional=maybe", ["true or false"]),
        ("model.cell=lsmt", ["model.cell", "lstm", "cifg", "gru", "lsmt"]),
        ("task.name=nope", ["task.name", "arithmetic", "text"]),
        ("train.optimizer=adagrad", ["sgd", "adam", "rmsprop"]),
        ("model.hiden_size=3", ["model.hiden_size", "hidden_size"]),
        ("nosection=3", ["section.field"]),
        ("model.hidden_size", ["section.field=value"]),
        ("train.nesterov=true", ["momentum"]),
        ("task.no_such_option=1", ["no_such_option", "seq_len"]),
    ],
)
def test_bad_values_are_rejected_with_what_was_expected(override, words):
    with pytest.raises(ConfigError) as error:
        apply_overrides(ExperimentConfig(), [override])
    for word in words:
        assert word in str(error.value)


def test_cell_and_task_names_come_from_the_registries():
    for name in rnnlab.cells.names():
        assert apply_overrides(ExperimentConfig(), [f"cell={name}"]).model.cell == name
    for name in rnnlab.tasks.names():
        assert apply_overrides(ExperimentConfig(), [f"task={name}"]).task.name == name


def test_a_run_needs_a_limit():
    with pytest.raises(ConfigError, match="limit"):
        apply_overrides(ExperimentConfig(), ["train.epochs=none"])


def test_json_round_trip():
    config = apply_overrides(
        ExperimentConfig(), ["model.hidden_size=12", "train.lr=1", "task=copy", "task.length=4"]
    )
    data = json.loads(json.dumps(to_dict(config)))
    again = from_dict(data)
    assert again == config
    assert isinstance(again.train.lr, float)
    data["model"]["bogus"] = 1
    with pytest.raises(ConfigError, match="bogus"):
        from_dict(data)


def test_every_field_has_a_comment():
    for name, kind in sections().items():
        comments = field_comments(kind)
        for key, _, _, comment in describe_fields():
            if key.startswith(name + "."):
                assert comment, f"{key} has no comment on its default"
        assert comments


def test_the_docs_list_every_field_with_its_default():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    for key, _, default, _ in describe_fields():
        assert f"| `{key}` |" in docs, f"docs/training.md does not document {key}"
        assert f"`{default!r}`" in docs
