"""The training loop: (truncated) BPTT, clipping, schedules, evaluation, checkpoints, resume.

One optimiser step per batch::

    batch  = next(train stream)                      # the task's batches, from `start=step`
    local  = this rank's columns of the batch        # everything, in a single process
    logits, state = model(local.inputs, carried if local.continues else None, ...)
    loss   = task.loss(logits, local); loss.backward()
    average gradients over ranks; clip by value, then by norm; optimiser step
    carried = detach(state)                          # truncated BPTT; bptt=full: never carried

Validation runs every ``train.eval_every`` steps (default: each epoch end) and drives early
stopping and ``best.pt``; when training stops (step or epoch limit, time budget, patience),
the best parameters are evaluated on valid and test. A checkpoint holds everything that changes
during training — parameters, optimiser state, best parameters, the carried recurrent state,
torch / numpy / Python RNG states (of every rank), the step (which is the data position) and the
counters — so a resumed run on the CPU ends bit for bit where an uninterrupted one would.

A NaN or infinite loss or gradient stops the run with :class:`TrainingDiverged`; the last
checkpoint (taken before the bad step) is kept, and summary.json records what happened.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

import rnnlab.tasks
from rnnlab.engine.state import detach
from rnnlab.tasks.base import Tokens
from rnnlab.train import checkpoint as ckpt
from rnnlab.train import distributed as dist
from rnnlab.train.config import ExperimentConfig, to_dict
from rnnlab.train.evaluate import evaluate
from rnnlab.train.loss import training_loss
from rnnlab.train.model import SequenceModel, count_parameters, describe
from rnnlab.train.optim import clip_gradients, learning_rate, make_optimizer, set_learning_rate
from rnnlab.train.progress import Progress, TensorBoard
from rnnlab.train.run import BEST, CHECKPOINT, CONFIG, MODEL, SUMMARY, TASK, RunDir, default_dir

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
    best_value: float | None = None  # best validation value of the primary metric
    best_step: int | None = None  # step at which it was reached
    bad_evaluations: int = 0  # evaluations since the last improvement (early stopping)
    last_checkpoint: int = -1  # step of the latest checkpoint


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
    model = SequenceModel(task.input, task.output, config.model)
    return task, model


class Trainer:
    """Trains ``model`` on ``task`` as ``config`` says, recording into ``run`` (rank 0).

    Create it, optionally :meth:`restore` a checkpoint, then :meth:`fit`, which returns the
    summary dict (also written to summary.json).
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
    ):
        self.config = config
        self.task = task
        self.model = model
        self.run = run
        self.world = world or dist.World()
        self.stream = stream
        self.optimizer = make_optimizer(model.parameters(), config.train)
        self.counters = Counters()
        self.carried = None  # recurrent state carried into the next training batch
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
        """Write checkpoint.pt (all ranks take part: RNG and carried states are gathered)."""
        per_rank = dist.gather(
            {"rng": ckpt.rng_state(), "carried": ckpt.flatten_state(self.carried)}, self.world
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
        ckpt.save_atomic(payload, self.run.file(CHECKPOINT))

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
        ckpt.set_rng_state(mine["rng"])

    def state_template(self):
        """A zero state of the right structure and batch size (one eval-mode step, no RNG use)."""
        width = self.config.task.batch_size // self.world.size
        space = self.task.input
        if isinstance(space, Tokens):
            dummy = torch.zeros(1, width, dtype=torch.long)
        else:
            dummy = torch.zeros(1, width, space.size)
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
        local = dist.shard(batch, self.world)
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
    def evaluate(self, split: str, *, full: bool = False) -> dict[str, float]:
        c = self.config.task
        batch_size = c.eval_batch_size or c.batch_size
        if split == "test" and c.test_batch_size is not None:
            batch_size = c.test_batch_size
        return evaluate(
            self.model,
            self.task,
            split,
            batch_size,
            seq_len=c.seq_len,
            max_batches=None if full else c.eval_max_batches,
        )

    def better(self, value: float) -> bool:
        best = self.counters.best_value
        if best is None:
            return True
        return value > best if self.metric_info.higher_is_better else value < best

    def validate(self, progress: Progress) -> bool:
        """Evaluate valid, update best / early stopping; True when patience has run out."""
        values = self.evaluate("valid")
        primary = values[self.metric_info.primary]
        c = self.counters
        if self.better(primary):
            c.best_value, c.best_step, c.bad_evaluations = primary, c.step, 0
            self.best_params = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.world.main:
                ckpt.save_atomic(
                    {"format": ckpt.FORMAT, "step": c.step, "model": self.best_params},
                    self.run.file(BEST),
                )
        else:
            c.bad_evaluations += 1
        self.log("valid", values)
        progress.note(
            f"step {c.step} epoch {self.epoch():.2f}: valid "
            + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
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
        )
        batches = self.task.batches(
            "train",
            task_config.batch_size,
            seq_len=task_config.seq_len,
            start=c.step,
            seed=t.seed,
        )
        wall_start = time.perf_counter()
        window = {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0, "norm": 0.0}
        window_metric = self.task.metric()
        status, message = "completed", ""
        try:
            while True:
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
                progress.update(1)
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
            progress.close()
            if self.world.main:
                print(
                    f"interrupted at step {c.step}; continue with "
                    f"`rnnlab train --resume {self.run.path}` "
                    f"(from the checkpoint at step {c.last_checkpoint})",
                    flush=True,
                )
            raise
        if window["steps"]:
            self.log_window(window, window_metric, progress)
        if c.last_checkpoint != c.step:
            self.checkpoint()
        which = f"best parameters, step {c.best_step}" if c.best_step is not None else "last"
        progress.note(f"{status} at step {c.step}; evaluating on valid and test ({which})")
        progress.close()
        if status == "early_stopped":
            message = f"no improvement in {t.patience} evaluations"
        final = self.final_evaluation()
        summary = self.summary(status, message, time.perf_counter() - wall_start, final)
        if self.world.main:
            self.run.write_json(SUMMARY, summary)
        self.tensorboard.close()
        return summary

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
        """Valid and test with the best validated parameters (the last ones if none)."""
        current = None
        if self.best_params is not None:
            current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.best_params)
        results = {split: self.evaluate(split, full=True) for split in ("valid", "test")}
        if current is not None:
            self.model.load_state_dict(current)
        for split, values in results.items():
            self.log(split, values, final=True)
        if self.config.train.evaluate_last:  # the papers that report the final weights
            results["last"] = {s: self.evaluate(s, full=True) for s in ("valid", "test")}
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
            "best_valid": c.best_value,
            "best_step": c.best_step,
            "world_size": self.world.size,
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
) -> tuple[RunDir, dict]:
    """Run (or resume) one experiment; returns its run directory and summary.

    ``resume`` names a run directory holding checkpoint.pt; ``config`` must then be that run's
    config (with any overrides). Launched by torchrun, every rank calls this and trains its
    share; only rank 0 writes. ``stream`` receives progress (stderr by default).
    """
    world = dist.setup()
    try:
        return _train(config, world, argv=argv, resume=resume, stream=stream)
    finally:
        dist.teardown(world)


