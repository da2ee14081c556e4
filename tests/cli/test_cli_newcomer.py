"""What a newcomer met on the command line: the help, output to a closed pipe, resuming with
another model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rnnlab.cells
import rnnlab.tasks
from rnnlab.cli.main import main
from rnnlab.train.bodies import BODIES

REPO = Path(__file__).resolve().parents[2]
TINY = ["--task.chars=60000", "--task.seq_len=8", "--task.batch_size=4",
        "--task.eval_max_batches=1", "--task.eval_batch_size=64", "--model.hidden_size=8",
        "--run.plots=false"]


def help_of(command, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def option_help(text: str, option: str) -> str:
    """The words of ``option``'s help (its lines up to the next option's), unwrapped."""
    lines = text.split(f"\n  {option}", 1)[1].splitlines()
    own = [lines[0]]
    for line in lines[1:]:
        if line.startswith("  -") or not line.startswith("    "):
            break
        own.append(line)
    return " ".join(" ".join(own).split())


# --- the help names what it points to, and shows the defaults each command uses --------------
def test_train_help_lists_the_bodies_cells_and_tasks(capsys):
    text = help_of("train", capsys)
    bodies = option_help(text, "--model.body STR")
    assert all(name in bodies for name in BODIES)
    cells = option_help(text, "--model.cell STR")
    assert all(name in cells for name in rnnlab.cells.names())
    tasks = option_help(text, "--task.name STR")
    assert all(name in tasks for name in rnnlab.tasks.names())


def test_compare_help_shows_compare_defaults(capsys):
    text = help_of("compare", capsys)
    assert "[default: 3]" in option_help(text, "--model.num_layers INT")
    assert "[default: 90.0]" in option_help(text, "--train.budget_seconds FLOAT|NONE")
    assert "[default: None]" in option_help(text, "--train.epochs INT|NONE")
    assert "[default: 100 " in option_help(text, "--train.eval_every INT|NONE")
    assert "rnnlab list tasks" in option_help(text, "--task.batch_size INT")
    assert "--train.max_steps" in option_help(text, "--budget-seconds BUDGET_SECONDS")
    text = help_of("train", capsys)
    assert "[default: 1]" in option_help(text, "--model.num_layers INT")
    assert "[default: 10]" in option_help(text, "--train.epochs INT|NONE")


def test_list_tasks_shows_each_tasks_training_defaults(capsys):
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    jsb = out.split("[jsb]", 1)[1].split("\n[", 1)[0]
    assert "training defaults" in jsb and "task.batch_size=8" in jsb
    assert "training defaults" not in out.split("[text]", 1)[1].split("\n[", 1)[0]


# --- output to a closed pipe never ends a run ---------------------------------------------------
def _train_into_a_pipe(run_dir: Path, stderr) -> subprocess.Popen:
    """`rnnlab train ... | head -1`: a run whose reader closes after the first line."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", "train", *TINY, "--train.max_steps=40",
         "--train.eval_every=4", f"--run.dir={run_dir}"],
        stdout=subprocess.PIPE, stderr=stderr, env=env,
    )
    assert process.stdout.readline()  # the first line
    process.stdout.close()  # the reader goes away; validations and results are still to come
    return process


def test_a_run_piped_into_a_reader_that_stops_early_still_finishes(tmp_path):
    run_dir = tmp_path / "r"
    process = _train_into_a_pipe(run_dir, subprocess.STDOUT)  # `2>&1 | head -1`
    assert process.wait(timeout=300) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 40


def test_a_closed_stdout_leaves_no_traceback_and_exit_status_0(tmp_path):
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as handle:
        process = _train_into_a_pipe(tmp_path / "r", handle)  # `| head -1`
        assert process.wait(timeout=300) == 0
    text = errors.read_text()
    assert "Broken pipe" not in text and "BrokenPipeError" not in text
    assert "Traceback" not in text and "Exception ignored" not in text
    assert "final test (full split" in text  # stderr was still open: its lines all came
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "completed"


# --- resuming with another model says which settings differ -------------------------------------
def test_resuming_with_another_model_names_the_settings_that_differ(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main(["train", *TINY, "--train.max_steps=2", "--quiet", f"--run.dir={run_dir}"]) == 0
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--resume", str(run_dir), "--train.max_steps=4", "--cell=gru",
              "--model.hidden_size=9"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged" not in err
    assert "model.hidden_size: 8 -> 9" in err and "model.cell: 'lstm' -> 'gru'" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    # settings that leave the parameters as they are may change
    assert main(["train", "--resume", str(run_dir), "--train.max_steps=3", "--quiet",
                 "--model.dropout=0.1"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 3


def test_any_command_whose_reader_goes_away_ends_quietly_with_status_0(monkeypatch, capsys):
    # `rnnlab reproduce --list | head -1`, `rnnlab sample RUN | head`: the reader closing the
    # pipe is not an error of the command (before: "Broken pipe" and exit status 1)
    import io

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["reproduce", "--list"]) == 0
    assert "Broken pipe" not in capsys.readouterr().err
