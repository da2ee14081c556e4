"""Every reproduction entry's config loads and trains a few steps; the runner, table and CLI
work end to end on a small run."""

from __future__ import annotations

import json

import pytest

from rnnlab.cli.main import main
from rnnlab.reproduce import entries
from rnnlab.reproduce.table import NOT_RUN, build_table, write_readme
from rnnlab.train.run import RunDir
from rnnlab.train.trainer import Trainer, build

DATA_TASKS = {"ptb", "ptb_char", "jsb", "tinyshakespeare", "digits_ctc"}


def _distinct_runs():
    """One run per distinct (task, model) shape: every cell, body and task of every entry."""
    seen, picked = set(), []
    for name in entries.names():
        for run in entries.get(name).runs:
            s = run.settings
            shape = (s.get("task.name"), s.get("model.body", "stack"), s.get("model.cell"),
                     s.get("model.tied"), s.get("model.input_projection"))
            if shape not in seen:
                seen.add(shape)
                picked.append(pytest.param(name, run.label, id=f"{name}/{run.label}"))
    return picked


def test_every_entry_and_budget_gives_a_valid_config():
    for name in entries.names():
        entry = entries.get(name)
        assert entry.rows and entry.runs and entry.paper and entry.scaled
        labels = {run.label for run in entry.runs}
        for row in entry.rows:
            assert set(row["runs"]) <= labels, (name, row)
        for budget in ("full", "small"):
            for run in entry.runs:
                run.config(entry.budgets[budget])  # validates


def test_the_zaremba_entry_is_the_papers_recipe():
    config = entries.get("zaremba-ptb-small").runs[0].config()
    t, m, tr = config.task, config.model, config.train
    assert (t.name, t.seq_len, t.batch_size, t.test_batch_size) == ("ptb", 20, 20, 1)
    assert (m.cell, m.num_layers, m.hidden_size, m.forget_bias) == ("lstm", 2, 200, 0.0)
    assert m.init_all == "uniform:0.1" and m.dropout == 0.0
    assert (tr.optimizer, tr.lr, tr.clip_norm, tr.epochs) == ("sgd", 1.0, 5.0, 13)
    assert (tr.schedule, tr.decay_after, tr.lr_decay) == ("zaremba", 4, 2.0)
    assert tr.loss_reduction == "sequence"


@pytest.mark.parametrize("name,label", _distinct_runs())
def test_entry_run_trains_a_few_steps(name, label, tmp_path, request):
    entry = entries.get(name)
    config = entry.run(label).config(entry.budgets["small"])
    if config.task.name in DATA_TASKS:
        request.getfixturevalue("data_env")
        config.task.options["download"] = False
    config.task.batch_size = min(config.task.batch_size, 4)
    if "length" in config.task.options:  # keep the generated copy sequences short here
        config.task.options["length"] = 5
    if config.task.name == "parity":
        config.task.options["bits"] = 12
    import rnnlab.tasks

    if "valid_size" in rnnlab.tasks.factory_options(config.task.name):
        config.task.options.update(valid_size=8, test_size=8)  # small sets build faster
    task, model = build(config)
    run = RunDir(tmp_path / "run")
    run.create(config, [])
    trainer = Trainer(config, task, model, run)
    batches = task.batches("train", config.task.batch_size, seq_len=config.task.seq_len)
    losses = [trainer.train_step(next(batches))[0] for _ in range(2)]
    assert all(loss == loss and loss > 0 for loss in losses)


