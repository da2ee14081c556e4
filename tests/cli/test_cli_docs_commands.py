"""Every ``rnnlab`` command the README and docs/*.md show parses with the command line's own
parser, and the settings it gives make a valid config: nothing is trained, loaded or
downloaded.

Where commands are found:

* a line of a ```bash (or unlabelled) block that runs ``rnnlab`` — after ``VAR=value``
  assignments, as ``python -m rnnlab`` or ``torchrun ... -m rnnlab``, or after ``&&``. In a
  listing, ``A / B`` shows two commands, ``...`` stands for more options, text after three or
  more spaces (or ``#``) describes the command, and a line written as a synopsis
  (``rnnlab list [cells|bodies|tasks]``) is not a command. In a block with ``$ `` prompts only
  the prompted lines are commands; a line with ``: error:`` is a message, not a command.
* an inline `rnnlab ...` span that is not a synopsis (``[--budget full|small|STEPS]``, ``MODEL
  ...``). `rnnlab study` alone names a command; a span without the command's required
  arguments (`rnnlab evaluate --which=best`) names options, which the command must have.

Placeholders get a dummy value (:data:`PLACEHOLDERS`): ``runs/<id>`` -> ``runs/x``, ``RUN_DIR``
-> ``runs/x``, ``N`` -> ``1``; a capitalised word without one is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from rnnlab.cli.main import build_parser, main, parse

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console")
SYNOPSIS = re.compile(r"\[|\||\.\.\.|…")  # optional parts, alternatives, repetition
DESCRIPTION = re.compile(r"(?<=\S)\s{3,}\S.*$")  # a listing's description of its command
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")
PLACEHOLDERS = {"RUN": "runs/x", "RUN_DIR": "runs/x", "NAME": "forget-bias", "ID": "3fa1c2",
                "TEXT": "x", "N": "1", "T": "1", "S": "1"}


@dataclass(frozen=True)
class Shown:
    """One command a page shows: where, its text, and its arguments after ``rnnlab``."""

    page: Path
    line: int
    text: str
    argv: tuple[str, ...]
    inline: bool = False
    refused: bool = False  # the page shows it refused: a ``$`` prompt followed by an error
    unreadable: str | None = None  # why the line does not split into shell words

    def __str__(self) -> str:
        page = self.page.relative_to(REPO) if self.page.is_relative_to(REPO) else self.page
        return f"{page}:{self.line}"


def rnnlab_arguments(tokens: list[str]) -> list[str] | None:
    """The arguments after ``rnnlab`` of one shell command's tokens, or None when the command
    does not run rnnlab."""
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):
        tokens = tokens[1:]  # environment assignments
    if tokens[:1] == ["rnnlab"]:
        return tokens[1:]
    for i in range(len(tokens) - 1):  # python -m rnnlab, torchrun --nproc_per_node=2 -m rnnlab
        if tokens[i] == "-m" and tokens[i + 1] == "rnnlab" and \
                tokens[0] in ("python", "python3", "torchrun"):
            return tokens[i + 2:]
    return None


def dummy(token: str) -> str:
    if PLACEHOLDER.fullmatch(token):
        return PLACEHOLDERS.get(token, token)
    return re.sub(r"<[^>]*>", "x", token)


def block_commands(page: Path, line: int, text: str) -> list[Shown]:
    """The rnnlab commands of one (joined) line of a shell block."""
    text = DESCRIPTION.sub("", text.strip())
    if not re.search(r"(^|\s)rnnlab\s", text) or ": error:" in text:
        return []
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as error:  # an unclosed quotation
        return [Shown(page, line, text, (), unreadable=str(error))]
    commands, current = [], []
    for token in tokens:
        if token in ("&&", ";", "/"):
            commands.append(current)
            current = []
        elif token not in ("...", "…"):
            current.append(token)
    commands.append(current)
    out = []
    for command in commands:
        argv = rnnlab_arguments(command)
        synopsis = any("[" in a or ("|" in a and a != "|") for a in argv or [])
        if argv and not synopsis:
            out.append(Shown(page, line, text, tuple(dummy(a) for a in argv)))
    return out


def shell_block_commands(page: Path, block: list[tuple[int, str]]) -> list[Shown]:
    """The rnnlab commands of a shell block's ``(line number, line)`` pairs: lines continued
    with a backslash are joined; with ``$`` prompts, only the prompted lines are commands, and
    one followed by an error message is shown refused."""
    prompted = any(line.startswith("$ ") for _, line in block)
    found, pending, start = [], "", 0
    for number, line in block:
        if prompted and not pending:
            if not line.startswith("$ "):  # output of the command before
                if ": error:" in line and found:
                    found[-1] = replace(found[-1], refused=True)
                continue
            line = line[2:]
        if not pending:
            start = number
        pending += line.strip().removesuffix("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            found += block_commands(page, start, pending)
            pending = ""
    return found


def shown_commands(page: Path) -> list[Shown]:
    """Every rnnlab command ``page`` shows (see the module docstring)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, prose = [], []
    block = None  # the lines of the fenced block we are in, or None
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            if block is None:
                block, language = [], line.strip()[3:].strip()
            else:
                if language in SHELL_BLOCKS:
                    found += shell_block_commands(page, block)
                block = None
            prose.append("")
            continue
        if block is None:
            prose.append(line)
        else:
            block.append((number, line))
            prose.append("")  # keeps the prose's line numbers
    text = "\n".join(prose)
    for match in re.finditer(r"`([^`\n]+(?:\n[^`\n]+)*)`", text):
        span = " ".join(match.group(1).split())
        if not span.startswith("rnnlab ") or SYNOPSIS.search(span) or ": error:" in span:
            continue
        line = text.count("\n", 0, match.start()) + 1
        try:
            argv = tuple(dummy(a) for a in shlex.split(span)[1:])
        except ValueError as error:
            found.append(Shown(page, line, span, (), inline=True, unreadable=str(error)))
            continue
        found.append(Shown(page, line, span, argv, inline=True))
    return found


