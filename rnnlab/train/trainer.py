"""The training loop: (truncated) BPTT, clipping, schedules, evaluation, checkpoints, resume.

One optimiser step per batch::

    batch  = next(train stream)                      # the task's batches, from `start=step`
    local  = this rank's columns of the batch        # everything, in a single process
    logits, state = model(local.inputs, carried if local.continues else None, ...)
    loss   = task.loss(logits, local); loss.backward()
    average gradients over ranks; clip by value, then by norm; optimiser step
    carried = detach(state)                          # truncated BPTT; bptt=full: never carried

Validation runs every ``train.eval_every`` steps (default: each epoch end) and drives model
selection, early stopping and ``best.pt``, all on one criterion (``train.select``: the
validation loss by default, which moves while a metric such as exact match still sits at its
floor; or the primary metric with ties broken by the loss). When training stops (step or epoch
limit, time budget, patience), both the selected and the final parameters are evaluated on the
full valid and test splits, and summary.json reports both. A checkpoint holds everything that
changes during training — parameters, optimiser state, best parameters, the carried recurrent state,
torch / numpy / Python RNG states (of every rank; the GPU's too on CUDA), the step (which is the
data position) and the counters — so a resumed run on the CPU ends bit for bit where an
uninterrupted one would.

The model, every batch (inputs, targets, masks, lengths) and the carried state live on the
run's device (``run.device``: cpu, cuda or auto; :mod:`rnnlab.train.device`); checkpoints are
read onto the CPU and copied to the device, so a run can resume on another one. Bodies that
pack padded batches take the lengths to the CPU themselves, as PackedSequence needs.

A NaN or infinite loss or gradient stops the run with :class:`TrainingDiverged`; the last
checkpoint (taken before the bad step) is kept, and summary.json records what happened.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import rnnlab.tasks
from rnnlab import machine
from rnnlab.engine.state import detach
from rnnlab.tasks.base import Tokens
from rnnlab.train import checkpoint as ckpt
from rnnlab.train import device as devices
from rnnlab.train import distributed as dist
from rnnlab.train.config import ExperimentConfig, Limits, to_dict
from rnnlab.train.evaluate import evaluate_counted
from rnnlab.train.loss import training_loss
from rnnlab.train.model import SequenceModel, count_parameters, describe, model_for
from rnnlab.train.optim import clip_gradients, learning_rate, make_optimizer, set_learning_rate
from rnnlab.train.progress import Progress, TensorBoard, write_line
from rnnlab.train.run import (
    BEST,
    CHECKPOINT,
    CONFIG,
    METRICS,
    MODEL,
    PREVIOUS,
    SUMMARY,
    TASK,
    VOCAB,
    RunDir,
    default_dir,
    hold,
)

GENERATED_EPOCH = 100  # steps per nominal epoch of tasks whose train data is generated, unbounded


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite."""


@dataclass
class Counters:
    """The trainer's bookkeeping, saved in every checkpoint (plain numbers only)."""

    step: int = 0  # optimiser steps taken; also the index of the next training batch
    tokens: int = 0  # input steps trained on, over all ranks
    train_seconds: float = 0.0  # time in training steps and periodic evaluations (the budget)
    step_seconds: float = 0.0  # time in training steps alone (for tokens/s)
    best_value: float | None = None  # primary metric of the selected validation
    best_step: int | None = None  # step of the selected validation
    best_loss: float | None = None  # validation loss of the selected validation
    bad_evaluations: int = 0  # evaluations since the last improvement (early stopping)
    last_checkpoint: int = -1  # step of the latest checkpoint
    last_validation: int = -1  # step of the latest validation
    records: int = 0  # records written to metrics.jsonl so far (a resume checks the file)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def make_task(config: ExperimentConfig):
    """The configured task. ``task.seq_len`` also reaches the task's constructor when it takes
    one (tasks such as xml fix their sequence length when they are made)."""
    options = dict(config.task.options)
    takes = rnnlab.tasks.factory_options(config.task.name)
    if config.task.seq_len is not None and "seq_len" in takes:
        options.setdefault("seq_len", config.task.seq_len)
    return rnnlab.tasks.make(config.task.name, **options)


