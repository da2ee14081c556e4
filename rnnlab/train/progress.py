"""Visible progress: a tqdm bar on a terminal, plain lines otherwise, optional TensorBoard.

The bar shows loss, the task's metric and tokens/s. A run with a time budget counts training
seconds against the budget (``12/90 s``) with the time left; a step-limited run counts steps.
The bar is drawn only when stderr is a terminal and the run is not ``--quiet``; elsewhere (logs,
CI, pipes) the same numbers are printed as a line at each evaluation, each with the elapsed
time and an ETA, and ``--quiet`` prints nothing.

Every line goes out through :func:`write_line`: a reader that goes away (``rnnlab train ... |
head -4``) silences the output, never the run, which trains on and writes all its files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tqdm import tqdm


class Progress:
    """Progress over ``total`` steps (None: unknown), starting at ``initial``; with ``budget``
    (seconds), over training seconds instead, starting at ``elapsed``."""

    def __init__(
        self,
        total: int | None,
        initial: int = 0,
        *,
        quiet: bool = False,
        enabled: bool = True,
        description: str = "train",
        stream=None,
        budget: float | None = None,
        elapsed: float = 0.0,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet or not enabled
        self.total, self.steps = total, initial
        self.budget, self.elapsed = budget, elapsed
        self.session_steps, self.session_seconds = 0, 0.0
        interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None
        if not self.quiet and interactive:
            if budget is not None:
                self.bar = tqdm(
                    total=budget,
                    initial=min(elapsed, budget),
                    desc=f"{description} (time budget)",
                    unit="s",
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                    "[ETA {remaining}]{postfix}",
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=True,
                )
            else:
                self.bar = tqdm(
                    total=total,
                    initial=initial,
                    desc=description,
                    unit="step",
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=True,
                )

    def update(self, steps: int, seconds: float = 0.0, **numbers) -> None:
        """``steps`` more steps taking ``seconds`` of training time; ``numbers`` for display."""
        self.steps += steps
        self.elapsed += seconds
        self.session_steps += steps
        self.session_seconds += seconds
        if self.bar is not None:
            if self.budget is not None:
                self.bar.update(min(seconds, max(self.budget - self.bar.n, 0.0)))
                numbers = {"step": self.steps, **numbers}
            else:
                self.bar.update(steps)
            if numbers:
                self.bar.set_postfix(_format(numbers), refresh=False)

    def timing(self) -> str:
        """``12 s of 90 s budget, ETA 78 s`` or ``step 40/100, ETA 30 s``."""
        if self.budget is not None:
            left = max(self.budget - self.elapsed, 0.0)
            return f"{self.elapsed:.0f} s of {self.budget:g} s budget, ETA {left:.0f} s"
        text = f"step {self.steps}" + (f"/{self.total}" if self.total else "")
        if self.total and self.session_steps:
            left = (self.total - self.steps) * self.session_seconds / self.session_steps
            text += f", ETA {left:.0f} s"
        return text

    def note(self, text: str) -> None:
        """A line of text above the bar (or on its own line without one)."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            write_line(text, self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def write_line(text: str, stream=None) -> None:
    """Print ``text`` and a newline to ``stream`` (stdout by default), flushed. When the reader
    has closed the pipe (BrokenPipeError) the stream is silenced (:func:`silence`) and the
    caller carries on: output to a closed pipe never ends a run."""
    stream = sys.stdout if stream is None else stream
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        silence(stream)


def flush_output() -> None:
    """Flush stdout and stderr, silencing one whose reader has gone, so that Python's own flush
    at exit finds nothing to write (else it prints a BrokenPipeError and exits with 120)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            silence(stream)
        except (OSError, ValueError):  # already closed, or not a real file
            pass


def silence(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null (the documented cure for a closed pipe,
    docs.python.org/3/library/signal.html#note-on-sigpipe): the text still buffered and every
    later write go nowhere instead of raising. A stream without a descriptor is left as it is."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


def _format(numbers: dict) -> dict:
    out = {}
    for key, value in numbers.items():
        if isinstance(value, float):
            out[key] = f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
        else:
            out[key] = value
    return out


class TensorBoard:
    """Scalars to TensorBoard under ``directory``; a no-op when ``directory`` is None. Asking for
    a directory without the optional tensorboard package installed is refused at once, with the
    line that installs it (the run would otherwise end without the event files it asked for)."""

    def __init__(self, directory: Path | None):
        self.writer = None
        if directory is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(
                "run.tensorboard needs the tensorboard package: pip install -e '.[tensorboard]' "
                "in the checkout (or pip install tensorboard)"
            ) from None
        self.writer = SummaryWriter(log_dir=str(directory))

    @property
    def available(self) -> bool:
        return self.writer is not None

    def scalars(self, split: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
