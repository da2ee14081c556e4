"""rnnlab's trainer against a plain PyTorch loop on Zaremba et al.'s small PTB recipe.

Both train the same network (word embedding 200 -> 2-layer LSTM 200 -> Linear(200, 10000)) on
the same PTB batches (batch 20, unroll 20, state carried), SGD lr 1, clip 5, loss summed over
time and averaged over the batch. The plain loop is what one would write by hand:
``nn.Embedding -> nn.LSTM -> nn.Linear``, ``F.cross_entropy``, ``clip_grad_norm_``,
``SGD.step``, the data cut from one tensor, and at the end one pass over the validation split
(no gradients, state carried, batch 20) for the validation perplexity, as Zaremba et al.'s
own loop does after each epoch. The trainer is ``rnnlab.train.train`` with the
``zaremba-ptb-small`` entry's config and periodic evaluation and checkpoints off: it too
validates its last step on the whole validation split (which the plain loop's pass matches) and
writes its final checkpoint; its final valid/test report (``final_evaluation``) is not timed.

A third run, the same plain loop with ``rnnlab.RNN`` as its LSTM, tells the body's share of
any difference from the trainer's. All run in this one process, interleaved round after round
(in alternating order), and the ratios of the median throughputs are reported, so that load
from other processes on the machine falls on all alike: for the training steps alone (the
trainer's own clock of its step loop, the number it logs as tokens/s; the plain loop's step
loop) and for the steps plus the one validation pass (the fit as a whole; 150-300 steps make
that pass weigh far more than the one pass per 2,323-step epoch of the real recipe)::

    python benchmarks/trainer_vs_plain.py                    # 150 steps x 5 rounds, 1 thread
    python benchmarks/trainer_vs_plain.py --steps 300 --rounds 7 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import rnnlab
from rnnlab import machine
from rnnlab.reproduce import entries
from rnnlab.train import trainer as trainer_module
from rnnlab.train.config import apply_overrides


class PlainLM(nn.Module):
    """Embedding -> LSTM -> Linear; the LSTM is torch.nn.LSTM, or with ``rnnlab_body`` an
    ``rnnlab.RNN`` (Zaremba's LSTM: no forget-gate bias), to tell the body from the trainer."""

    def __init__(self, vocab: int, hidden: int, layers: int, rnnlab_body: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.lstm = (rnnlab.RNN("lstm", hidden, hidden, num_layers=layers, forget_bias=0.0)
                     if rnnlab_body else nn.LSTM(hidden, hidden, layers))
        self.head = nn.Linear(hidden, vocab)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def forward(self, x, state):
        out, state = self.lstm(self.embedding(x), state)
        return self.head(out), state


def stream_batches(data: torch.Tensor, batch: int):
    """``data`` cut into ``batch`` parallel streams: (inputs, targets), each (n, batch)."""
    n = (data.numel() - 1) // batch
    x = data[: batch * n].view(batch, n).t().long()
    y = data[1 : batch * n + 1].view(batch, n).t().long()
    return x, y


@torch.no_grad()
def validation_perplexity(model: nn.Module, data: torch.Tensor, batch: int, unroll: int):
    model.eval()
    x, y = stream_batches(data, batch)
    state, total, count = None, 0.0, 0
    for j in range(0, x.shape[0], unroll):
        logits, state = model(x[j : j + unroll], state)
        total += float(F.cross_entropy(logits.flatten(0, 1), y[j : j + unroll].flatten(),
                                       reduction="sum"))
        count += y[j : j + unroll].numel()
    model.train()
    return math.exp(total / count)


def plain_loop(data: torch.Tensor, valid: torch.Tensor, vocab: int, steps: int, batch: int,
               unroll: int, rnnlab_body: bool = False) -> tuple[float, float]:
    """Tokens/s of ``steps`` optimiser steps of the hand-written loop: (the steps alone, the
    steps and then its validation pass)."""
    torch.manual_seed(0)
    model = PlainLM(vocab, 200, 2, rnnlab_body)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    x, y = stream_batches(data, batch)
    n = x.shape[0]
    state = None
    started = time.perf_counter()
    for i in range(steps):
        j = (i * unroll) % (n - unroll)
        inputs, targets = x[j : j + unroll], y[j : j + unroll]
        logits, state = model(inputs, state)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum") / batch
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        state = tuple(s.detach() for s in state)
        float(loss.detach())  # a plain loop looks at its loss too
    stepping = time.perf_counter() - started
    validation_perplexity(model, valid, batch, unroll)
    tokens = steps * batch * unroll
    return tokens / stepping, tokens / (time.perf_counter() - started)


class UntimedFinal(trainer_module.Trainer):
    """The trainer, minus the final valid/test report (not part of the loop's speed)."""

    def final_evaluation(self):
        return None


def trainer_loop(steps: int, threads: int, train_metric: str = "last") -> tuple[float, float]:
    """Tokens/s of ``steps`` steps of rnnlab's trainer: (its steps alone, by its own clock of
    the step loop: data, step, loss, logging; the wall time of ``fit``: with the validation of
    the last step, the best and final checkpoints)."""
    config = copy.deepcopy(entries.get("zaremba-ptb-small").runs[0].config())
    with tempfile.TemporaryDirectory() as tmp:
        apply_overrides(
            config,
            [
                f"train.max_steps={steps}",
                "train.epochs=none",
                "train.checkpoint_every=none",
                f"train.eval_every={10 * steps}",
                f"run.dir={tmp}/run",
                "run.quiet=true",
                "run.plots=false",
                f"run.threads={threads}",
                f"train.train_metric={train_metric}",
            ],
        )
        task, model = trainer_module.build(config)
        from rnnlab.train.run import RunDir

        run = RunDir(config.run.dir)
        run.create(config, [])
        fit = UntimedFinal(config, task, model, run)
        started = time.perf_counter()
        fit.fit()
        seconds = time.perf_counter() - started
    tokens = steps * config.task.batch_size * config.task.seq_len
    return tokens / fit.counters.step_seconds, tokens / seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--train-metric", choices=("last", "window"), default="last",
                        help="the trainer's train.train_metric (the entry uses last)")
    parser.add_argument("--data", default=None,
                        help="the data folder holding ptb/ (default: $RNNLAB_DATA, else the "
                        "shared data folder beside the repository, else the download cache)")
    args = parser.parse_args(argv)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    data_root = args.data or os.environ.get("RNNLAB_DATA") or (shared if shared.is_dir()
                                                              else None)
    if data_root is not None:  # read by the task here and by the trainer's own task
        os.environ["RNNLAB_DATA"] = str(data_root)
    torch.set_num_threads(args.threads)
    print(machine.line())  # the CPU model, threads and load: a speed claim names them
    config = entries.get("zaremba-ptb-small").runs[0].config()
    task = trainer_module.make_task(config)
    data, valid = task.splits["train"], task.splits["valid"]
    vocab = task.input.size
    trainer_loop(20, args.threads)  # warm-up: imports, compilation of the cell
    plain_loop(data, valid, vocab, 20, 20, 20)
    plain_loop(data, valid, vocab, 20, 20, 20, rnnlab_body=True)
    runs = {
        "trainer": lambda: trainer_loop(args.steps, args.threads, args.train_metric),
        "plain loop": lambda: plain_loop(data, valid, vocab, args.steps, 20, 20),
        "plain loop, rnnlab.RNN body": lambda: plain_loop(data, valid, vocab, args.steps, 20, 20,
                                                          rnnlab_body=True),
    }
    results: dict[str, list] = {name: [] for name in runs}
    for round_ in range(args.rounds):
        order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
        for name in order:
            results[name].append(runs[name]())
        print(f"round {round_ + 1}, tokens/s (steps alone / with the validation pass): "
              + "; ".join(f"{name} {results[name][-1][0]:,.0f} / {results[name][-1][1]:,.0f}"
                          for name in runs), flush=True)
    print(f"\nmedian over {args.rounds} rounds of {args.steps} steps, {args.threads} thread(s), "
          f"trainer with train_metric={args.train_metric}:")
    for k, what in enumerate(("training steps alone", "steps + one validation pass")):
        med = {name: statistics.median(r[k] for r in values) for name, values in results.items()}
        base = med["plain loop"]
        print(f"  {what}: " + ", ".join(f"{name} {v:,.0f} tokens/s ({v / base:.3f}x)"
                                        for name, v in med.items()))


if __name__ == "__main__":
    main()