def build(config: ExperimentConfig):
    """Seed, make the task and the model exactly as a training run does: (task, model)."""
    seed_everything(config.train.seed)
    task = make_task(config)
    model = model_for(task, config.model)
    return task, model


class Trainer:
    """Trains ``model`` on ``task`` as ``config`` says, recording into ``run`` (rank 0).

    Create it, optionally :meth:`restore` a checkpoint, then :meth:`fit`, which returns the
    summary dict (also written to summary.json). The model is moved to the world's device
    (without a ``world``: ``config.run.device`` resolved here) before the optimiser is built.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        task,
        model: SequenceModel,
        run: RunDir,
        world: dist.World | None = None,
        *,
        stream=None,
        limits: Limits | None = None,
    ):
        self.config = config
        self.task = task
        self.run = run
        self.world = world or dist.World(device=dist.placed(devices.resolve(config.run.device)))
        self.device = torch.device(self.world.device)
        self.model = model.to(self.device)  # before the optimiser holds its parameters
        self.stream = stream
        self.limits = limits or Limits.guess(config)  # where the stopping rules came from
        self.optimizer = make_optimizer(model.parameters(), config.train)
        self.counters = Counters()
        self.carried = None  # recurrent state carried into the next training batch
        self.interrupted = False  # set by Ctrl-C: stop after this step, with a checkpoint
        self.best_params = None  # state_dict at the best validation value
        self.metric_info = task.metric()
        t = config.train
        spe = t.steps_per_epoch or task.batches_per_epoch(
            "train", config.task.batch_size, seq_len=config.task.seq_len
        )
        self.steps_per_epoch = spe or GENERATED_EPOCH
        limits = [n for n in (t.max_steps, t.epochs and t.epochs * self.steps_per_epoch) if n]
        self.total_steps = min(limits) if limits else None
        self.eval_every = t.eval_every or self.steps_per_epoch
        self.tensorboard = TensorBoard(
            run.file("tensorboard") if (config.run.tensorboard and self.world.main) else None
        )

    # --- checkpoints ------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Write checkpoint.pt (all ranks take part: RNG and carried states are gathered);
        nothing with ``train.checkpoints`` off."""
        if not self.config.train.checkpoints:
            return
        per_rank = dist.gather(
            {"rng": ckpt.rng_state(self.device), "carried": ckpt.flatten_state(self.carried)},
            self.world,
        )
        self.counters.last_checkpoint = self.counters.step
        if not self.world.main:
            return
        payload = {
            "format": ckpt.FORMAT,
            "config": to_dict(self.config),
            "world_size": self.world.size,
            "counters": asdict(self.counters),
            "model": self.model.state_dict(),
            "best_model": self.best_params,
            "optimizer": self.optimizer.state_dict(),
            "ranks": per_rank,
        }
        self.run.sync_metrics()  # the records up to this step are on disk with it
        latest = self.run.file(CHECKPOINT)
        if latest.is_file():  # keep the last two: a damaged latest one falls back to this
            os.replace(latest, self.run.file(PREVIOUS))
        ckpt.save_atomic(payload, latest)

    def restore(self, payload: dict) -> None:
        """Continue from a checkpoint written by :meth:`checkpoint` (same world size)."""
        if payload["world_size"] != self.world.size:
            raise ValueError(
                f"the checkpoint was written by {payload['world_size']} process(es); "
                f"resume it with the same number (this run has {self.world.size})"
            )
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.best_params = payload["best_model"]
        self.counters = Counters(**payload["counters"])
        mine = payload["ranks"][self.world.rank]
        if mine["carried"] is not None:
            self.carried = ckpt.unflatten_state(self.state_template(), mine["carried"])
        ckpt.set_rng_state(mine["rng"], self.device)

    def state_template(self):
        """A zero state of the right structure and batch size (one eval-mode step, no RNG use)."""
        width = self.config.task.batch_size // self.world.size
        space = self.task.input
        if isinstance(space, Tokens):
            dummy = torch.zeros(1, width, dtype=torch.long, device=self.device)
        else:
            dummy = torch.zeros(1, width, space.size, device=self.device)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            _, state = self.model(dummy)
        self.model.train(was_training)
        return state

    # --- one step ---------------------------------------------------------------------------
    def train_step(self, batch) -> tuple[float, float, torch.Tensor, object]:
        """One optimiser step on this rank's part of ``batch``: (mean loss, grad norm, logits,
        local batch). Raises TrainingDiverged before updating anything when not finite."""
        t = self.config.train
        epoch = self.counters.step // self.steps_per_epoch
        set_learning_rate(
            self.optimizer, learning_rate(t, self.counters.step, epoch, self.total_steps)
        )
        local = dist.shard(batch, self.world).to(self.device)
        self.model.train()
        carry = self.carried if (t.bptt == "truncated" and local.continues) else None
        logits, state = self.model(local.inputs, carry, local.lengths, input_noise=t.input_noise)
        objective, loss = training_loss(self.task, logits, local, t.loss_reduction)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        dist.average_gradients(self.model, self.world)
        norm = clip_gradients(self.model, t)
        value = dist.mean(float(loss.detach()), self.world)
        if not (math.isfinite(value) and math.isfinite(norm)):
            what = "loss" if not math.isfinite(value) else "gradient norm"
            bad = value if not math.isfinite(value) else norm
            raise TrainingDiverged(
                f"the {what} became {bad} at step {self.counters.step + 1}; the run stopped "
                f"and its last good checkpoint (step {self.counters.last_checkpoint}) is kept. "
                "Lower train.lr, set train.clip_norm, or check the data"
            )
        self.optimizer.step()
        self.carried = detach(state) if t.bptt == "truncated" else None
        return value, norm, logits.detach(), local

    # --- evaluation -------------------------------------------------------------------------
    def evaluate(self, split: str, *, full: bool = False, count: bool = False):
        """The metrics of ``split`` (the whole split with ``full``, else at most
        ``task.eval_max_batches`` batches); with ``count``, also what they were counted on
        (``"25,600 tokens"``)."""
        c = self.config.task
        batch_size = c.eval_batch_size or c.batch_size
        if split == "test" and c.test_batch_size is not None:
            batch_size = c.test_batch_size
        values, counted = evaluate_counted(
            self.model,
            self.task,
            split,
            batch_size,
            seq_len=c.seq_len,
            max_batches=None if full else c.eval_max_batches,
            device=self.device,
        )
        return (values, counted) if count else values

    def selection_key(self, primary: float, loss: float) -> tuple[float, ...]:
        """What model selection and early stopping minimise, from one validation.

        ``train.select="loss"`` (the default): the validation loss, which moves while a metric
        such as sequence accuracy or exact match still sits at its floor. ``"metric"``: the
        primary metric, ties broken by the loss (so a run whose metric never leaves its floor
        still keeps the parameters that learnt the most)."""
        if self.config.train.select == "loss":
            return (loss,)
        return (-primary if self.metric_info.higher_is_better else primary, loss)

    def better(self, primary: float, loss: float) -> bool:
        c = self.counters
        if c.best_step is None:
            return True
        if c.best_loss is None:  # a checkpoint written before selection on loss: keep going
            return True
        return self.selection_key(primary, loss) < self.selection_key(c.best_value, c.best_loss)

    def validate(self, progress: Progress) -> bool:
        """Evaluate valid, update the selected parameters and early stopping (both on
        ``train.select``'s criterion); True when patience has run out."""
        values, counted = self.evaluate("valid", count=True)
        primary = values[self.metric_info.primary]
        loss = values["loss"]
        c = self.counters
        c.last_validation = c.step
        if self.better(primary, loss):
            c.best_value, c.best_loss, c.best_step, c.bad_evaluations = primary, loss, c.step, 0
            self.best_params = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.world.main and self.config.train.checkpoints:
                ckpt.save_atomic(
                    {"format": ckpt.FORMAT, "step": c.step, "model": self.best_params},
                    self.run.file(BEST),
                )
        else:
            c.bad_evaluations += 1
        self.log("valid", values)
        full = self.config.task.eval_max_batches is None
        what = "full split" if full else "estimate"
        progress.note(
            f"step {c.step} epoch {self.epoch():.2f} ({progress.timing()}): valid {what} on "
            f"{counted}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
        )
        patience = self.config.train.patience
        return patience is not None and c.bad_evaluations >= patience

    def epoch(self) -> float:
        return self.counters.step / self.steps_per_epoch

    def log(self, split: str, values: dict, **extra) -> None:
        record = {
            "split": split,
            "step": self.counters.step,
            "epoch": self.epoch(),
            "time": self.counters.train_seconds,
            **values,
            **extra,
        }
        self.counters.records += 1
        if self.world.main:
            self.run.log(record)
            self.tensorboard.scalars(split, values, self.counters.step)

    # --- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        t, c = self.config.train, self.counters
        task_config = self.config.task
        progress = Progress(
            self.total_steps,
            c.step,
            quiet=self.config.run.quiet,
            enabled=self.world.main,
            stream=self.stream,
            description=f"{self.task.name}",
            budget=t.budget_seconds,
            elapsed=c.train_seconds,
        )
        progress.note(self.limits.line(self.config))
        batches = self.task.batches(
            "train",
            task_config.batch_size,
            seq_len=task_config.seq_len,
            start=c.step,
            seed=t.seed,
        )
        wall_start = time.perf_counter()
        self.machine_at_start = machine.describe()
        window = {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0, "norm": 0.0}
        window_metric = self.task.metric()
        status, message = "completed", ""
        restore_handler = self.catch_interrupts()
        try:
            while True:
                if dist.stop_vote(self.interrupted, self.world):
                    # Ctrl-C: stop between steps, with a checkpoint of this step.
                    if window["steps"]:
                        self.log_window(window, window_metric, progress)
                    if c.last_checkpoint != c.step:
                        self.checkpoint()
                    raise KeyboardInterrupt
                stop = self.stop_reason()
                if dist.stop_vote(stop is not None, self.world):
                    status = stop or "budget"
                    break
                started = time.perf_counter()
                batch = next(batches)
                loss, norm, logits, local = self.train_step(batch)
                tokens = _input_steps(batch)
                c.step += 1
                c.tokens += tokens
                closes_window = (
                    c.step % t.log_every == 0
                    or c.step % self.eval_every == 0
                    or (t.checkpoint_every is not None and c.step % t.checkpoint_every == 0)
                    or c.step == self.total_steps
                )
                if t.train_metric == "window" or closes_window:
                    window_metric.update(logits, local)
                elapsed = time.perf_counter() - started
                c.train_seconds += elapsed
                c.step_seconds += elapsed
                window["loss"] += loss
                window["norm"] += norm
                window["steps"] += 1
                window["tokens"] += tokens
                window["seconds"] += elapsed
                progress.update(1, elapsed)
                evaluate_now = c.step % self.eval_every == 0
                checkpoint_now = evaluate_now or (
                    t.checkpoint_every is not None and c.step % t.checkpoint_every == 0
                )
                # A checkpoint also closes the logging window, so that a resumed run logs the
                # same windows as an uninterrupted one.
                if c.step % t.log_every == 0 or checkpoint_now or c.step == self.total_steps:
                    self.log_window(window, window_metric, progress)
                    window = dict.fromkeys(window, 0.0)
                    window_metric = self.task.metric()
                patience_out = False
                if evaluate_now:
                    started = time.perf_counter()
                    patience_out = self.validate(progress)
                    c.train_seconds += time.perf_counter() - started
                if checkpoint_now:
                    self.checkpoint()
                if patience_out:
                    status = "early_stopped"
                    break
        except TrainingDiverged as error:
            progress.close()
            summary = self.summary("diverged", str(error), time.perf_counter() - wall_start)
            if self.world.main:
                self.run.write_json(SUMMARY, summary)
            self.tensorboard.close()
            raise
        except KeyboardInterrupt:
            restore_handler()
            progress.close()
            if self.world.main:
                write_line(
                    f"interrupted at step {c.step}; continue with "
                    f"`rnnlab train --resume {self.run.path}` "
                    f"(from the checkpoint at step {c.last_checkpoint})"
                )
            raise
        finally:
            restore_handler()
        if window["steps"]:
            self.log_window(window, window_metric, progress)
        validated = False
        if c.step > 0 and c.last_validation != c.step:
            # Steps after the last periodic validation count too: validate the last parameters
            # before the best ones are chosen.
            started = time.perf_counter()
            self.validate(progress)
            c.train_seconds += time.perf_counter() - started
            validated = True
        if validated or c.last_checkpoint != c.step:
            self.checkpoint()
        which = (f"parameters selected on valid {self.config.train.select}, step {c.best_step},"
                 " and the final ones" if c.best_step is not None else "final parameters")
        progress.note(
            f"{status} at step {c.step}; evaluating on the full valid and test splits ({which})"
        )
        progress.close()
        if status == "early_stopped":
            message = f"no improvement in {t.patience} evaluations"
        final = self.final_evaluation()
        if self.world.main and not self.config.run.quiet:
            for which, results in (("selected", final), ("final", final.get("last"))):
                if results is None:
                    continue
                for split in ("valid", "test"):
                    write_line(
                        f"{which} {split} (full split, {self.final_counts[split]}): "
                        + ", ".join(f"{k} {v:.4f}" for k, v in results[split].items()),
                        self.stream or sys.stderr,
                    )
        summary = self.summary(status, message, time.perf_counter() - wall_start, final)
        if self.world.main:
            self.run.write_json(SUMMARY, summary)
        self.tensorboard.close()
        return summary

    def catch_interrupts(self):
        """Make the first SIGINT (Ctrl-C) a request to stop after the current step, with a
        checkpoint; a second one stops at once. Returns the function restoring the handler."""
        self.interrupted = False
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def request_stop(signum, frame):
            if self.interrupted:
                raise KeyboardInterrupt
            self.interrupted = True

        previous = signal.signal(signal.SIGINT, request_stop)
        return lambda: signal.signal(signal.SIGINT, previous)

    def stop_reason(self) -> str | None:
        t, c = self.config.train, self.counters
        if self.total_steps is not None and c.step >= self.total_steps:
            return "completed"
        if t.budget_seconds is not None and c.train_seconds >= t.budget_seconds:
            return "budget"
        return None

    def log_window(self, window: dict, metric, progress: Progress) -> None:
        steps = max(int(window["steps"]), 1)
        values = {"loss": window["loss"] / steps}
        primary = self.metric_info.primary
        try:
            computed = metric.compute()
        except ValueError:  # nothing counted in this window (all steps masked out)
            computed = {}
        if primary in computed and primary != "loss":
            values[primary] = computed[primary]
        speed = window["tokens"] / max(window["seconds"], 1e-9)
        lr = self.optimizer.param_groups[0]["lr"]
        self.log(
            "train", values, tokens_per_s=speed, lr=lr, grad_norm=window["norm"] / steps
        )
        progress.update(0, **values, tok_s=speed)

    def final_evaluation(self) -> dict:
        """Valid and test, on the full splits, with the selected parameters (``valid``,
        ``test``) and with the final ones (``last``). Without a selection (no validation ran)
        the two are the same parameters, evaluated once."""
        results, counts = {}, {}
        for split in ("valid", "test"):
            results[split], counts[split] = self.evaluate(split, full=True, count=True)
        self.final_counts = counts
        last = {split: dict(values) for split, values in results.items()}
        selected_is_last = self.best_params is None or self.counters.best_step == self.counters.step
        if not selected_is_last:
            current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.best_params)
            for split in ("valid", "test"):
                results[split] = self.evaluate(split, full=True)
            self.model.load_state_dict(current)
        for split, values in results.items():
            self.log(split, values, final=True)
        if not selected_is_last:  # the same numbers are not recorded twice
            for split, values in last.items():
                self.log(split, values, final=True, parameters="last")
        results["last"] = last
        return results

    def summary(self, status: str, message: str, wall_seconds: float, final=None) -> dict:
        c = self.counters
        out = {
            "status": status,
            "message": message,
            "task": self.task.name,
            "model": describe(self.model),
            "parameters": count_parameters(self.model),
            "steps": c.step,
            "epochs": self.epoch(),
            "tokens": c.tokens,
            "train_seconds": c.train_seconds,
            "wall_seconds_last_session": wall_seconds,
            "tokens_per_s": c.tokens / c.step_seconds if c.step_seconds else None,
            "primary": self.metric_info.primary,
            "higher_is_better": self.metric_info.higher_is_better,
            "selection": self.config.train.select,  # valid/test below: selected on this
            "best_valid": c.best_value,
            "best_valid_loss": c.best_loss,
            "best_step": c.best_step,
            "world_size": self.world.size,
            "device": str(self.device),
            # the last session's machine: CPU, threads and load at its start and end; the GPU
            "machine": {**getattr(self, "machine_at_start", machine.describe()),
                        "load_end": machine.load_average(),
                        **devices.gpu(self.device)},
        }
        if final is not None:
            out["valid"], out["test"] = final["valid"], final["test"]
            if "last" in final:
                out["last"] = final["last"]
        if self.world.distributed:
            out["parameter_spread_across_ranks"] = dist.parameter_spread(self.model, self.world)
        return out


