"""A run one can trust and carry (issue 13): self-contained run directories, append-only
provenance, the final steps counted, results from the best parameters, damaged files named."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal

import pytest
import torch
from train_helpers import full_split, read_metrics, scripted_validation, tiny_config

import rnnlab.tasks as tasks
from rnnlab.cli.main import main
from rnnlab.train.evaluate import evaluate
from rnnlab.train.trainer import Trainer, build, train

CORPUS = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}\n"
                 for i in range(900))
CLI_TINY = ["--task.seq_len=8", "--task.batch_size=4", "--task.eval_max_batches=2",
            "--task.eval_batch_size=64",
            "--model.hidden_size=12", "--train.epochs=none", "--run.plots=false", "--quiet"]


def quick(*overrides, **kwargs):
    """tiny_config with wide evaluation batches and a small corpus: fast full-split passes."""
    return tiny_config("task.chars=20000", "task.eval_batch_size=64", *overrides, **kwargs)


def hashes(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"  # its holder
    }


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "data" / "my corpus.txt"
    path.parent.mkdir()
    path.write_text(CORPUS, encoding="utf-8")
    return path


def train_on(corpus, run_dir, *extra):
    return main(["train", "--task=text", f"--task.path={corpus}", *CLI_TINY,
                 f"--run.dir={run_dir}", *extra])


# --- item 2: a run directory carries what sampling needs; data checked by sha256 -----------------
def test_a_run_samples_after_its_corpus_moves_and_records_it_by_absolute_path(
    tmp_path, corpus, monkeypatch, capsys
):
    monkeypatch.chdir(corpus.parent)
    assert train_on(corpus.name, tmp_path / "run", "--train.max_steps=4") == 0  # relative path
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task"]["options"]["path"] == str(corpus.resolve())
    info = json.loads((tmp_path / "run" / "task.json").read_text())
    assert info["sha256"] == hashlib.sha256(CORPUS.encode()).hexdigest()
    vocab = json.loads((tmp_path / "run" / "vocab.json").read_text())
    assert "".join(vocab["symbols"]) == "".join(sorted(set(CORPUS)))
    monkeypatch.chdir(tmp_path)
    moved = corpus.with_name("elsewhere.txt")
    corpus.rename(moved)
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run"), "--prime", "line", "--length", "20"]) == 0
    assert capsys.readouterr().out.startswith("line")
    assert main(["evaluate", str(tmp_path / "run")]) == 1  # the data is gone: one clear line
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(moved)]) == 0


def test_evaluating_or_resuming_on_changed_data_is_refused(tmp_path, corpus, capsys):
    run = tmp_path / "run"
    assert train_on(corpus, run, "--train.max_steps=4", "--train.checkpoint_every=2") == 0
    corpus.write_text(CORPUS.replace("fox", "oxf"), encoding="utf-8")  # same characters
    before = hashes(run)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err
    assert "changed since" in err and "sha256" in err and "--data" in err
    assert main(["train", "--resume", str(run), "--train.max_steps=8"]) == 1
    err = capsys.readouterr().err
    assert "changed since" in err and "start a new run" in err
    assert hashes(run) == before
    assert main(["evaluate", str(run), "--data", str(corpus)]) == 0  # on purpose: allowed
    corpus.write_text(CORPUS + "Ω", encoding="utf-8")  # a character the model never saw
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(corpus)]) == 1
    assert "not in the vocabulary" in capsys.readouterr().err


# --- item 3: a finished run is never silently rewritten; provenance is append-only -------------
def test_a_finished_run_is_not_rewritten_and_extending_it_appends_its_history(
    tmp_path, corpus, capsys
):
    run = tmp_path / "run"
    assert train_on(corpus, run, "--train.max_steps=4") == 0
    before = hashes(run)
    first_summary = json.loads((run / "summary.json").read_text())
    assert main(["train", "--resume", str(run)]) == 1
    assert "is finished" in capsys.readouterr().err
    assert hashes(run) == before
    assert main(["train", "--resume", str(run), "--train.max_steps=6"]) == 0
    assert f"resuming {run} from step 4" in capsys.readouterr().out
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[0]["previous_summary"] == first_summary
    assert history[0]["previous_config"]["train"]["max_steps"] == 4
    finals = [r for r in read_metrics(run) if r.get("final")]
    assert [r["step"] for r in finals] == [4, 4, 6, 6]  # the first session's results stay
    assert (run / "command.txt").read_text().count("\n") == 2  # the refused one left no trace


# --- item 4: a deleted metrics.jsonl is reported on resume ---------------------------------------
def test_a_deleted_history_is_reported_on_resume(tmp_path, corpus, capsys, monkeypatch):
    run = tmp_path / "run"
    _stop_at(monkeypatch, 5)
    assert train_on(corpus, run, "--train.max_steps=8", "--train.checkpoint_every=2",
                    "--train.log_every=1") == 130
    monkeypatch.undo()
    (run / "metrics.jsonl").unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    captured = capsys.readouterr()
    assert "records of this run's history were deleted or cut" in captured.err
    assert f"resuming {run} from step 5" in captured.out  # Ctrl-C stops after its step


def _stop_at(monkeypatch, step):
    """Ctrl-C while step ``step`` is being taken."""
    original = Trainer.train_step

    def train_step(self, batch):
        if self.counters.step + 1 == step:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", train_step)


# --- item 16: Ctrl-C saves a checkpoint of the step it stops at ---------------------------------
def test_ctrl_c_saves_a_checkpoint_before_exiting(tmp_path, corpus, monkeypatch, capsys):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    _stop_at(monkeypatch, 3)
    assert train_on(corpus, run, "--train.max_steps=50", "--train.checkpoint_every=100") == 130
    assert torch.load(run / "checkpoint.pt", weights_only=True)["counters"]["step"] == 3
    assert "interrupted at step 3" in capsys.readouterr().out  # after the step it was taking
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is put back


# --- item 5: the steps after the last periodic validation count ---------------------------------
def test_the_final_step_is_validated_before_the_best_is_chosen(tmp_path, monkeypatch):
    snapshots = scripted_validation(monkeypatch, [2.0, 1.0])
    config = quick("train.max_steps=15", "train.eval_every=10",
                         f"run.dir={tmp_path / 'r'}")
    run, summary = train(config)
    assert sorted(snapshots) == [10, 15]
    assert summary["best_step"] == 15
    assert [r["step"] for r in read_metrics(run.path)
            if r["split"] == "valid" and not r.get("final")] == [10, 15]
    expected = full_split(config, snapshots[15], "test")
    assert summary["test"]["bits_per_char"] == pytest.approx(expected["bits_per_char"])


# --- item 19: final numbers, best.pt and `evaluate --which best` come from the best parameters ---
def test_results_best_pt_and_evaluate_best_come_from_the_best_validated_parameters(
    tmp_path, monkeypatch, capsys
):
    snapshots = scripted_validation(monkeypatch, [3.0, 1.0, 2.0, 2.5])  # the best at step 6
    config = quick("train.max_steps=12", "train.eval_every=3", f"run.dir={tmp_path / 'r'}")
    run, summary = train(config)
    assert summary["best_step"] == 6
    best = torch.load(run.path / "best.pt", weights_only=True)
    assert best["step"] == 6
    for key, value in snapshots[6].items():
        assert torch.equal(best["model"][key], value), key
    assert any(not torch.equal(snapshots[6][k], snapshots[12][k]) for k in snapshots[6])
    for split in ("valid", "test"):
        expected = full_split(config, snapshots[6], split)
        assert summary[split]["bits_per_char"] == pytest.approx(expected["bits_per_char"])
        other = full_split(config, snapshots[12], split)["bits_per_char"]
        assert summary[split]["bits_per_char"] != pytest.approx(other)
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["evaluate", str(run.path), "--split=valid", "--which=best"]) == 0
    shown = float(capsys.readouterr().out.split("bits_per_char ")[1].split(",")[0])
    assert shown == pytest.approx(summary["valid"]["bits_per_char"], abs=1e-4)


# --- item 20: evaluation carries the state across the batches of a stream ------------------------
def test_a_multi_batch_evaluation_equals_one_long_pass():
    task = tasks.make("text", chars=30000, seq_len=8)
    config = quick("train.max_steps=1")
    torch.manual_seed(0)
    _, model = build(config)
    batches = evaluate(model, task, "valid", 4, seq_len=8)
    one_pass = evaluate(model, task, "valid", 4, seq_len=10**6)
    assert task.batches_per_epoch("valid", 4, seq_len=8) > 10
    assert batches["bits_per_char"] == pytest.approx(one_pass["bits_per_char"], rel=1e-5)


# --- item 7: damaged checkpoints: one line naming the file; resume falls back -------------------
DAMAGES = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "random": lambda data: os.urandom(4096),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    config = quick("train.max_steps=6", "train.eval_every=2", "train.checkpoint_every=2",
                         f"run.dir={run}")
    train(config)
    return run


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("name, command", [
    ("best.pt", ["evaluate"]), ("checkpoint.pt", ["evaluate", "--which=last"]),
    ("best.pt", ["sample", "--length=3"]), ("checkpoint.pt", ["sample", "--which=last"]),
])
def test_a_damaged_checkpoint_is_named_in_one_line(finished, tmp_path, damage, name, command,
                                                   capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    path = run / name
    path.write_bytes(DAMAGES[damage](path.read_bytes()))
    assert main([command[0], str(run), *command[1:]]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path} is damaged" in err and "weights_only" not in err


@pytest.mark.parametrize("damage", [
    "truncated",
    # the loaders' answers to other damage are covered by the fuzz test; these retrain
    pytest.param("empty", marks=pytest.mark.slow),
    pytest.param("random", marks=pytest.mark.slow),
])
def test_resume_falls_back_to_the_previous_checkpoint_saying_so(tmp_path, damage, capsys,
                                                                 monkeypatch):
    run = tmp_path / "run"
    _stop_at(monkeypatch, 5)
    config_args = ["train", "--task.chars=20000", *CLI_TINY, "--train.max_steps=8",
                   "--train.checkpoint_every=2", f"--run.dir={run}"]
    assert main(config_args) == 130  # checkpoints at 2, 4 and 5, where Ctrl-C stopped it
    monkeypatch.undo()
    assert torch.load(run / "checkpoint.prev.pt", weights_only=True)["counters"]["step"] == 4
    latest = run / "checkpoint.pt"
    latest.write_bytes(DAMAGES[damage](latest.read_bytes()))
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    captured = capsys.readouterr()
    assert f"{latest} is damaged" in captured.err
    assert "resuming from the previous checkpoint checkpoint.prev.pt (step 4)" in captured.err
    assert json.loads((run / "summary.json").read_text())["steps"] == 8


def test_resume_from_the_previous_checkpoint_alone(tmp_path, finished, capsys):
    # a run killed between moving checkpoint.pt to checkpoint.prev.pt and writing the new one
    # resumes from the previous one, from the command line as through train()
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "checkpoint.pt").replace(run / "checkpoint.prev.pt")
    (run / "summary.json").unlink()
    steps = torch.load(run / "checkpoint.prev.pt", weights_only=True)["counters"]["step"]
    capsys.readouterr()
    assert main(["train", "--resume", str(run), f"--train.max_steps={steps + 2}"]) == 0
    err = capsys.readouterr().err
    assert f"resuming from the previous checkpoint checkpoint.prev.pt (step {steps})" in err
    assert json.loads((run / "summary.json").read_text())["steps"] == steps + 2


def test_both_checkpoints_damaged_is_one_line_naming_both(tmp_path, finished, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).write_bytes(b"garbage")
    (run / "summary.json").unlink()
    assert main(["train", "--resume", str(run), "--train.max_steps=9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint.pt is damaged" in err
    assert "checkpoint.prev.pt is damaged" in err


# --- item 8: damaged JSON files are named -------------------------------------------------------
@pytest.mark.parametrize("name, text, command", [
    ("config.json", "{not json", ["evaluate"]),
    ("config.json", '{"model": {"hidden_size": "x"}}', ["evaluate"]),
    ("config.json", "[1, 2]", ["sample"]),
    ("summary.json", "\x00\x01garbage", ["report"]),
    ("metrics.jsonl", '{"split": "train", "step": 1}\nnot json\n{"step": 2}\n', ["report"]),
    ("metrics.jsonl", "\xff\xfe", ["report"]),
    ("vocab.json", '{"symbols": 5}', ["sample"]),
])
def test_a_damaged_run_file_is_named(finished, tmp_path, name, text, command, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / name).write_bytes(text.encode("utf-8", "surrogateescape") if "\xff" not in text
                             else b"\xff\xfe")
    args = [command[0], str(run), *command[1:]]
    if command[0] == "report":
        args.append(f"--out={tmp_path / 'report'}")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and str(run / name) in err


# --- item 9: a folder as task.path ----------------------------------------------------------------
def test_a_folder_is_every_text_file_under_it_in_sorted_order(tmp_path):
    folder = tmp_path / "texts"
    (folder / "b").mkdir(parents=True)
    (folder / "b" / "two.txt").write_text("second part. " * 200, encoding="utf-8")
    (folder / "a.txt").write_text("first part. " * 200, encoding="utf-8")
    (folder / ".hidden").write_text("not read", encoding="utf-8")
    task = tasks.make("text", path=folder)
    text = "first part. " * 200 + "second part. " * 200
    assert task.info["files"] == ["a.txt", "b/two.txt"]
    assert task.info["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert task.info["source"] == str(folder.resolve())
    (folder / "bad.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="bad.bin is not UTF-8"):
        tasks.make("text", path=folder)


# --- item 11: a data error leaves no run directory ------------------------------------------------
@pytest.mark.parametrize("path", ["missing.txt", "empty.txt"])
def test_a_data_error_at_start_leaves_no_run_directory(tmp_path, path, capsys):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    run = tmp_path / "runs" / "r"
    assert main(["train", f"--task.path={tmp_path / path}", *CLI_TINY,
                 "--train.max_steps=2", f"--run.dir={run}"]) == 1
    assert not run.exists() and not (tmp_path / "runs").exists()
    assert capsys.readouterr().err.count("\n") == 1


# --- item 17: progress labels ---------------------------------------------------------------
def test_validation_is_labelled_estimate_or_full_split_and_the_budget_has_an_eta(tmp_path):
    import io

    stream = io.StringIO()
    config = quick("train.max_steps=4", "train.eval_every=2", "run.quiet=false",
                         f"run.dir={tmp_path / 'r'}")
    train(config, stream=stream)
    text = stream.getvalue()
    assert "valid estimate on 1,024 characters" in text  # 2 batches x 64 sequences x 8 steps
    assert "final valid (full split, " in text and "final test (full split, " in text
    assert "step 2/4, ETA" in text
    from rnnlab.train.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    progress = Progress(None, budget=90.0, elapsed=30.0, stream=terminal)
    progress.update(1, 12.0, loss=1.5)
    progress.close()
    assert "42/90 s" in terminal.getvalue() and "ETA" in terminal.getvalue()
    assert Progress(None, budget=90.0, elapsed=30.0, quiet=True).timing() == (
        "30 s of 90 s budget, ETA 60 s"
    )


# --- item 18: curves name the task and budget, count parameters, mark the final value -----------
def test_curves_name_the_task_budget_and_parameter_counts_and_mark_the_final(tmp_path, corpus,
                                                                              monkeypatch):
    from rnnlab.train.plots import final_point, learning_curves, legend_label, title
    from rnnlab.train.run import RunDir

    config = quick("train.max_steps=4", "train.eval_every=2", f"run.dir={tmp_path / 'r'}",
                         task=["task.name=text", f"task.path={corpus}", "task.seq_len=8"])
    run, summary = train(config)
    assert title([run], budget=90) == "task text (my corpus.txt), budget 90 s per model"
    assert legend_label(run, "lstm") == f"lstm ({summary['parameters']:,} params)"
    # the star: the full-split value of the kept (best) parameters, at the step they come from
    kept = summary["best_step"]
    assert kept in (2, 4)
    assert final_point(run, "step", "bits_per_char") == (
        [kept], [summary["valid"]["bits_per_char"]]
    )
    at = next(r["time"] for r in run.metrics() if r["split"] == "valid" and r["step"] == kept)
    assert final_point(run, "time", "bits_per_char")[0] == [at]
    assert learning_curves([RunDir(run.path)], tmp_path / "c.png", budget=90).stat().st_size
    # the seeds of one network: one colour, their own line styles, one legend entry
    import shutil

    from rnnlab.train import plots

    names = ["lstm-s0", "lstm-s1", "lstm-s2", "gru-d0"]
    for name in names:
        shutil.copytree(run.path, tmp_path / "many" / name)
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    learning_curves([RunDir(tmp_path / "many" / n) for n in names], tmp_path / "m.png")
    (figure,) = figures
    texts = [t.get_text() for t in figure.legends[0].get_texts()]
    count = f"{summary['parameters']:,} params"
    assert texts == [f"lstm ({count}), 3 seeds", f"gru ({count})",
                     "kept parameters, full split"]
    lines = figure.axes[1].lines[::2]  # (each run's curve, then its star)
    assert len({line.get_color() for line in lines[:3]}) == 1 != len(
        {line.get_color() for line in lines})
    assert len({line.get_linestyle() for line in lines[:3]}) == 3
    assert plots.seed_group("grid-L2-k20-s12") == "grid-L2-k20"
    assert plots.seed_group("arith-gru-d2") == "arith-gru"
    assert plots.seed_group("lstm") == "lstm"


# --- item 22: PTB tokenisation on a small synthetic file ------------------------------------
def test_ptb_reads_eos_per_line_and_keeps_unk(tmp_path):
    lines = {"train": " the cat sat on the <unk> mat \n a dog \n", "valid": " the dog \n",
             "test": " a <unk> cat \n"}
    for split, text in lines.items():
        (tmp_path / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    task = tasks.make("ptb", path=tmp_path, verify=False)
    train_text = task.decode(task.splits["train"])
    assert train_text.split() == ["the", "cat", "sat", "on", "the", "<unk>", "mat", "<eos>",
                                  "a", "dog", "<eos>"]
    assert "<unk>" in task.vocab and "<eos>" in task.vocab
    assert task.decode(task.splits["test"]).split() == ["a", "<unk>", "cat", "<eos>"]

