"""What every subcommand shares: the parser class, config options, exit statuses, errors."""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from rnnlab.train.config import (
    SHORTCUTS,
    ConfigError,
    ExperimentConfig,
    Limits,
    compose,
    describe_fields,
    field_types,
    is_switch_or_mode,
    sections,
)

EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


def add_which_option(parser: argparse.ArgumentParser) -> None:
    """``--which best|last``: the parameters a command loads from a run directory."""
    parser.add_argument("--which", choices=("best", "last"), default="best",
                        help="best validated parameters (best.pt) or the last (checkpoint.pt)")


def add_beam_option(parser: argparse.ArgumentParser) -> None:
    """``--beam K`` of a decoding command; check it with ``check_beam``."""
    parser.add_argument("--beam", type=int, default=1, help="beam width; 1 is greedy")


def check_beam(args, parser: argparse.ArgumentParser) -> None:
    if args.beam < 1:
        parser.error(f"--beam must be >= 1, got {args.beam}")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and a pointer to ``--help`` (no usage dump).

    Every ``--help`` shows each option's default (``ArgumentDefaultsHelpFormatter``).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        message = " ".join(str(message).split())  # one line, whatever the message held
        if message.startswith("unrecognized argument"):  # argparse's own, or task_options'
            first = message.partition(":")[2].split()[:1] or message.split("'")[1:2]
            message += did_you_mean(self, first[0].strip("'")) if first else ""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def add_config_options(parser: argparse.ArgumentParser, base: ExperimentConfig) -> None:
    """One ``--section.field`` option per config field, plus the shortcuts. The help gives each
    field's default as the command uses it: ``base``'s value (the command's defaults with the
    default task's training defaults: :func:`command_defaults`), and says where a task has its
    own; the registries' names are listed beside the fields that take one."""
    import rnnlab.cells
    import rnnlab.tasks
    from rnnlab.train.bodies import BODIES

    names = {
        "task.name": rnnlab.tasks.names(),
        "model.body": list(BODIES),
        "model.cell": rnnlab.cells.names(),
    }
    by_tasks = {key for name in rnnlab.tasks.names()
                for key in rnnlab.tasks.training_defaults(name)}
    group = parser.add_argument_group(
        "configuration (--section.field=value; `none` clears an optional field)"
    )
    for key, type_name, default, comment in describe_fields(base):
        section_name, name = key.split(".")
        annotation = field_types(sections()[section_name])[name]
        is_bool = annotation is bool or is_switch_or_mode(annotation)  # a bare flag is true
        if key in names:
            comment += f"; one of: {', '.join(names[key])}"
        where = f" (task {base.task.name}; other tasks may set their own: `rnnlab list tasks`)"
        group.add_argument(
            f"--{key}",
            dest=key,
            default=argparse.SUPPRESS,
            metavar=("BOOL" if annotation is bool
                     else type_name.upper().replace(" OR ", "|")),
            nargs="?" if is_bool else None,
            const="true" if is_bool else None,
            help=f"{comment} [default: {default!r}{where if key in by_tasks else ''}]".replace(
                "%", "%%"
            ),
        )
    for short, key in SHORTCUTS.items():
        group.add_argument(
            f"--{short}", dest=key, default=argparse.SUPPRESS, metavar="VALUE",
            help=f"shortcut for --{key}",
        )


def command_defaults(base: ExperimentConfig, source: str = "default") -> ExperimentConfig:
    """``base`` with its default task's training defaults: what a command runs when given
    nothing (its --help shows these)."""
    return compose(base, [], source=source)[0]


def config_from_args(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    extra: list[str],
    base: ExperimentConfig,
    *,
    source: str = "default",
    defaults: bool = True,
) -> tuple[ExperimentConfig, Limits]:
    """``base``, the chosen task's training defaults, then the --section.field options in
    ``args`` and the task options in ``extra`` (``rnnlab.train.config.compose``): the config,
    and where its stopping rules came from. ``source`` names where ``base``'s values come
    from; ``defaults=False`` for a resumed run (``base`` is its own config)."""
    given = [(key, text) for key, text in vars(args).items() if "." in key]
    given += task_options(parser, extra)
    try:
        return compose(base, given, source=source, defaults=defaults)
    except ConfigError as error:
        parser.error(str(error))