SHOWN = [shown for page in PAGES for shown in shown_commands(page)]


def config_check(args: argparse.Namespace, sub: argparse.ArgumentParser, extra: list[str]):
    """Turn the parsed command's settings into configs as the command would, without running
    it; a bad setting raises (ConfigError / ValueError) or exits through ``sub.error``."""
    from rnnlab.cli.options import config_from_args
    from rnnlab.train.config import ExperimentConfig, apply_overrides

    if args.command == "train" and not args.resume:
        config_from_args(sub, args.config, extra, ExperimentConfig())
    elif args.command == "compare":
        from rnnlab.train.compare import SEED_SPECS, SOURCE, contenders, seed_experiment_config

        config, limits = config_from_args(sub, args.config, extra, seed_experiment_config(),
                                          source=SOURCE)
        contenders(config, args.configs or list(SEED_SPECS), limits)
    elif args.command == "gradflow" and not args.grad_norm:
        from rnnlab.cli.reproduce import gradflow_models

        gradflow_models(args, sub)
    elif args.command == "reproduce" and args.name:
        from rnnlab.reproduce import entries
        from rnnlab.reproduce.runner import budget_settings, selected_runs

        entry = entries.get(args.name)
        labels = [x for x in args.runs.split(",") if x] if args.runs else None
        for run in selected_runs(entry, args.budget, labels):
            apply_overrides(run.config(budget_settings(entry, args.budget)), args.set)