def _input_steps(batch) -> int:
    """Input steps in a (whole) batch: the valid steps within ``lengths``, else T * B."""
    if batch.lengths is not None:
        return int(batch.lengths.sum())
    return batch.inputs.shape[0] * batch.inputs.shape[1]


def train(
    config: ExperimentConfig,
    *,
    argv: list[str] | None = None,
    resume: str | None = None,
    stream=None,
    limits: Limits | None = None,
) -> tuple[RunDir, dict]:
    """Run (or resume) one experiment; returns its run directory and summary.

    ``resume`` names a run directory holding checkpoint.pt; ``config`` must then be that run's
    config (with any overrides). Launched by torchrun, every rank calls this and trains its
    share; only rank 0 writes. ``stream`` receives progress (stderr by default), which starts
    with the stopping rules in force and where each came from (``limits``, from
    ``rnnlab.train.config.compose``; without it, a value equal to the default is "default").
    """
    world = dist.setup(devices.resolve(config.run.device))  # cuda without a GPU: refused
    try:
        with contextlib.ExitStack() as held:  # the run directory's lock (rank 0), to the end
            return _train(config, world, held, argv=argv, resume=resume, stream=stream,
                          limits=limits)
    finally:
        dist.teardown(world)


def _train(config, world, held, *, argv, resume, stream, limits):
    if config.run.threads is not None:
        torch.set_num_threads(config.run.threads)
    absolute_data_paths(config)
    payload = None
    if resume is not None:
        run = RunDir(resume)
        run.require()  # (a mistyped path is not made into a directory by the lock)
        if world.main:  # a run another process is training is refused (RunBusy)
            held.enter_context(hold(run.path))
        payload, source = load_resume_checkpoint(run)
    # The task and model are made before any run directory: a data error leaves nothing behind.
    task, model = build(config)
    model.to(world.device)  # before rank 0's parameters are broadcast
    if resume is not None:
        check_same_data(run, task)
    else:
        path = config.run.dir or (str(default_dir(config)) if world.main else None)
        run = RunDir(dist.broadcast(path, world))
        if world.main:
            held.enter_context(hold(run.path))
            run.create(config, argv)
            write_vocabulary(run, task)
            run.write_json(TASK, {"name": task.name, **getattr(task, "info", {})})
    dist.broadcast_parameters(model, world)
    if world.rank > 0:  # distinct dropout / noise per rank; rank 0 keeps the single-run stream
        torch.manual_seed(config.train.seed + 7919 * world.rank)
    trainer = Trainer(config, task, model, run, world, stream=stream, limits=limits)
    if payload is not None:
        try:
            trainer.restore(payload)
        except (RuntimeError, KeyError, TypeError, ValueError) as error:
            reason = " ".join(str(error).split())[:200]
            raise ckpt.CheckpointError(
                f"{run.file(source)} does not fit this run's model and config ({reason}); "
                "it is damaged or from another run"
            ) from None
        refuse_finished(run, trainer)
        if world.main:
            record_resume(run, trainer, payload, config, argv, source)
    if world.main:
        line = f"{run.path}: {describe(model)}"
        if world.distributed:
            line += f" ({world.size} processes)"
        write_line(line)
        run.write_text(MODEL, describe(model) + "\n\n" + str(model) + "\n")
    summary = trainer.fit()
    if world.main:
        if config.run.plots:
            from rnnlab.train.plots import learning_curves

            learning_curves([run], run.file("curves.png"), budget=config.train.budget_seconds)
        write_line(result_line(summary))
    return run, summary


