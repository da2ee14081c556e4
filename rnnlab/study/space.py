"""The study's definition: Greff et al.'s hyperparameter space and the fixed training settings.

Greff, Srivastava, Koutník, Steunebrink & Schmidhuber (2016), "LSTM: A Search Space Odyssey",
drew every trial independently from one distribution, the same for all nine cells::

    hidden_size   ~ log-uniform [20, 200]        (an integer)
    lr            ~ log-uniform [1e-6, 1e-2]
    momentum      = 1 - m,  m ~ log-uniform [0.01, 1]     (so momentum in [0, 0.99])
    input_noise   ~ uniform [0, 1]               (std of Gaussian noise added to the inputs)

and trained each with SGD and Nesterov momentum, one sequence per update, stopping early on
the validation metric. :class:`StudySpace` holds those ranges, and ``settings`` holds every other
config field a trial uses (``ExperimentConfig`` overrides such as ``train.epochs=150``). Both can
be replaced from a JSON or TOML file::

    {"space": {"lr": {"low": 1e-5, "high": 1e-2}},
     "settings": {"train.epochs": 50, "train.patience": 5}}

A study stored under a name remembers :meth:`StudySpace.fingerprint`; running the same name with
a different fingerprint is refused (trials drawn from two distributions cannot be compared).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from rnnlab.train.config import ConfigError, ExperimentConfig, apply_overrides

# The nine cells of Greff et al. 2016: the vanilla (peephole) LSTM first, then its variants.
VANILLA = "peephole"
GREFF_CELLS = ("peephole", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")
# The paper's name for each cell, for tables and plots.
PAPER_NAMES = {
    "peephole": "V (vanilla)",
    "nig": "NIG",
    "nfg": "NFG",
    "nog": "NOG",
    "niaf": "NIAF",
    "noaf": "NOAF",
    "np": "NP",
    "cifg": "CIFG",
    "fgr": "FGR",
}
# What each cell changes in the vanilla LSTM (Greff et al. 2016, Section 3), for captions.
VARIANT_MEANINGS = {
    "peephole": "the vanilla LSTM, with peepholes",
    "nig": "no input gate",
    "nfg": "no forget gate",
    "nog": "no output gate",
    "niaf": "no input activation function",
    "noaf": "no output activation function",
    "np": "no peepholes",
    "cifg": "coupled input and forget gate",
    "fgr": "full gate recurrence",
}


@dataclass(frozen=True)
class Range:
    """One sampled hyperparameter: ``low``..``high``, log-uniform when ``log``.

    ``integer`` draws an int (``trial.suggest_int``); ``complement`` samples ``m`` and uses
    ``1 - m`` (Greff's momentum).
    """

    low: float
    high: float
    log: bool = False
    integer: bool = False
    complement: bool = False

    def check(self, name: str) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ConfigError(
                f"space.{name}: low must be below high (finite numbers), got "
                f"[{self.low}, {self.high}]"
            )
        if self.log and self.low <= 0:
            raise ConfigError(f"space.{name}: a log-uniform range needs low > 0, got {self.low}")
        if self.integer and (self.low != int(self.low) or self.high != int(self.high)):
            raise ConfigError(f"space.{name}: an integer range needs integer bounds")


# Each sampled hyperparameter, the Optuna parameter name it is stored under, and the config
# field it sets. The momentum is stored as m = 1 - momentum, the quantity that is log-uniform.
PARAMETERS = {
    "hidden_size": ("hidden_size", "model.hidden_size"),
    "lr": ("lr", "train.lr"),
    "momentum": ("one_minus_momentum", "train.momentum"),
    "input_noise": ("input_noise", "train.input_noise"),
}

PAPER_SPACE = {
    "hidden_size": Range(20, 200, log=True, integer=True),
    "lr": Range(1e-6, 1e-2, log=True),
    "momentum": Range(0.01, 1.0, log=True, complement=True),
    "input_noise": Range(0.0, 1.0),
}

# Fixed settings of every trial (ExperimentConfig overrides). Greff: SGD with Nesterov momentum,
# one sequence per update, early stopping on validation. The epoch limit and patience are ours
# (the paper gives neither); the trainer's gradient-norm clipping at 5 stays on as a guard
# against divergence (the paper does not describe clipping).
PAPER_SETTINGS = {
    "model.num_layers": 1,
    "train.optimizer": "sgd",
    "train.nesterov": True,
    "task.batch_size": 1,
    "task.eval_batch_size": 64,
    "train.epochs": 150,
    "train.patience": 10,
    "train.schedule": "constant",
}


# Settings that would budget a trial in wall-clock time; a study refuses them.
SECONDS = ("train.budget_seconds",)


@dataclass
class StudySpace:
    """Sampled ranges (``space``) plus fixed trial settings (``settings``: config overrides)."""

    space: dict[str, Range] = field(default_factory=lambda: dict(PAPER_SPACE))
    settings: dict[str, object] = field(default_factory=lambda: dict(PAPER_SETTINGS))

    def check(self) -> None:
        for name, rng in self.space.items():
            if name not in PARAMETERS:
                raise ConfigError(
                    f"unknown hyperparameter space.{name}; the study samples "
                    f"{', '.join(PARAMETERS)}"
                )
            rng.check(name)
        missing = [name for name in PARAMETERS if name not in self.space]
        if missing:
            raise ConfigError(f"the space lacks {', '.join(missing)}; give a range for each")
        if self.space["momentum"].complement and self.space["momentum"].low <= 0:
            raise ConfigError("space.momentum: 1 - momentum must stay above 0 (momentum < 1)")
        for key in self.settings:
            if key in (target for _, target in PARAMETERS.values()):
                raise ConfigError(
                    f"settings.{key} is sampled from the space; set its range under space "
                    "instead"
                )
            if key == "run.device":
                raise ConfigError(
                    "settings.run.device: where trials train is not a study setting (a study "
                    "can be topped up on another machine); give `rnnlab study run --device "
                    "cuda` (StudyRun.device), which also places one worker per GPU"
                )
            if key in SECONDS and self.settings[key] is not None:
                raise ConfigError(
                    f"settings.{key}: a study's trials are budgeted in epochs or steps, not "
                    "seconds (a time budget trains less on a busy machine, so results would "
                    "depend on the load); set train.epochs and train.patience, or "
                    "train.max_steps"
                )

    def lowest(self) -> dict[str, float]:
        """The low end of every range, as a sample (to check a trial config before running)."""
        return {n: (int(r.low) if r.integer else r.low) for n, r in self.space.items()}

    def fingerprint(self) -> dict:
        """A JSON-able description of everything that decides a trial's distribution."""
        return {
            "space": {
                PARAMETERS[name][0]: {
                    "low": rng.low, "high": rng.high, "log": rng.log, "integer": rng.integer,
                    "complement": rng.complement, "sets": PARAMETERS[name][1],
                }
                for name, rng in sorted(self.space.items())
            },
            "settings": {key: self.settings[key] for key in sorted(self.settings)},
        }

    def suggest(self, trial) -> dict[str, float]:
        """Draw every hyperparameter for an Optuna ``trial``; returns config values by name
        (``momentum`` already turned into ``1 - m``)."""
        values = {}
        for name, rng in self.space.items():
            optuna_name = PARAMETERS[name][0]
            if rng.integer:
                value = trial.suggest_int(optuna_name, int(rng.low), int(rng.high), log=rng.log)
            else:
                value = trial.suggest_float(optuna_name, rng.low, rng.high, log=rng.log)
            values[name] = 1.0 - value if rng.complement else value
        return values

    def trial_config(
        self, cell: str, task: str, sample: dict[str, float], seed: int = 0
    ) -> ExperimentConfig:
        """The ExperimentConfig of one trial: settings, then the sampled values, then the cell,
        task and seed. Raises ConfigError for a bad setting."""
        config = ExperimentConfig()
        overrides = [f"{key}={_text(value)}" for key, value in self.settings.items()]
        for name, value in sample.items():
            if self.space[name].integer:
                value = int(round(value))
            overrides.append(f"{PARAMETERS[name][1]}={_text(value)}")
        overrides += [f"model.cell={cell}", f"task.name={task}", f"train.seed={seed}"]
        # Nesterov needs momentum > 0; a drawn momentum of exactly 0 (m = 1) trains plain SGD.
        if sample.get("momentum", 1.0) <= 0.0:
            overrides.append("train.nesterov=false")
        return apply_overrides(config, overrides)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def load_space(
    path: str | Path | None, budget: dict | None = None, settings: dict | None = None
) -> StudySpace:
    """The paper's space with ``settings`` (default: PAPER_SETTINGS; a preset's), updated from
    a JSON/TOML file (``space`` and ``settings`` tables), then from ``budget`` (settings given
    on the command line). Raises ConfigError."""
    base = PAPER_SETTINGS if settings is None else settings
    study = StudySpace(space=dict(PAPER_SPACE), settings=dict(base))
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"study config {path} does not exist; give a JSON or TOML file")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except ValueError as error:
            raise ConfigError(f"study config {path} is not valid JSON/TOML: {error}") from None
        if not isinstance(data, dict) or set(data) - {"space", "settings"}:
            raise ConfigError(
                f"study config {path} must hold only 'space' and 'settings' tables, got "
                f"{sorted(data) if isinstance(data, dict) else type(data).__name__}"
            )
        for name, spec in data.get("space", {}).items():
            if name not in PARAMETERS:
                raise ConfigError(
                    f"{path}: unknown hyperparameter space.{name}; the study samples "
                    f"{', '.join(PARAMETERS)}"
                )
            if not isinstance(spec, dict) or set(spec) - {"low", "high", "log"}:
                raise ConfigError(
                    f"{path}: space.{name} must be a table with low, high and optionally log"
                )
            base = study.space[name]
            study.space[name] = Range(
                float(spec.get("low", base.low)),
                float(spec.get("high", base.high)),
                log=bool(spec.get("log", base.log)),
                integer=base.integer,
                complement=base.complement,
            )
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: settings must be a table of section.field = value")
        study.settings.update(settings)
    if budget:
        study.settings.update({k: v for k, v in budget.items() if v is not None})
    study.settings = copy.deepcopy(study.settings)
    study.check()
    return study
