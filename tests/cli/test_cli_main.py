"""The rnnlab command line, run in-process on tiny budgets (and once as `python -m rnnlab`)."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rnnlab.cells
import rnnlab.tasks
from rnnlab.cli.main import EXIT_DIVERGED, main

REPO = Path(__file__).resolve().parents[2]
TINY = [  # wide evaluation batches keep the full-split passes at the end of each run short
    "--task.chars=60000", "--task.seq_len=8", "--task.batch_size=4", "--task.eval_max_batches=2",
    "--task.eval_batch_size=64",
    "--model.hidden_size=12", "--train.epochs=none", "--run.plots=false", "--quiet",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny character model shared by the evaluate / sample / report tests."""
    run_dir = tmp_path_factory.mktemp("runs") / "char"
    assert main(["train", *TINY, "--train.max_steps=12", "--train.eval_every=6",
                 f"--run.dir={run_dir}"]) == 0
    return run_dir


def test_list_shows_cells_with_equations_and_tasks(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in rnnlab.cells.names():
        assert f"[{name}]" in out
    assert str(rnnlab.cells.make("lstm", 8, 8)).strip().splitlines()[-1].strip() in out
    for name, text in rnnlab.tasks.describe_all().items():
        assert f"[{name}] {text}" in out
    assert main(["list", "tasks"]) == 0
    assert "[lstm]" not in capsys.readouterr().out


def test_train_writes_a_run(trained, capsys):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 12
    config = json.loads((trained / "config.json").read_text())
    assert config["model"]["hidden_size"] == 12 and config["run"]["quiet"] is True


def test_evaluate_prints_the_task_metric(trained, capsys):
    assert main(["evaluate", str(trained), "--split=test"]) == 0
    out = capsys.readouterr().out
    assert "test: loss" in out and "bits_per_char" in out
    summary = json.loads((trained / "summary.json").read_text())
    shown = float(out.split("bits_per_char ")[1].split(",")[0])
    assert shown == pytest.approx(summary["test"]["bits_per_char"], abs=1e-4)


def test_sample_continues_the_prime(trained, capsys):
    assert main(["sample", str(trained), "--prime", "def ", "--length", "40", "--seed", "3"]) == 0
    first = capsys.readouterr().out.rstrip("\n")
    assert first.startswith("def ") and len(first) == 44
    assert main(["sample", str(trained), "--prime", "def ", "--length", "40", "--seed", "3"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == first  # same seed, same text
    assert main(["sample", str(trained), "--length", "10", "--temperature", "0"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n")) == 10


def test_sample_rejects_text_outside_the_vocabulary(trained, capsys):
    assert main(["sample", str(trained), "--prime", "日本"]) == 1
    assert "not in the vocabulary" in capsys.readouterr().err


def test_resume_from_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main(["train", *TINY, "--train.max_steps=4", f"--run.dir={run_dir}"]) == 0
    assert main(["train", "--resume", str(run_dir), "--train.max_steps=7", "--quiet"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 7
    assert json.loads((run_dir / "config.json").read_text())["train"]["max_steps"] == 7
    assert len((run_dir / "command.txt").read_text().splitlines()) == 2


def test_report_tables_and_plots(trained, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(trained), str(trained), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "valid bits_per_char" in text and "| char |" in text
    assert (out / "report.md").is_file() and (out / "curves.png").stat().st_size > 0
    rows = json.loads((out / "report.json").read_text())
    assert rows[0]["steps"] == 12


def test_compare_configurations_side_by_side(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "lstm:cell=lstm", "gru:cell=gru", *TINY, "--model.num_layers=1",
                 "--budget-seconds=0.5", "--train.eval_every=5", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "| lstm |" in text and "| gru |" in text and "tokens/s" in text
    record = json.loads((out / "compare.json").read_text())
    counts = [c["parameters"] for c in record["configurations"]]
    assert abs(counts[1] - counts[0]) / counts[0] < 0.1  # the GRU was sized to the LSTM
    assert record["configurations"][1]["config"]["model"]["hidden_size"] != 12
    assert all(row["status"] == "budget" for row in record["rows"])
    assert (out / "curves.png").stat().st_size > 0
    assert (out / "lstm" / "summary.json").is_file() and (out / "gru" / "summary.json").is_file()
    # an equal-time comparison also shows the two at equal steps, and names the machine
    assert "At equal steps" in text and "lstm " in text.split("At equal steps")[1]
    assert "Machine: " in text and ("quiet." in text or "NOT quiet" in text)


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--cell=lsmt"], ["model.cell", "lstm", "cifg", "mut1"]),
        (["train", "--task=nope"], ["task.name", "arithmetic", "text"]),
        (["train", "--model.hidden_size=big"], ["model.hidden_size", "integer", "big"]),
        (["train", "--train.lr=-1"], ["train.lr", "> 0"]),
        (["train", "--bogus=1"], ["--bogus"]),
        (["train", "--train.steps=30"], ["'--train.steps=30'", "did you mean --train.max_steps?"]),
        (["train", "--model.hiden_size=8"], ["did you mean --model.hidden_size?"]),
        (["study", "run", "--trails", "3"], ["--trails", "did you mean --trials?"]),
        (["train", "--task.colour=red"], ["colour", "chars"]),
        (["evaluate"], ["run_dir"]),
        (["sample", "x", "--length", "-2"], ["--length"]),
        (["compare", "cell"], ["key=value"]),
        (["frobnicate"], ["frobnicate", "train"]),
    ],
)
def test_bad_arguments_are_rejected_with_the_choices(args, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


def test_missing_run_directory(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 1
    assert "not a run directory" in capsys.readouterr().err


def test_divergence_exits_with_its_own_status(tmp_path, monkeypatch, capsys):
    from rnnlab.train.trainer import Trainer

    original = Trainer.train_step

    def poisoned(self, batch):
        self.model.head.weight.data.fill_(float("inf"))
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    code = main(["train", *TINY, "--train.max_steps=3", f"--run.dir={tmp_path / 'r'}"])
    assert code == EXIT_DIVERGED
    assert "diverged" in capsys.readouterr().err


def test_python_dash_m_rnnlab():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--help"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "--model.hidden_size" in result.stdout and "--train.lr" in result.stdout
    assert "units per layer" in result.stdout  # the field's comment is its help


def test_an_unknown_option_far_from_every_known_one_gets_no_guess(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--bogus=1"])
    assert "did you mean" not in capsys.readouterr().err


def test_an_argument_error_is_one_line_with_a_pointer_to_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--model.hidden_size=big"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err
    assert err.startswith("rnnlab train: error: model.hidden_size must be an integer")
    assert err.rstrip().endswith("(see `rnnlab train --help`)")


@pytest.mark.parametrize("command", ["list", "train", "evaluate", "sample", "compare", "report"])
def test_every_subcommand_help_shows_the_defaults(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    options = [line for line in out.splitlines() if line.strip().startswith("--")
               and "--help" not in line]
    if command != "list":
        assert "default" in out
    flag, default = HELP_DEFAULTS.get(command, (None, None))
    if flag:
        assert f"default: {default}" in out.split("\n  " + flag, 1)[1][:400].replace("'", "")
    assert options or command == "list"


HELP_DEFAULTS = {"evaluate": ("--split", "all"), "sample": ("--temperature", "0.8"),
                 "compare": ("--budget-seconds", "90"), "report": ("--x", "step"),
                 "train": ("--train.lr", "0.002")}


def test_train_help_says_how_to_train_on_your_own_text(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--task.path=corpus.txt" in out and "own text" in out.lower()


def _raising(error):
    def body(*args, **kwargs):
        raise error
    return body


@pytest.mark.parametrize(("argv", "target", "code", "line"), [
    (["study", "report"], "rnnlab.cli.study.report_command", 130,
     "rnnlab study report: interrupted; the running trials are re-run by the next `rnnlab "
     "study run`"),
    (["search", "top"], "rnnlab.cli.search.run", 130,
     "rnnlab search top: interrupted; the running candidate will be re-run on resume"),
    (["list"], "rnnlab.cli.listing.run", 130, ""),
])
def test_one_guard_says_what_an_interrupt_leaves_behind(argv, target, code, line, monkeypatch,
                                                        capsys):
    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, _raising(KeyboardInterrupt()))
    assert main(argv) == code
    assert capsys.readouterr().err.strip() == line


def test_one_guard_makes_a_command_s_own_errors_one_line_and_leaves_bugs_alone(monkeypatch,
                                                                             capsys):
    import rnnlab.cli.listing
    import rnnlab.cli.study

    monkeypatch.delenv("RNNLAB_DEBUG", raising=False)
    failure = RuntimeError("worker rnnlab-worker-1 (exit code 1)\nsecond line")
    monkeypatch.setattr(rnnlab.cli.study, "report_command", _raising(failure))
    assert main(["study", "report"]) == 1  # a study's worker failure is the user's to see
    assert capsys.readouterr().err.strip() == (
        "rnnlab study report: error: worker rnnlab-worker-1 (exit code 1) second line "
        "(RNNLAB_DEBUG=1 shows the traceback)")
    monkeypatch.setattr(rnnlab.cli.listing, "run", _raising(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # elsewhere a RuntimeError is a bug
        main(["list"])
    monkeypatch.setenv("RNNLAB_DEBUG", "1")
    with pytest.raises(RuntimeError, match="worker"):  # the traceback on request
        main(["study", "report"])