def _train(config, world, *, argv, resume, stream):
    if config.run.threads is not None:
        torch.set_num_threads(config.run.threads)
    if resume is not None:
        run = RunDir(resume)
        payload = ckpt.load(run.file(CHECKPOINT))
    else:
        path = config.run.dir or (str(default_dir(config)) if world.main else None)
        run = RunDir(dist.broadcast(path, world))
        payload = None
        if world.main:
            run.create(config, argv)
    if resume is not None and world.main:
        run.write_json(CONFIG, to_dict(config))  # overrides given on resuming are kept
        run.append_command(argv)
        run.truncate_metrics(payload["counters"]["step"])
        if run.file(SUMMARY).exists():
            run.file(SUMMARY).unlink()

    task, model = build(config)
    dist.broadcast_parameters(model, world)
    if world.rank > 0:  # distinct dropout / noise per rank; rank 0 keeps the single-run stream
        torch.manual_seed(config.train.seed + 7919 * world.rank)
    trainer = Trainer(config, task, model, run, world, stream=stream)
    if payload is not None:
        trainer.restore(payload)
    if world.main:
        line = f"{run.path}: {describe(model)}"
        if world.distributed:
            line += f" ({world.size} processes)"
        print(line, flush=True)
        run.write_text(MODEL, describe(model) + "\n\n" + str(model) + "\n")
        run.write_json(TASK, {"name": task.name, **getattr(task, "info", {})})
    summary = trainer.fit()
    if world.main:
        if config.run.plots:
            from rnnlab.train.plots import learning_curves

            learning_curves([run], run.file("curves.png"))
        print(result_line(summary), flush=True)
    return run, summary


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