def test_unknown_entry_and_bad_budget_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "no-such-paper"])
    assert exit_info.value.code == 2
    assert "unknown reproduction 'no-such-paper'" in capsys.readouterr().err
    assert main(["reproduce", "forget-bias", "--budget", "lots", "--out", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert "--budget must be full, small or a number of training steps" in err
    with pytest.raises(SystemExit):
        main(["reproduce", "--table", "--results", "/nonexistent-results"])
    assert "no such folder" in capsys.readouterr().err
    assert "Traceback" not in err


def test_list_names_every_entry(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in entries.names():
        assert name in out
    assert "114.5" in out and "8.54" in out
    for name in entries.names():  # each entry: its claim, its budget in steps, n per row
        entry = entries.get(name)
        assert f"claim: {entry.claim}" in out and entry.budget_text("full") in out
    assert "seconds" not in out and "n=3 per row" in out


def test_no_entry_budget_is_in_seconds():
    for name in entries.names():
        entry = entries.get(name)
        for budget in entry.budgets.values():
            assert "train.budget_seconds" not in budget, name
        for run in entry.runs:
            assert run.settings.get("train.budget_seconds") is None, (name, run.label)
            config = run.config(entry.budgets["full"])
            assert config.train.max_steps or config.train.epochs, (name, run.label)


def test_every_stochastic_row_has_three_seeds_and_every_comparison_names_two_rows():
    for name in entries.names():
        entry = entries.get(name)
        if name != "jozefowicz-table":  # the paper's protocol: the best of 3 draws
            assert entry.seeds_per_row() >= 3, name
        for comparison in entry.comparisons:
            assert entry.row(comparison["a"]) is not entry.row(comparison["b"])


def test_reproduce_end_to_end_then_table(tmp_path, capsys):
    """One real run through the CLI into a run directory; the table reads its number."""
    out = tmp_path / "runs"
    argv = ["reproduce", "forget-bias", "--runs", "fb1-s0", "--budget", "2", "--out", str(out),
            "--set", "task.length=4", "--set", "task.valid_size=64",
            "--set", "task.test_size=64", "--set", "train.eval_every=20",
            "--results", str(tmp_path / "results")]
    assert main(argv) == 0
    root = out / "forget-bias"
    record = json.loads((root / "reproduction.json").read_text())
    assert record["runs"]["fb1-s0"]["wall_seconds"] > 0 and record["budget"] == "2"
    summary = json.loads((root / "fb1-s0" / "summary.json").read_text())
    assert summary["steps"] == 2  # a number budget is steps, never seconds
    assert not (tmp_path / "results").exists()  # only the full budget is kept
    assert (root / "gradflow" / "gradflow.png").is_file()
    table = build_table(out)
    accuracy = f"{summary['test']['accuracy']:.3f}"
    assert "| forget-bias |" in table and NOT_RUN in table  # fb0 runs were not trained
    assert main(argv) == 0  # a second call keeps the finished run
    assert "done already" in capsys.readouterr().out
    # several runs of a row give mean ± std
    for label in ("fb1-s1", "fb1-s2"):
        (root / label).mkdir()
        (root / label / "summary.json").write_text(json.dumps(summary))
    table = build_table(out)
    assert f"{accuracy} ± 0.000 (n=3)" in table and "max_steps=2" in table
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- reproductions:begin -->\nold\n<!-- reproductions:end -->\n")
    write_readme(readme, table)
    text = readme.read_text()
    assert "old" not in text and f"{accuracy} ± 0.000" in text and text.startswith("intro")
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        write_readme(readme, table)


def test_cli_module_follows_the_subcommand_protocol(capsys):
    """``add_parser(subparsers)`` adds reproduce and gradflow with a handler each (the protocol
    of rnnlab.cli modules, so that registering is one name in COMMANDS)."""
    import argparse

    from rnnlab.cli import reproduce as module

    parser = argparse.ArgumentParser(prog="rnnlab")
    subparsers = parser.add_subparsers(dest="command")
    module.add_parser(subparsers)
    assert {"reproduce", "gradflow"} <= set(subparsers.choices)
    args = parser.parse_args(["reproduce", "--list"])
    assert args.handler(args, subparsers.choices["reproduce"], [], ["reproduce", "--list"]) == 0
    assert "zaremba-ptb-small" in capsys.readouterr().out
