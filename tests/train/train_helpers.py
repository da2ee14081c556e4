"""Shared helpers for the training tests: tiny, fast configurations."""

import json

from rnnlab.train.config import ExperimentConfig, apply_overrides

# A small slice of the stdlib corpus keeps task loading and evaluation fast.
TEXT = ["task.name=text", "task.chars=60000", "task.seq_len=8"]
# Tiny sizes and budgets for any task.
TINY = [
    "task.batch_size=4",
    "task.eval_max_batches=2",
    "model.hidden_size=12",
    "train.epochs=none",
    "run.quiet=true",
    "run.plots=false",
]


def tiny_config(*overrides: str, task: list[str] = TEXT) -> ExperimentConfig:
    """A tiny run (by default on a slice of the text task), with ``overrides`` applied."""
    return apply_overrides(ExperimentConfig(), [*task, *TINY, *overrides])


def read_metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


TIMING = ("time", "tokens_per_s")


def without_timing(records: list[dict]) -> list[dict]:
    """Metric records without the wall-clock fields, which differ from run to run."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def scripted_validation(monkeypatch, values, primary=None):
    """Periodic validations report ``values`` in turn as their loss (the selection criterion)
    and, unless ``primary`` is given (a constant: a metric stuck at its floor), as their primary
    metric too; full evaluations are real. Returns the parameters the model had at each
    validation, by step."""
    from rnnlab.train.trainer import Trainer

    scripted, snapshots = iter(values), {}
    original = Trainer.evaluate

    def evaluate_(self, split, *, full=False, count=False):
        result = original(self, split, full=full, count=count)
        if full:
            return result
        snapshots[self.counters.step] = {k: v.clone() for k, v in self.model.state_dict().items()}
        reported = result[0] if count else result
        reported["loss"] = next(scripted)
        reported[self.metric_info.primary] = reported["loss"] if primary is None else primary
        return result

    monkeypatch.setattr(Trainer, "evaluate", evaluate_)
    return snapshots


def full_split(config, parameters, split):
    """The metrics of ``split`` for the model of ``config`` with ``parameters``."""
    from rnnlab.train.evaluate import evaluate
    from rnnlab.train.trainer import build

    task, model = build(config)
    model.load_state_dict(parameters)
    c = config.task
    return evaluate(model, task, split, c.eval_batch_size or c.batch_size, seq_len=c.seq_len)

