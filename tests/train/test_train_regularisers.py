"""The regularisers from the command line, on the stack and on the Grid LSTM: each trains in a
real run and shows in the cells' equations, evaluation is deterministic with them on, a bad
value is refused in one line, and at their defaults nothing reaches rnnlab.RNN or
rnnlab.GridLSTM (results stay bit for bit as before)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from train_helpers import TINY

import rnnlab
from rnnlab.cli.main import main
from rnnlab.lang import regularise
from rnnlab.train import checkpoint as ckpt
from rnnlab.train.bodies import REGULARISERS, GridConfig, Regularised, StackConfig, describe
from rnnlab.train.config import ExperimentConfig, apply_overrides, from_dict, to_dict
from rnnlab.train.evaluate import evaluate
from rnnlab.train.report import row
from rnnlab.train.trainer import build, make_task, seed_everything, train

# A copy task small enough to train and evaluate in about a second.
COPY = ["task.name=copy", "task.length=4", "task.symbols=6", "task.valid_size=16",
        "task.test_size=16", "task.eval_batch_size=8", "model.num_layers=2", "train.max_steps=2"]

# Each option, its command-line value and what the cell's equations print for it.
OPTIONS = {
    "input_dropout": ("0.2", "x ← m_x ⊙ x    (locked dropout p=0.2"),
    "recurrent_dropout": ("0.25", "m_h: locked dropout of h, p=0.25"),
    "output_dropout": ("0.2", "m_y: locked dropout of output, p=0.2"),
    "weight_drop": ("0.5", "R_i ← M_R_i ⊙ R_i    (weight drop p=0.5"),
    "zoneout": ("h:0.05,c:0.5", "d_c ~ Bernoulli(0.5): zoneout of c"),
    "layer_norm": ("true", "c_ln = g_c ⊙ norm(c') + b_c"),
}


def copy_config(*overrides: str) -> ExperimentConfig:
    return apply_overrides(ExperimentConfig(), [*COPY, *TINY, *overrides])


# The same on body=grid: each option, its value and what model.txt prints for it, how often
# (the cells of both dimensions, time and depth, show theirs; the grid its input and output).
GRID_OPTIONS = {
    "input_dropout": ("0.2", "input_dropout=0.2", 1),
    "recurrent_dropout": ("0.25", "m_h: locked dropout of h, p=0.25", 2),
    "output_dropout": ("0.2", "output_dropout=0.2", 1),
    "weight_drop": ("0.5", "R_u ← M_R_u ⊙ R_u    (weight drop p=0.5", 2),
    "zoneout": ("h:0.05,m:0.5", "d_m ~ Bernoulli(0.5): zoneout of m", 2),
    "layer_norm": ("true", "m_ln = g_m ⊙ norm(m') + b_m", 2),
}


def test_the_options_are_exactly_the_stack_settings_passed_to_rnnlab_rnn():
    assert set(OPTIONS) == set(REGULARISERS) == set(GRID_OPTIONS)
    assert set(REGULARISERS) <= {f for f in StackConfig.__dataclass_fields__}
    assert set(REGULARISERS) == set(regularise.OPTIONS)


def test_the_stack_and_the_grids_share_one_declaration_of_the_settings():
    from rnnlab.train.bodies import BODIES

    having = {name for name, body in BODIES.items() if issubclass(body.settings, Regularised)}
    assert having == {"stack", "grid", "grid_deep", "grid_image", "grid_spectrogram"}
    for name in having:  # declared once, in the mixin: no body repeats a field
        own = vars(BODIES[name].settings).get("__annotations__", {})
        assert not set(own) & set(REGULARISERS), name
    assert issubclass(GridConfig, Regularised)


@pytest.mark.parametrize("option", OPTIONS)
def test_each_regulariser_trains_and_shows_in_the_cell(option, tmp_path):
    value, printed = OPTIONS[option]
    config = copy_config(f"model.{option}={value}", "train.max_steps=3", "train.eval_every=3",
                         f"run.dir={tmp_path}")
    _, initial = build(config)
    run, summary = train(config)
    assert summary["status"] == "completed" and summary["steps"] == 3
    assert math.isfinite(summary["valid"]["loss"])
    trained = ckpt.load(run.path / "checkpoint.pt")["model"]
    assert any(not torch.equal(tensor, trained[name])
               for name, tensor in initial.state_dict().items())
    # both layers' cells carry it; the description names it
    for layer in ("layer0", "layer1"):
        assert printed in str(initial.body.rnn.cells[layer])
    assert (run.path / "model.txt").read_text().count(printed) == 2
    assert option in summary["model"]
    # `rnnlab report` / `compare` tables tell it apart from the same network without it
    assert option in row(run)["model"] and option not in describe(copy_config().model)


@pytest.mark.parametrize("body", ["stack", "grid"])
def test_layer_norm_joint_pools_the_gates_statistics(body, tmp_path):
    """--model.layer_norm=joint (Ba et al.'s statistics over all gates) trains, prints its
    pooled statistics in model.txt and is kept in the saved config."""
    config = copy_config(f"model.body={body}", "model.layer_norm=joint", "train.max_steps=2",
                         "train.eval_every=2", f"run.dir={tmp_path}")
    assert config.model.layer_norm == "joint"
    run, summary = train(config)
    assert summary["status"] == "completed" and math.isfinite(summary["valid"]["loss"])
    text = (run.path / "model.txt").read_text()
    assert ")[4]" in text and ")[1]" in text, text  # norm(…)[k]: block k of a pooled norm
    assert "'joint'" in summary["model"] or "joint" in row(run)["model"]


def test_zoneout_is_one_probability_for_every_field_or_one_per_field():
    every = copy_config("model.zoneout=0.1").model
    assert every.zoneout == 0.1
    _, model = build(copy_config("model.zoneout=0.1"))
    masks = {m.target: m.p for m in model.body.rnn.cells["layer0"].graph.masks.values()}
    assert masks == {"h": 0.1, "c": 0.1}
    per_field = copy_config("model.zoneout=h:0.05,c:0.5").model
    assert per_field.zoneout == {"h": 0.05, "c": 0.5}
    assert copy_config("model.zoneout={'h': 0.05}").model.zoneout == {"h": 0.05}  # as printed
    _, model = build(copy_config("model.zoneout=c:0.5", "model.cell=lstm"))
    masks = {m.target: m.p for m in model.body.rnn.cells["layer0"].graph.masks.values()}
    assert masks == {"c": 0.5}


def test_regularisers_round_trip_through_a_saved_config(tmp_path):
    config = copy_config("model.zoneout=h:0.05,c:0.5", "model.layer_norm=true",
                         "model.weight_drop=0.5", f"run.dir={tmp_path}")
    again = from_dict(json.loads(json.dumps(to_dict(config))))
    assert again == config and again.model.zoneout == {"h": 0.05, "c": 0.5}
    plain = copy_config("model.zoneout=0.3")
    assert from_dict(json.loads(json.dumps(to_dict(plain)))).model.zoneout == 0.3


def test_evaluation_is_deterministic_with_every_regulariser_on():
    config = copy_config(*(f"model.{name}={value}" for name, (value, _) in OPTIONS.items()))
    task, model = build(config)
    first = evaluate(model, task, "valid", 8)
    torch.manual_seed(123)  # the masks would differ if evaluation drew any
    second = evaluate(model, task, "valid", 8)
    assert first == second


def test_evaluation_with_dropout_and_weight_drop_is_the_plain_network():
    """In evaluation every dropout mask is its expectation 1: the same parameters compute the
    same numbers with or without the masks in the cell."""
    dropped = copy_config("model.input_dropout=0.3", "model.recurrent_dropout=0.3",
                          "model.output_dropout=0.3", "model.weight_drop=0.5")
    task, model = build(dropped)
    _, plain = build(copy_config())
    plain.load_state_dict(model.state_dict())  # the masks are not parameters
    model.train()
    batch = next(task.batches("valid", 8))
    trained_mode, _ = model(batch.inputs)
    assert not torch.allclose(trained_mode, plain.eval()(batch.inputs)[0])  # masks drawn
    assert evaluate(model, task, "valid", 8) == evaluate(plain, task, "valid", 8)


def test_at_the_defaults_nothing_new_reaches_rnnlab_rnn(monkeypatch):
    """The stack of a default config is built by the very call it was before the regularisers
    existed (so a run's results stay bit for bit), and equals one built by that call."""
    calls = []
    original = rnnlab.RNN

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(rnnlab, "RNN", recording)
    config = copy_config()
    _, model = build(config)
    (kwargs,) = calls
    assert set(kwargs) == {"num_layers", "bidirectional", "dropout", "skip", "dilations"}
    seed_everything(config.train.seed)  # as build: the task, the embedding, then the stack
    task = make_task(config)
    embedding = torch.nn.Embedding(task.input.size, config.model.hidden_size)
    rnn = original("lstm", config.model.hidden_size, config.model.hidden_size, num_layers=2)
    assert torch.equal(embedding.weight, model.input.weight)
    for name, tensor in rnn.state_dict().items():
        assert torch.equal(tensor, model.body.rnn.state_dict()[name]), name


@pytest.mark.parametrize("argv, says", [
    (["--model.weight_drop=1"], "model.weight_drop must be a probability in [0, 1), got 1.0"),
    (["--model.input_dropout=1.5"], "model.input_dropout must be a probability in [0, 1)"),
    (["--model.recurrent_dropout=-0.1"], "model.recurrent_dropout must be a probability"),
    (["--model.output_dropout=none"], "model.output_dropout must be a number"),
    (["--model.zoneout=1"], "model.zoneout must be a probability in [0, 1), got 1.0"),
    (["--model.zoneout=h:0.05,c:1"], "model.zoneout[c] must be a probability in [0, 1)"),
    (["--model.zoneout=x:0.1"], "zoneout names ['x'], which are not state fields of lstm"),
    (["--cell=gru", "--model.zoneout=c:0.1"], "not state fields of gru; its fields are ('h',)"),
    (["--model.zoneout=h:0.05,c"], "model.zoneout must be a float or name:float pairs"),
    (["--model.zoneout=often"], "model.zoneout must be a float or name:float pairs"),
    (["--model.layer_norm=maybe"],
     "model.layer_norm on cell lstm: layer_norm must be True, False, 'gate' or 'joint', got "
     "'maybe'"),
    (["--body=reencoder", "--model.zoneout=0.1"],
     "model.zoneout=0.1 is not a setting of body=reencoder"),
    (["--body=highway", "--model.layer_norm"], "model.layer_norm=True is not a setting of"),
    (["--body=freq_time", "--model.recurrent_dropout=0.1"],
     "model.recurrent_dropout=0.1 is not a setting of body=freq_time"),
    (["--body=grid", "--model.zoneout=c:0.1"],
     "model.zoneout on the time dimension of body=grid (lstm): zoneout names ['c'], which are "
     "not state fields of grid_lstm; its fields are ('h', 'm')"),
    (["--body=grid", "--model.transforms=tanh", "--model.recurrent_dropout=0.1"],
     "model.recurrent_dropout acts on the cells of body=grid's LSTM and zoo-cell dimensions"),
    (["--body=grid", "--model.weight_drop=1"], "model.weight_drop must be a probability"),
    (["--body=grid_deep", "--model.zoneout=h:0.1,c:0.1"], "not state fields of grid_lstm"),
])
def test_a_bad_regulariser_is_refused_in_one_line(argv, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--task=copy", "--train.max_steps=1", f"--run.dir={tmp_path / 'r'}",
              *argv])
    assert exit_.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], lines
    assert not (tmp_path / "r").exists()


