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
