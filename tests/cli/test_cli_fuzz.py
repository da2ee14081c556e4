"""Fuzzing the command line and the loaders with malformed input (issue 13, item 13).

Every case — a bad option or value, a bad corpus file, a damaged checkpoint, a damaged or
missing run directory — must end with a non-zero exit status and exactly one line on stderr,
without a traceback, and must leave every file of an existing run as it was. The same holds for
the storages of ``rnnlab study`` and ``rnnlab search``: a refused command (a name reused with
other settings, a bad option) leaves every byte of the study's and the search's journal file
as it was. ``main`` runs in-process, so the few hundred cases take seconds.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import typing
from pathlib import Path

import pytest
import torch

from rnnlab.cli.main import main
from rnnlab.train.config import describe_fields, field_types, sections

TINY = ["--task.chars=20000", "--task.seq_len=8", "--task.batch_size=4",
        "--task.eval_max_batches=1", "--task.eval_batch_size=64", "--model.hidden_size=8",
        "--train.epochs=none", "--run.plots=false", "--quiet"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run that every case may read and none may change."""
    run = tmp_path_factory.mktemp("fuzz") / "run"
    assert main(["train", *TINY, "--train.max_steps=4", "--train.eval_every=2",
                 f"--run.dir={run}"]) == 0
    return run