def test_train_help_lists_the_regularisers(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in REGULARISERS:
        assert f"--model.{name}" in text
    assert "--model.zoneout FLOAT|NAME:FLOAT,..." in text


# --- body=grid ----------------------------------------------------------------------------------
@pytest.mark.parametrize("option", GRID_OPTIONS)
def test_each_regulariser_trains_on_the_grid_and_shows_in_its_cells(option, tmp_path):
    value, printed, count = GRID_OPTIONS[option]
    config = copy_config("model.body=grid", f"model.{option}={value}", "train.max_steps=2",
                         "train.eval_every=2", f"run.dir={tmp_path}")
    _, initial = build(config)
    assert initial.body.grid.regularisers == {option: config.model.__dict__[option]}
    run, summary = train(config)
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert math.isfinite(summary["valid"]["loss"])
    trained = ckpt.load(run.path / "checkpoint.pt")["model"]
    assert any(not torch.equal(tensor, trained[name])
               for name, tensor in initial.state_dict().items())
    assert str(initial.body.grid).count(printed) == count
    description, tree = (run.path / "model.txt").read_text().split("\n\n", 1)
    assert tree.count(printed) == count and option in description
    assert option in summary["model"]


def test_the_grid_s_evaluation_is_deterministic_with_every_regulariser_on():
    config = copy_config("model.body=grid", "model.tied=true",
                         *(f"model.{name}={value}" for name, (value, _, _) in
                           GRID_OPTIONS.items()))
    task, model = build(config)
    first = evaluate(model, task, "valid", 8)
    torch.manual_seed(123)
    assert evaluate(model, task, "valid", 8) == first


def test_the_grid_s_evaluation_with_dropouts_is_the_plain_grid():
    dropped = copy_config("model.body=grid", "model.input_dropout=0.3",
                          "model.recurrent_dropout=0.3", "model.output_dropout=0.3",
                          "model.weight_drop=0.5")
    task, model = build(dropped)
    _, plain = build(copy_config("model.body=grid"))
    plain.load_state_dict(model.state_dict())  # the masks are not parameters
    model.train()
    batch = next(task.batches("valid", 8))
    trained_mode, _ = model(batch.inputs)
    assert not torch.allclose(trained_mode, plain.eval()(batch.inputs)[0])  # masks drawn
    assert evaluate(model, task, "valid", 8) == evaluate(plain, task, "valid", 8)


@pytest.mark.parametrize("body", ["grid", "grid_deep"])
def test_at_the_defaults_nothing_new_reaches_the_grid_modules(monkeypatch, body):
    import rnnlab.grid

    module = {"grid": "GridLSTM", "grid_deep": "DeepGridLSTM"}[body]
    calls = []
    original = getattr(rnnlab.grid, module)

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(rnnlab.grid, module, recording)
    build(copy_config(f"model.body={body}"))
    (kwargs,) = calls
    assert not set(kwargs) & set(REGULARISERS)
    build(copy_config(f"model.body={body}", "model.recurrent_dropout=0.2"))
    assert calls[-1]["recurrent_dropout"] == 0.2