def absolute_data_paths(config: ExperimentConfig) -> None:
    """Make a ``task.path`` option absolute, so the run directory records where the data is
    whatever directory later commands run from."""
    path = config.task.options.get("path")
    if isinstance(path, str) and path:
        config.task.options["path"] = str(Path(path).expanduser().resolve())


def load_resume_checkpoint(run: RunDir) -> tuple[dict, str]:
    """The latest loadable checkpoint of ``run``: checkpoint.pt, or checkpoint.prev.pt when the
    latest is damaged (saying so). Returns (payload, which file)."""
    run.require()
    required = ("config", "counters", "model", "optimizer", "ranks", "world_size")
    latest, previous = run.file(CHECKPOINT), run.file(PREVIOUS)
    run.require_resumable()
    try:
        return ckpt.load(latest, required), CHECKPOINT
    except (ckpt.CheckpointError, FileNotFoundError) as error:
        if not previous.is_file():
            raise
        try:
            payload = ckpt.load(previous, required)
        except ckpt.CheckpointError as second:
            raise ckpt.CheckpointError(f"{error}; the previous one too: {second}") from None
        write_line(
            f"{error}; resuming from the previous checkpoint {PREVIOUS} "
            f"(step {payload['counters']['step']})",
            sys.stderr,
        )
        return payload, PREVIOUS