def problem_of(shown: Shown) -> str | None:
    """None when the command parses and its settings are valid, else what went wrong."""
    if shown.unreadable:
        return f"not a shell command line: {shown.unreadable}"
    commands = build_parser()[1]
    unknown = [a for a in shown.argv if PLACEHOLDER.fullmatch(a)]
    if unknown:
        return f"placeholder {unknown[0]!r} has no dummy value in PLACEHOLDERS"
    if shown.inline and len(shown.argv) == 1:  # `rnnlab study`: the name of a command
        return None if shown.argv[0] in commands else f"no command {shown.argv[0]!r}"
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            _, sub, args, extra = parse(list(shown.argv))
            config_check(args, sub, extra)
    except SystemExit as exit_:
        message = errors.getvalue().strip() or f"exit status {exit_.code}"
        if exit_.code and shown.inline and "the following arguments are required" in message:
            return options_problem(commands.get(shown.argv[0]), shown.argv)
        return message if exit_.code else None
    except ValueError as error:  # ConfigError, a bad entry name, budget or run label
        return str(error)
    return None


def options_problem(sub: argparse.ArgumentParser | None, argv: tuple[str, ...]) -> str | None:
    """A span that names options of a command (`rnnlab evaluate --which=best`): None when the
    command has each of them."""
    if sub is None:
        return f"no command {argv[0]!r}"
    for token in argv[1:]:
        name = token.partition("=")[0]
        if name.startswith("-") and name not in sub._option_string_actions:  # argparse's table
            return f"rnnlab {argv[0]} has no option {name}"
    return None


@pytest.fixture
def in_a_folder_with_a_cell_file(tmp_path, monkeypatch):
    """The working folder holds cell.json, as `rnnlab search export ... --out cell.json`
    leaves it for the `rnnlab train --cell=cell.json` the pages show next."""
    import rnnlab.cells

    (tmp_path / "cell.json").write_text(rnnlab.cells.graph("gru", 4, 4).to_json())
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("shown", SHOWN, ids=str)
def test_a_command_the_docs_show_parses(shown, in_a_folder_with_a_cell_file):
    problem = problem_of(shown)
    if shown.refused:
        assert problem is not None, f"{shown}: `{shown.text}` is shown refused, but it parses"
    else:
        assert problem is None, f"{shown}: `{shown.text}` does not parse: {problem}"


def test_the_docs_commands_are_all_found():
    where = {f"{s.page.name}: {' '.join(s.argv)}" for s in SHOWN}
    assert len(SHOWN) > 100
    assert "README.md: gradflow lstm:cell=lstm rnn:cell=rnn" in where
    assert {"README.md: study run", "README.md: search run"} <= where  # study run / search run
    assert "README.md: train --task=text" in where  # torchrun ... -m rnnlab train --task=text ...
    assert "README.md: sample runs/x --prime def  --length 300 --temperature 0.8" in where
    assert any(s.startswith("speech.md: compare --task=digits_ctc blstm:") for s in where)
    assert "training.md: train --cell=lsmt" in where  # a $ prompt; its error line is not
    assert not any("error:" in s or "[" in s for s in where)  # messages, synopses


def test_a_broken_command_is_reported_with_its_page_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Intro.\n\n```bash\nrnnlab train --model.hidden_size=big\n```\n\n"
        "Or `rnnlab gradflow x:hidden=3`, `rnnlab sample RUN --length N`, `rnnlab evaluate\n"
        "--whichh=best`, `rnnlab reproduce NAME --set train.lr=fast` and `rnnlab sample RUN\n"
        "--prime \"x`.\n"
    )
    found = shown_commands(page)
    assert [str(s) for s in found] == [f"{page}:{n}" for n in (4, 7, 7, 7, 8, 8)]
    problems = [problem_of(s) for s in found]
    assert "model.hidden_size" in problems[0] and "'big'" in problems[0]
    assert "unknown setting 'hidden'" in problems[1]
    assert problems[2] is None
    assert problems[3] == "rnnlab evaluate has no option --whichh"
    assert "train.lr" in problems[4]
    assert problems[5] == "not a shell command line: No closing quotation"


def test_the_readme_gradflow_shortcut_runs(tmp_path, capsys):
    assert main(["gradflow", "lstm:cell=lstm", "rnn:cell=rnn", "--set", "task.length=6",
                 "--set", "hidden_size=8", "--batch", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lstm: t=0 {'h': ") and "\nrnn: t=0 {'h': " in out
    assert (tmp_path / "gradflow.csv").is_file()