def hashes(folder: Path) -> dict[str, str]:
    """Every file of a run but its lock (``.lock`` names whichever process held it last)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"
    }


def refused_in_one_line(argv, capsys, case) -> str:
    """Run ``rnnlab argv``; check it is refused (nonzero status) with exactly one error line and
    no traceback; return what it wrote to stderr."""
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status not in (0, None), f"{case}: accepted"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case}: {err!r}"
    return err


# --- the cases: each is (id, build(finished, tmp) -> argv) ------------------------------------
CHOICES = {  # string fields checked against a registry or a list of names
    "task.name", "model.body", "model.cell", "train.optimizer", "train.schedule", "train.bptt",
}
POSITIVE = {"task.batch_size", "task.seq_len", "task.eval_batch_size", "task.eval_max_batches",
            "model.hidden_size", "model.num_layers", "model.embedding_size", "train.epochs",
            "train.max_steps", "train.steps_per_epoch", "train.eval_every", "train.patience",
            "train.checkpoint_every", "train.log_every", "run.threads"}


def bad_values(key: str) -> list[str]:
    """Values that cannot be right for config field ``key``."""
    section, name = key.split(".")
    annotation = field_types(sections()[section])[name]
    kinds = set(typing.get_args(annotation)) or {annotation}
    if bool in kinds:
        return ["maybe"]
    if int in kinds:
        values = ["x", "1.5"]
        return values + (["0"] if key in POSITIVE else [])
    if float in kinds:
        return ["abc", "nan", "inf"]
    if dict in kinds:
        return ["[1]"]
    if key in CHOICES:
        return ["nope"]
    return []


def option_cases():
    for key, *_ in describe_fields():
        for value in bad_values(key):
            yield f"train --{key}={value}", lambda run, tmp, k=key, v=value: [
                "train", f"--{k}={v}", f"--run.dir={tmp / 'new'}"]
    grid = ["--model.body=grid"]
    for args in (
        [*grid, "--model.forget_bias=0"], [*grid, "--model.bidirectional"],
        [*grid, "--model.dropout=0.5", "--model.num_layers=3"], [*grid, "--model.priority=up"],
        [*grid, "--model.transforms=lstm,tanh,relu"], [*grid, "--model.schedule=fast"],
        ["--model.body=grid_image", "--model.corners=left"], ["--model.tied=true"],
        ["--model.body=grid_deep", "--model.transforms=nope"], ["--model.patch=3"],
        ["--model.dropout=1.0"], ["--model.dropout=-0.1"], ["--train.lr=0"],
        ["--train.momentum=1"], ["--train.nesterov"], ["--train.lr_decay=0.5"],
        ["--train.max_steps=none"], ["--task.colour=red"], ["--task.chars=many"],
        ["--model.body=grid_image", "--task=text"],  # per-sequence body on a per-step task
        ["--model.bidirectional"],  # reads the future on a language model
        ["--bogus"], ["--cell"], ["positional"], ["--resume"],
    ):
        yield f"train {' '.join(args)}", lambda run, tmp, a=args: [
            "train", *TINY, "--train.max_steps=2", *a, f"--run.dir={tmp / 'new'}"]


def command_cases():
    table = [
        ("no command", lambda run, tmp: []),
        ("unknown command", lambda run, tmp: ["frobnicate"]),
        ("list what", lambda run, tmp: ["list", "everything"]),
        ("list extra", lambda run, tmp: ["list", "cells", "--x"]),
        ("evaluate no dir", lambda run, tmp: ["evaluate"]),
        ("evaluate split", lambda run, tmp: ["evaluate", str(run), "--split=train"]),
        ("evaluate which", lambda run, tmp: ["evaluate", str(run), "--which=worst"]),
        ("evaluate batch 0", lambda run, tmp: ["evaluate", str(run), "--batch-size=0"]),
        ("evaluate batch x", lambda run, tmp: ["evaluate", str(run), "--batch-size=x"]),
        ("evaluate extra", lambda run, tmp: ["evaluate", str(run), "--task.path=x"]),
        ("evaluate data missing", lambda run, tmp: ["evaluate", str(run),
                                                    f"--data={tmp / 'none'}"]),
        ("sample length", lambda run, tmp: ["sample", str(run), "--length=-1"]),
        ("sample length x", lambda run, tmp: ["sample", str(run), "--length=x"]),
        ("sample temperature", lambda run, tmp: ["sample", str(run), "--temperature=-1"]),
        ("sample temperature nan", lambda run, tmp: ["sample", str(run), "--temperature=nan"]),
        ("sample prime unknown", lambda run, tmp: ["sample", str(run), "--prime=\u2603\u2603"]),
        ("sample seed x", lambda run, tmp: ["sample", str(run), "--seed=x"]),
        ("compare budget 0", lambda run, tmp: ["compare", "--budget-seconds=0"]),
        ("compare budget nan", lambda run, tmp: ["compare", "--budget-seconds=nan"]),
        ("compare spec", lambda run, tmp: ["compare", "cell", f"--out={tmp / 'c'}"]),
        ("compare key", lambda run, tmp: ["compare", "colour=red", f"--out={tmp / 'c'}"]),
        ("compare label", lambda run, tmp: ["compare", ":cell=gru", f"--out={tmp / 'c'}"]),
        ("compare twice", lambda run, tmp: ["compare", "a:cell=gru", "a:cell=lstm",
                                            f"--out={tmp / 'c'}"]),
        ("compare tasks", lambda run, tmp: ["compare", "task=copy", "task=xml",
                                            f"--out={tmp / 'c'}"]),
        ("compare value", lambda run, tmp: ["compare", "hidden_size=big", f"--out={tmp / 'c'}"]),
        ("report nothing", lambda run, tmp: ["report"]),
        ("report x", lambda run, tmp: ["report", str(run), "--x=epoch"]),
        ("report missing", lambda run, tmp: ["report", str(tmp / "none"),
                                             f"--out={tmp / 'r'}"]),
        ("resume missing", lambda run, tmp: ["train", "--resume", str(tmp / "none")]),
        ("resume finished", lambda run, tmp: ["train", "--resume", str(run)]),
        ("resume bad override", lambda run, tmp: ["train", "--resume", str(run),
                                                  "--train.lr=x"]),
        ("resume into a file", lambda run, tmp: ["train", "--resume", str(run / "config.json")]),
        ("run dir taken", lambda run, tmp: ["train", *TINY, "--train.max_steps=2",
                                            f"--run.dir={run}"]),
    ]
    yield from table


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


CORPORA = {
    "missing": None,
    "empty": b"",
    "whitespace": b"   \n\t\n",
    "one character": b"a",
    "binary": bytes(range(256)) * 4,
    "latin-1": "caf\u00e9 ".encode("latin-1") * 100,
    "utf-16": "hello world ".encode("utf-16") * 100,
}


def corpus_cases():
    for name, data in CORPORA.items():
        def build(run, tmp, data=data):
            path = tmp / "corpus.txt"
            if data is not None:
                write(path, data)
            return ["train", f"--task.path={path}", *TINY, "--train.max_steps=2",
                    f"--run.dir={tmp / 'new'}"]
        yield f"corpus {name}", build

    def empty_folder(run, tmp):
        (tmp / "folder").mkdir()
        return ["train", f"--task.path={tmp / 'folder'}", *TINY, f"--run.dir={tmp / 'new'}"]

    def binary_in_folder(run, tmp):
        write(tmp / "folder" / "a.txt", b"fine text " * 100)
        write(tmp / "folder" / "b.bin", b"\xff\xfe\x00\x01" * 10)
        return ["train", f"--task.path={tmp / 'folder'}", *TINY, f"--run.dir={tmp / 'new'}"]

    yield "corpus empty folder", empty_folder
    yield "corpus binary in folder", binary_in_folder
    for task in ("tinyshakespeare", "ptb", "mnist", "jsb"):
        yield f"{task} path missing", lambda run, tmp, t=task: [
            "train", f"--task={t}", f"--task.path={tmp / 'none'}", "--task.download=false",
            *TINY[1:], f"--run.dir={tmp / 'new'}"]


def torch_bytes(payload) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def checkpoint_damages(data: bytes) -> dict[str, bytes]:
    return {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "one byte": data[:1],
        "random": os.urandom(2048),
        "json": b'{"format": 1}',
        "a list": torch_bytes([1, 2, 3]),
        "no format": torch_bytes({"model": {}}),
        "no model": torch_bytes({"format": 1}),
        "wrong shapes": torch_bytes({"format": 1, "model": {"head.weight": torch.zeros(2, 2)}}),
        "object": torch_bytes({"format": 1, "model": torch.nn.Linear(2, 2)}),
    }


def checkpoint_cases():
    for damage in checkpoint_damages(b"0" * 64):
        for name, command in (("best.pt", ["evaluate"]), ("checkpoint.pt", ["sample",
                                                                             "--which=last"])):
            def build(run, tmp, damage=damage, name=name, command=command):
                copy = tmp / "copy"
                shutil.copytree(run, copy)
                data = (copy / name).read_bytes()
                write(copy / name, checkpoint_damages(data)[damage])
                return [command[0], str(copy), *command[1:]]
            yield f"{name} {damage} {command[0]}", build

        def resume(run, tmp, damage=damage):
            copy = tmp / "copy"
            shutil.copytree(run, copy)
            (copy / "summary.json").unlink()
            for name in ("checkpoint.pt", "checkpoint.prev.pt"):
                data = (copy / name).read_bytes()
                write(copy / name, checkpoint_damages(data)[damage])
            return ["train", "--resume", str(copy), "--train.max_steps=8"]
        yield f"resume {damage}", resume


RUN_FILES = {
    "config.json": [b"", b"{", b"[]", b'{"model": {"hidden_size": "x"}}', b'{"colour": {}}',
                    b'{"model": {"body": "tree"}}', b"\xff\xfe"],
    "summary.json": [b"{", b"[1]", b"\x00"],
    "metrics.jsonl": [b'{"step": 1}\nnot json\n{"step": 2}\n', b"\xff\xfe", b'[1]\n{"step":2}\n',
                      b'{"step": "x"}\n{}\n'],
    "vocab.json": [b"{", b'{"symbols": 5}', b'{"symbols": ["ab", "ab"]}', b"[]"],
}
READERS = {"config.json": ["evaluate"], "summary.json": ["report"], "metrics.jsonl": ["report"],
           "vocab.json": ["sample"]}


def run_file_cases():
    for name, variants in RUN_FILES.items():
        for index, data in enumerate(variants):
            def build(run, tmp, name=name, data=data):
                copy = tmp / "copy"
                shutil.copytree(run, copy)
                write(copy / name, data)
                command = READERS[name]
                extra = [f"--out={tmp / 'r'}"] if command[0] == "report" else []
                return [command[0], str(copy), *extra]
            yield f"{name} #{index}", build

    def not_a_run(run, tmp):
        (tmp / "empty").mkdir()
        return ["evaluate", str(tmp / "empty")]

    def a_file(run, tmp):
        return ["sample", str(write(tmp / "file", b"x"))]

    def no_checkpoint(run, tmp):
        copy = tmp / "copy"
        shutil.copytree(run, copy)
        for name in ("best.pt", "checkpoint.pt", "checkpoint.prev.pt"):
            (copy / name).unlink()
        return ["evaluate", str(copy)]

    yield "not a run", not_a_run
    yield "a file as run", a_file
    yield "no checkpoint", no_checkpoint


CASES = dict([*option_cases(), *command_cases(), *corpus_cases(), *checkpoint_cases(),
              *run_file_cases()])


def test_there_are_at_least_a_hundred_cases():
    assert len(CASES) >= 100


@pytest.mark.parametrize("case", CASES)
def test_malformed_input_gives_one_line_and_changes_no_run(case, finished, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "no-data"))  # nothing downloads or is found
    monkeypatch.delenv("RNNLAB_DEBUG", raising=False)
    argv = CASES[case](finished, tmp_path)
    before = hashes(finished)
    refused_in_one_line(argv, capsys, case)
    assert hashes(finished) == before
    assert not (tmp_path / "new").exists(), f"{case}: left a run directory behind"



# --- the storages: a refused `study` / `search` command writes nothing -----------------------
STUDY = ["study", "run", "--task", "memorize", "--cells", "cifg",
         "--trials", "1", "--workers", "1", "--no-report", "--quiet"]
for _key, _value in (("task.length", 3), ("task.symbols", 4), ("task.valid_size", 16),
                     ("task.test_size", 16), ("task.batch_size", 4), ("task.eval_batch_size", 16),
                     ("train.steps_per_epoch", 3), ("train.epochs", 1)):
    STUDY += ["--set", f"{_key}={_value}"]
SEARCH = ["search", "run", "--steps=2", "--quiet", "--tasks=arithmetic", "--hidden=8",
          "--batch-size=8", "--train-steps=4", "--eval-batches=1", "--filter-steps=4",
          "--filter-threshold=0"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, Path]:
    """A finished tiny study and a finished tiny search (folders with their journal files)."""
    root = tmp_path_factory.mktemp("storages")
    study, search = root / "study", root / "search"
    assert main([*STUDY, "--dir", str(study)]) == 0
    assert main([*SEARCH, f"--dir={search}"]) == 0
    assert (study / "trials.journal").is_file() and (search / "trials.journal").is_file()
    return study, search


def storage_cases():
    def study(*extra):
        return lambda study_dir, search_dir, tmp: [*STUDY, "--dir", str(study_dir), *extra]

    def search(*extra):
        return lambda study_dir, search_dir, tmp: [*SEARCH, f"--dir={search_dir}", *extra]

    def where(command, *extra):
        return lambda study_dir, search_dir, tmp: [
            *command, "--dir", str(study_dir if command[0] == "study" else search_dir), *extra]

    yield "study run other settings", study("--set", "train.steps_per_epoch=4")
    yield "study run other seed", study("--seed", "1")
    yield "study run other epochs", study("--epochs", "2")
    yield "study run new cell and other settings", study("--cells", "peephole,cifg",
                                                         "--set", "train.steps_per_epoch=4")
    yield "study run sampled field", study("--set", "train.lr=0.5")
    yield "study run unknown cell", study("--cells", "cifg,nope")
    yield "study run trials -1", study("--trials", "-1")
    yield "study run missing config", lambda a, b, tmp: [
        *STUDY, "--dir", str(a), "--config", str(tmp / "none.json")]
    yield "study report other name", where(["study", "report", "--name", "other"])
    yield "study dashboard port 0", where(["study", "dashboard", "--port", "0"])
    yield "search run other hidden", search("--hidden=9")
    yield "search run other settings", search("--settings=2")
    yield "search run other seed", search("--seed=1")
    yield "search run other tasks", search("--tasks=arithmetic,memorize")
    yield "search run other filter", search("--filter-steps=5")
    yield "search run steps 0", search("--steps=0")
    yield "search top -n 0", where(["search", "top", "-n", "0"])
    yield "search export unknown", lambda a, b, tmp: [
        "search", "export", "zzzz", f"--dir={b}", "--out", str(tmp / "x.json")]
    yield "search report workers 0", where(["search", "report", "--workers", "0"])


STORAGE_CASES = dict(storage_cases())


@pytest.mark.parametrize("case", STORAGE_CASES)
def test_refused_study_and_search_commands_change_no_storage(case, stored, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "no-data"))
    monkeypatch.delenv("RNNLAB_DEBUG", raising=False)
    study, search = stored
    argv = STORAGE_CASES[case](study, search, tmp_path)
    before = {"study": hashes(study), "search": hashes(search)}
    err = refused_in_one_line(argv, capsys, case)
    assert {"study": hashes(study), "search": hashes(search)} == before, f"{case}: {err!r}"