def check_same_data(run: RunDir, task) -> None:
    """Refuse to continue a run on data whose sha256 differs from the one it recorded."""
    if not run.file(TASK).is_file():
        return
    recorded = run.read_json(TASK)
    old, new = recorded.get("sha256"), getattr(task, "info", {}).get("sha256")
    if old and new and old != new:
        raise ValueError(
            f"the data of task {task.name!r} changed since {run.path} was trained: "
            f"{task.info.get('source', 'the data')} has sha256 {new[:16]}..., the run recorded "
            f"{old[:16]}... ({recorded.get('source', '?')}). Resuming would mix two corpora: "
            "restore the original data, or start a new run"
        )


def refuse_finished(run: RunDir, trainer: Trainer) -> None:
    """A finished run is never silently rewritten: resuming one needs a raised limit."""
    summary = run.summary() if run.file(SUMMARY).is_file() else None
    if not summary or summary.get("status") not in ("completed", "budget", "early_stopped"):
        return
    c, t = trainer.counters, trainer.config.train
    patience_out = t.patience is not None and c.bad_evaluations >= t.patience
    if trainer.stop_reason() is not None or (
        summary["status"] == "early_stopped" and patience_out
    ):
        # name the limit(s) that hold the run: raising another one would change nothing
        holding = []
        if t.epochs is not None and c.step >= t.epochs * trainer.steps_per_epoch:
            holding.append(f"train.epochs={t.epochs} (raise it, e.g. --train.epochs="
                           f"{2 * t.epochs}, or lift it with --train.epochs=none)")
        if t.max_steps is not None and c.step >= t.max_steps:
            holding.append(f"train.max_steps={t.max_steps} (e.g. --train.max_steps="
                           f"{2 * max(c.step, 1)})")
        if t.budget_seconds is not None and c.train_seconds >= t.budget_seconds:
            holding.append(f"train.budget_seconds={t.budget_seconds:g} (e.g. "
                           f"--train.budget_seconds={2 * t.budget_seconds:g})")
        if summary["status"] == "early_stopped" and patience_out:
            holding.append(f"train.patience={t.patience} (e.g. --train.patience="
                           f"{2 * t.patience})")
        raise ValueError(
            f"{run.path} is finished ({summary['status']} at step {c.step}); there is nothing "
            "to resume. It is held by " + "; ".join(holding) + ": raise that on resuming"
        )