def task_options(parser: argparse.ArgumentParser, extra: list[str]) -> list[tuple[str, str]]:
    """Unknown ``--task.<option>=value`` (or ``--task.<option> value``) arguments; anything else
    unknown is a usage error."""
    pairs, rest = [], list(extra)
    while rest:
        item = rest.pop(0)
        if item.startswith("--task."):
            key, eq, value = item[2:].partition("=")
            if not eq:
                if not rest:
                    parser.error(f"argument --{key} expects a value")
                value = rest.pop(0)
            pairs.append((key, value))
        else:
            parser.error(f"unrecognized argument {item!r}")
    return pairs


def _long_options(parser: argparse.ArgumentParser):
    """The --options of ``parser`` and of its subcommands' parsers (argparse reports an unknown
    option of ``rnnlab study run`` from the ``rnnlab study`` parser)."""
    yield from (option for option in parser._option_string_actions if option.startswith("--"))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _long_options(sub)


def did_you_mean(parser: argparse.ArgumentParser, item: str) -> str:
    """``; did you mean --train.max_steps?`` for an option one typo or a word away from a
    known one (``--train.steps=30``), else nothing."""
    import difflib

    name = item.partition("=")[0]
    known = list(dict.fromkeys(_long_options(parser)))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    if not close and "." in name:  # the right field in another section, or a longer name
        section, _, field = name.partition(".")
        close = [option for option in known
                 if option.startswith(section + ".") and field in option.partition(".")[2]][:1]
    return f"; did you mean {close[0]}?" if close else ""


def fail(command: str, message: str) -> int:
    """Print ``rnnlab COMMAND: error: MESSAGE`` on one line to stderr; return EXIT_ERROR."""
    print(f"rnnlab {command}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_ERROR


# Errors that are the user's input (files, values), shown as one line without a traceback.
USER_ERRORS = (
    OSError,  # a missing, unreadable or unwritable file; a full disk; a storage out of reach
    ValueError,  # ConfigError, a malformed JSON file (JSONDecodeError), UnicodeError, ...
    TypeError,
    ImportError,  # an optional extra the command needs; the message names the install line
    KeyError,
    EOFError,
    pickle.UnpicklingError,  # a damaged checkpoint
    zipfile.BadZipFile,
)


def _no_errors() -> tuple[type[BaseException], ...]:
    return ()


@dataclass(frozen=True)
class Guard:
    """What a subcommand adds to the one error guard (:func:`guarded`), given with
    ``parser.set_defaults(guard=Guard(...))``.

    ``errors`` returns more exception types that are the user's input, not a bug (a function,
    so that optuna and the like are imported only when a command fails); ``interrupted`` is
    what Ctrl-C leaves behind, said on stderr (empty: nothing is said); ``action`` is the
    namespace attribute of the subcommand's own action (``study_command``), named in messages
    (``rnnlab study run: error: ...``).
    """

    errors: Callable[[], tuple[type[BaseException], ...]] = _no_errors
    interrupted: str = ""
    action: str | None = None

    def command(self, args: argparse.Namespace) -> str:
        """``study run``: the words of the command line that name what failed."""
        action = getattr(args, self.action, None) if self.action else None
        return f"{args.command} {action}" if action else args.command


def guarded(args: argparse.Namespace, body: Callable[[], int]) -> int:
    """Run a command's ``body``; the one place where failures become exit statuses.

    A broken pipe (the reader left: ``rnnlab sample RUN | head``) is success; a diverged
    training exits with EXIT_DIVERGED; Ctrl-C with EXIT_INTERRUPTED after the guard's
    ``interrupted`` line; the user's errors (:data:`USER_ERRORS` and the guard's ``errors``)
    are one line ``rnnlab COMMAND: error: ...`` and EXIT_ERROR, unless ``RNNLAB_DEBUG`` is set,
    which lets the traceback through. Anything else is a bug and keeps its traceback.
    """
    from rnnlab.train.progress import flush_output, silence
    from rnnlab.train.trainer import TrainingDiverged

    guard = getattr(args, "guard", None) or Guard()
    try:
        code = body()
        flush_output()  # a reader that left early must not make Python's exit flush fail
        return code
    except BrokenPipeError:
        silence(sys.stdout)
        flush_output()
        return 0
    except TrainingDiverged as error:
        print(f"rnnlab: training diverged: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        if guard.interrupted:
            print(f"rnnlab {guard.command(args)}: interrupted; {guard.interrupted}",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    except (*USER_ERRORS, *guard.errors()) as error:
        if os.environ.get("RNNLAB_DEBUG"):
            raise
        return fail(guard.command(args), f"{error} (RNNLAB_DEBUG=1 shows the traceback)")
