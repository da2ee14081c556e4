"""Training: model = input -> recurrent body -> task head; the trainer; run directories.

    >>> from rnnlab.train import ExperimentConfig, apply_overrides, train
    >>> config = apply_overrides(ExperimentConfig(), ["cell=gru", "train.max_steps=100"])
    >>> run, summary = train(config)            # writes runs/<timestamp>-text-gru/

See docs/training.md for the command line (``rnnlab train``, ``compare``, ...), every config
field, the run directory layout, resuming and distributed training.
"""

from rnnlab.train.config import ConfigError, ExperimentConfig, apply_overrides
from rnnlab.train.model import SequenceModel, count_parameters
from rnnlab.train.pretrained import load_trained
from rnnlab.train.sampling import sample
from rnnlab.train.trainer import Trainer, TrainingDiverged, train

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "SequenceModel",
    "Trainer",
    "TrainingDiverged",
    "apply_overrides",
    "count_parameters",
    "load_trained",
    "sample",
    "train",
]