def record_resume(run: RunDir, trainer: Trainer, payload, config, argv, source: str) -> None:
    """Append what the resume replaces to history.jsonl; check that metrics.jsonl still holds
    the records the checkpoint counted (saying so when it does not)."""
    step = payload["counters"]["step"]
    run.append_history(
        {
            "resumed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "from_step": step,
            "checkpoint": source,
            "previous_config": run.read_json(CONFIG),
            "previous_summary": run.summary() if run.file(SUMMARY).is_file() else None,
            "argv": argv,
        }
    )
    run.write_json(CONFIG, to_dict(config))  # overrides given on resuming are kept
    run.append_command(argv)
    expected = payload["counters"].get("records")
    kept = run.truncate_metrics(step)
    if expected is not None and kept < expected:
        write_line(
            f"warning: {run.file(METRICS)} holds {kept} records up to step {step}, the checkpoint "
            f"counted {expected}: {expected - kept} records of this run's history were deleted "
            "or cut; the learning curves will miss them",
            sys.stderr,
        )
    if run.file(SUMMARY).exists():
        run.file(SUMMARY).unlink()  # kept in history.jsonl; rewritten when this session ends
    write_line(f"resuming {run.path} from step {step} ({source})")


def write_vocabulary(run: RunDir, task) -> None:
    """vocab.json: the symbols of a Tokens task, so sampling needs only the run directory."""
    vocabulary = getattr(task, "vocabulary", None)
    if vocabulary is None or not isinstance(task.input, Tokens):
        return
    run.write_json(
        VOCAB, {"symbols": list(vocabulary.symbols), "words": bool(vocabulary.words)}
    )


def result_line(summary: dict) -> str:
    """One line of results, e.g. ``completed after 120 steps: valid bits_per_char 2.31 ...``."""
    primary = summary["primary"]
    parts = [f"{summary['status']} after {summary['steps']} steps"]
    for split in ("valid", "test"):
        if split in summary:
            parts.append(f"{split} {primary} {summary[split][primary]:.4f}")
    if summary.get("tokens_per_s"):
        parts.append(f"{summary['tokens_per_s']:.0f} tokens/s")
    return ", ".join(parts)
