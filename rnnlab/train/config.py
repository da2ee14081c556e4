"""Experiment configuration: dataclasses with documented defaults, set from the command line.

An :class:`ExperimentConfig` is four sections, each a dataclass whose every field carries a
comment on its default::

    task   which task and how its batches are cut       --task.name=text --task.seq_len=100
    model  input -> recurrent body -> head              --model.cell=cifg --model.hidden_size=256
    train  optimiser, schedule, budget, regularisation  --train.lr=0.1 --train.clip_norm=5
    run    where and how the run is recorded            --run.dir=runs/x --run.quiet

Overrides are ``section.field=value`` strings (see :func:`apply_overrides`); every value is
converted to the field's type and checked, and a bad one is rejected with what was expected.
Options of the chosen task that are not :class:`TaskConfig` fields (``--task.max_digits=4``)
are passed to ``rnnlab.tasks.make``. Configs round-trip through plain JSON dicts
(:func:`to_dict` / :func:`from_dict`), which is how run directories store them.

The model section is typed by its body (``rnnlab.train.bodies``): ``model.body``, wherever it
stands among the overrides, selects the settings class; list settings are tuples, written
``--model.dilations=1,2,4``. Older configs (every body's settings, lists as text) still load.

A command composes its config in layers (:func:`compose`): its defaults, then the chosen task's
training defaults (``rnnlab.tasks.training_defaults``), then what the user gave. A stopping
limit the user gives wins over the limits that came from defaults (:class:`Limits`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from rnnlab.train import bodies
from rnnlab.train.bodies import ConfigError, ModelConfig
from rnnlab.train.device import DEVICES

OPTIMIZERS = ("sgd", "adam", "rmsprop")
SCHEDULES = ("constant", "zaremba", "cosine")
BPTT_MODES = ("truncated", "full")
LOSS_REDUCTIONS = ("token", "sequence")  # see rnnlab/train/loss.py
TRAIN_METRICS = ("window", "last")
SELECTIONS = ("loss", "metric")

# Short spellings accepted by the command line, mapped to the full field they set.
SHORTCUTS = {
    "cell": "model.cell",
    "body": "model.body",
    "task": "task.name",
    "seed": "train.seed",
}


@dataclass
class TaskConfig:
    """The task and how its batches are cut."""

    name: str = "text"  # a name from rnnlab.tasks.names(); `rnnlab list` describes each
    batch_size: int = 32  # sequences per training batch (split across processes when distributed)
    seq_len: int | None = None  # truncated-BPTT length for stream tasks; None: the task's default
    eval_batch_size: int | None = None  # sequences per valid/test batch; None: batch_size
    eval_max_batches: int | None = None  # cap on valid batches per evaluation; None: whole split
    test_batch_size: int | None = None  # batch of the final test evaluation; None: as valid
    #                                     (1: a stream task's test file as one stream, Zaremba 2014)
    options: dict = field(default_factory=dict)  # extra keyword options for rnnlab.tasks.make


@dataclass
class TrainConfig:
    """Optimisation, stopping rules and regularisation."""

    seed: int = 0  # seeds parameters, dropout, input noise and the order of training batches
    optimizer: str = "adam"  # one of sgd, adam, rmsprop
    lr: float = 2e-3  # base learning rate
    momentum: float = 0.0  # SGD momentum / RMSprop momentum
    nesterov: bool = False  # Nesterov momentum (SGD; needs momentum > 0)
    weight_decay: float = 0.0  # L2 penalty added by the optimiser
    schedule: str = "constant"  # constant | zaremba (lr / lr_decay per epoch after decay_after)
    #                             | cosine (to 0 over max_steps or epochs)
    lr_decay: float = 2.0  # zaremba: the factor the lr is divided by at each decayed epoch
    decay_after: int = 4  # zaremba: epochs trained at the base lr before decay starts
    clip_norm: float | None = 5.0  # rescale gradients whose global L2 norm exceeds this; None: off
    clip_value: float | None = None  # clamp each gradient element to [-v, v]; None: off
    bptt: str = "truncated"  # truncated: carry state (detached) across continuing batches;
    #                          full: every batch starts from a zero state
    epochs: int | None = 10  # stop after this many passes over train; None: no epoch limit
    max_steps: int | None = None  # stop after this many optimiser steps; None: no step limit
    budget_seconds: float | None = None  # stop after this much training time; None: no limit
    steps_per_epoch: int | None = None  # None: the task's batches_per_epoch (100 for generated)
    eval_every: int | None = None  # evaluate valid every N steps; None: at the end of each epoch
    patience: int | None = None  # early stopping: evaluations without improvement; None: off
    input_noise: float = 0.0  # std of Gaussian noise added to inputs in training (Greff 2016)
    checkpoint_every: int | None = 100  # also checkpoint every N steps; None: at evaluations only
    checkpoints: bool = True  # False: neither checkpoint.pt nor best.pt (the run can be neither
    #                          resumed nor loaded; for runs re-run whole when lost: study trials)
    log_every: int = 10  # steps between training-metric records in metrics.jsonl
    loss_reduction: str = "token"  # token: NLL averaged over counted steps; sequence: summed
    #                                over time, averaged over the batch (Zaremba 2014; loss.py)
    select: str = "loss"  # model selection and early stopping on the validation: loss (moves
    #                       while a metric sits at its floor) | metric (ties broken by loss); the
    #                       final parameters are always evaluated beside the selected ones
    train_metric: str = "window"  # window: the logged train metric covers every step of a
    #                               window; last: only its last batch (no second softmax per step)


@dataclass
class RunConfig:
    """Where and how the run is recorded."""

    dir: str | None = None  # run directory; None: runs/<timestamp>-<task>-<cell>
    root: str = "runs"  # parent of generated run directories
    quiet: bool = False  # no progress bar or progress lines (errors are still printed)
    tensorboard: bool = False  # also log to TensorBoard when tensorboard is importable
    plots: bool = True  # write learning-curve PNGs into the run directory
    threads: int | None = None  # torch intra-op threads; None: torch's default
    device: str = "cpu"  # where the model trains and evaluates: cpu | cuda (cuda:LOCAL_RANK
    #                      under torchrun) | auto (cuda when torch sees a GPU, else cpu)


@dataclass
class ExperimentConfig:
    """One training run: task, model, training and recording settings."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


def sections() -> dict[str, type]:
    """Section name -> dataclass type, in order (task, model, train, run)."""
    hints = typing.get_type_hints(ExperimentConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(ExperimentConfig)}


def field_types(section_type: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config section. ``ModelConfig`` itself, the
    model section, has every body's settings (what ``--model.<setting>`` may name); a body's
    settings class has its own."""
    if section_type is ModelConfig:
        return {name: annotation for name, (annotation, _) in bodies.settings_fields().items()}
    hints = typing.get_type_hints(section_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_type)}


def field_comments(section_type: type) -> dict[str, str]:
    """Field name -> the comment written beside its default (the field's documentation); a
    body's setting says which bodies have it (``grid, grid_image: ...``)."""
    if section_type is not ModelConfig:
        return dict(_source_comments(section_type))
    comments: dict[str, str] = {}
    for body in bodies.BODIES.values():
        for source_type in body.settings.__mro__[-2::-1]:  # ModelConfig first, object left out
            for name, text in _source_comments(source_type).items():
                comments.setdefault(name, text)
    return {name: text if name in bodies.SHARED else f"{', '.join(bodies.bodies_with(name))}: "
            f"{text}" for name, text in comments.items()}


@functools.cache
def _source_comments(section_type: type) -> dict[str, str]:
    import inspect

    source = inspect.getsource(section_type)
    comments: dict[str, str] = {}
    last = None
    for line in source.splitlines():
        stripped = line.strip()
        if ":" in stripped and "#" in stripped and not stripped.startswith("#"):
            name = stripped.split(":", 1)[0].strip()
            if name.isidentifier():
                comments[name] = stripped.split("#", 1)[1].strip()
                last = name
                continue
        if stripped.startswith("#") and last is not None:
            comments[last] += " " + stripped.lstrip("#").strip()
        else:
            last = None
    return comments


def convert(text: str, annotation: Any, where: str) -> Any:
    """Convert a command-line string to a value of ``annotation`` (int, float, bool, str, X | None,
    bool | str (``true``/``false`` or the text), or a tuple of one of them written
    comma-separated: ``1,2,4``; ``none``: the empty tuple).

    Raises ConfigError naming ``where`` and the expected type when the text does not fit.
    """
    if typing.get_origin(annotation) is tuple:  # also [1, 2, 4] and ('a', 'b'), as printed
        item, text = typing.get_args(annotation)[0], text.strip().strip("[]()")
        parts = () if text.lower() in ("", "none", "null") else text.split(",")
        try:
            return tuple(convert(part.strip().strip("'\""), item, where) for part in parts)
        except ConfigError:
            raise ConfigError(
                f"{where} must be comma-separated {item.__name__} values (or none), got {text!r}"
            ) from None
    args = typing.get_args(annotation)
    mapping = _mapping_type(annotation)
    if mapping is not None:  # X | dict[str, X]: a value, or name:value pairs
        return _value_or_pairs(text, typing.get_args(mapping)[1], where)
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and (
        type(None) in args)
    if optional:
        if text.strip().lower() in ("none", "null"):
            return None
        (annotation,) = [a for a in args if a is not type(None)]
    if annotation is bool or is_switch_or_mode(annotation):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        if annotation is not bool:
            return text.strip()
        raise ConfigError(f"{where} must be true or false, got {text!r}")
    if annotation in (int, float):
        kind = ("an integer" if annotation is int else "a number") + " or none" * optional
        try:
            value = annotation(text)
        except ValueError:
            raise ConfigError(f"{where} must be {kind}, got {text!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {text!r}")
        return value
    if annotation is str:
        return text
    if annotation is dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where} must be a JSON object such as '{{\"key\": 1}}', got {text!r}"
            )
        return value
    raise ConfigError(f"{where}: cannot set a field of type {annotation} from the command line")


def is_switch_or_mode(annotation: Any) -> bool:
    """``bool | str``: a setting that is on/off or a named mode (``model.layer_norm``: true,
    false, gate or joint); written like a bool on the command line, or as the mode's name."""
    return set(typing.get_args(annotation)) == {bool, str}


def _mapping_type(annotation: Any) -> Any:
    """The ``dict[str, X]`` member of a union such as ``float | dict[str, float]``, else None."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    return next((a for a in typing.get_args(annotation) if typing.get_origin(a) is dict), None)


def _value_or_pairs(text: str, value_type: type, where: str) -> Any:
    """``0.1`` -> 0.1; ``h:0.05,c:0.5`` (or as printed, ``{'h': 0.05, 'c': 0.5}``) ->
    ``{"h": 0.05, "c": 0.5}``: a setting that is one value for everything or one per name."""
    expected = (f"{where} must be a {value_type.__name__} or name:{value_type.__name__} pairs "
                f"(e.g. h:0.05,c:0.5), got {text!r}")
    body = text.strip()
    if ":" not in body:
        try:
            return convert(body, value_type, where)
        except ConfigError:
            raise ConfigError(expected) from None
    pairs: dict[str, Any] = {}
    for part in body.removeprefix("{").removesuffix("}").split(","):
        name, _, value = part.partition(":")
        name = name.strip().strip("'\"")
        if not name.isidentifier() or name in pairs or not value.strip():
            raise ConfigError(expected)
        try:
            pairs[name] = convert(value.strip(), value_type, where)
        except ConfigError:
            raise ConfigError(expected) from None
    return pairs


def parse_option_value(text: str) -> Any:
    """A task option from the command line: JSON (numbers, true/false, null, lists) or a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "none":
            return None
        return text


def apply_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Set fields from ``key=value`` strings, e.g. ``model.hidden_size=256`` or ``cell=cifg``.

    ``task.<option>=value`` for a name that is not a TaskConfig field becomes a task option.
    Returns ``config`` (changed in place) after :func:`validate`.
    """
    pairs = []
    for item in overrides:
        key, eq, text = item.partition("=")
        if not eq:
            raise ConfigError(f"override must look like section.field=value, got {item!r}")
        pairs.append((key.strip().removeprefix("--"), text))
    for key, text in _body_first(pairs):
        set_field(config, key, text)
    validate(config)
    return config


def _body_first(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(key, text)`` settings with ``model.body`` first: the body chooses which settings the
    model section has, so that no order of the others depends on where the body was given."""
    return sorted(pairs, key=lambda pair: SHORTCUTS.get(pair[0], pair[0]) != "model.body")


def set_field(config: ExperimentConfig, key: str, text: str) -> None:
    """Set one field from its command-line text (``key`` like ``train.lr`` or a shortcut)."""
    key = SHORTCUTS.get(key, key)
    section_name, dot, name = key.partition(".")
    known = sections()
    if not dot or section_name not in known:
        raise ConfigError(
            f"unknown setting {key!r}: expected section.field with section one of "
            f"{', '.join(known)} (or a shortcut: {', '.join(SHORTCUTS)}); "
            "`rnnlab train --help` lists every field"
        )
    section = getattr(config, section_name)
    types_ = field_types(known[section_name])
    if name.startswith("options."):
        name = name.removeprefix("options.")
        if section_name == "task":
            section.options[name] = parse_option_value(text)
            return
    if name not in types_:
        if section_name == "task" and name.isidentifier():
            section.options[name] = parse_option_value(text)
            return
        raise ConfigError(
            f"unknown setting {key!r}: {section_name} has fields {', '.join(types_)}"
        )
    setattr(section, name, convert(text, types_[name], key))


def _choice(where: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}; got {value!r}")


def _at_least(where: str, value, low, *, allow_none: bool = False, strict: bool = False) -> None:
    if value is None:
        if allow_none:
            return
        raise ConfigError(f"{where} must be set, got None")
    if (value <= low) if strict else (value < low):
        relation = ">" if strict else ">="
        raise ConfigError(f"{where} must be {relation} {low}, got {value}")


def validate(config: ExperimentConfig) -> None:
    """Check every value: types, ranges, and names against the cell and task registries."""
    import rnnlab.cells
    import rnnlab.tasks

    for section_name, section_type in sections().items():
        section = getattr(config, section_name)
        if not isinstance(section, section_type):
            raise ConfigError(f"config.{section_name} must be a {section_type.__name__}")
        for name, annotation in field_types(type(section)).items():
            _check_type(f"{section_name}.{name}", getattr(section, name), annotation)

    t, m, tr = config.task, config.model, config.train
    _choice("task.name", t.name, sorted(rnnlab.tasks.names()))
    accepted = [k for k in rnnlab.tasks.factory_options(t.name) if k not in ("args", "kwargs")]
    unknown = [k for k in t.options if k not in accepted]
    if unknown:
        raise ConfigError(
            f"task {t.name!r} has no option {', '.join(map(repr, unknown))}; its options: "
            f"{', '.join(accepted) or '(none)'}; task settings: "
            f"{', '.join(field_types(TaskConfig))}"
        )
    _at_least("task.batch_size", t.batch_size, 1)
    _at_least("task.seq_len", t.seq_len, 1, allow_none=True)
    _at_least("task.eval_batch_size", t.eval_batch_size, 1, allow_none=True)
    _at_least("task.eval_max_batches", t.eval_max_batches, 1, allow_none=True)
    _at_least("task.test_batch_size", t.test_batch_size, 1, allow_none=True)

    _at_least("model.hidden_size", m.hidden_size, 1)
    _at_least("model.num_layers", m.num_layers, 1)
    _at_least("model.embedding_size", m.embedding_size, 1, allow_none=True)
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
    bodies.check_settings(m)
    if m.init_all is not None:
        from rnnlab.train.init import parse

        try:
            parse(m.init_all)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    _choice("train.optimizer", tr.optimizer, OPTIMIZERS)
    _choice("train.schedule", tr.schedule, SCHEDULES)
    _choice("train.bptt", tr.bptt, BPTT_MODES)
    _choice("train.loss_reduction", tr.loss_reduction, LOSS_REDUCTIONS)
    _choice("train.train_metric", tr.train_metric, TRAIN_METRICS)
    _choice("train.select", tr.select, SELECTIONS)
    _at_least("train.lr", tr.lr, 0.0, strict=True)
    if not 0.0 <= tr.momentum < 1.0:
        raise ConfigError(f"train.momentum must be in [0, 1), got {tr.momentum}")
    if tr.nesterov and (tr.optimizer != "sgd" or tr.momentum <= 0):
        raise ConfigError("train.nesterov needs train.optimizer=sgd and train.momentum > 0")
    _at_least("train.weight_decay", tr.weight_decay, 0.0)
    _at_least("train.lr_decay", tr.lr_decay, 1.0)
    _at_least("train.decay_after", tr.decay_after, 0)
    _at_least("train.clip_norm", tr.clip_norm, 0.0, allow_none=True, strict=True)
    _at_least("train.clip_value", tr.clip_value, 0.0, allow_none=True, strict=True)
    _at_least("train.epochs", tr.epochs, 1, allow_none=True)
    _at_least("train.max_steps", tr.max_steps, 1, allow_none=True)
    _at_least("train.budget_seconds", tr.budget_seconds, 0.0, allow_none=True, strict=True)
    _at_least("train.steps_per_epoch", tr.steps_per_epoch, 1, allow_none=True)
    _at_least("train.eval_every", tr.eval_every, 1, allow_none=True)
    _at_least("train.patience", tr.patience, 1, allow_none=True)
    _at_least("train.input_noise", tr.input_noise, 0.0)
    _at_least("train.checkpoint_every", tr.checkpoint_every, 1, allow_none=True)
    _at_least("train.log_every", tr.log_every, 1)
    if tr.epochs is None and tr.max_steps is None and tr.budget_seconds is None:
        raise ConfigError(
            "training needs a limit: set train.epochs, train.max_steps or train.budget_seconds"
        )
    if tr.schedule == "cosine" and tr.max_steps is None and tr.epochs is None:
        raise ConfigError("train.schedule=cosine needs train.max_steps or train.epochs")
    _at_least("run.threads", config.run.threads, 1, allow_none=True)
    _choice("run.device", config.run.device, DEVICES)  # a GPU is looked for when training starts


def _check_type(where: str, value: Any, annotation: Any) -> None:
    if typing.get_origin(annotation) is tuple:
        if not isinstance(value, tuple):
            raise ConfigError(f"{where} must be {_type_name(annotation)}, got {value!r}")
        for item in value:
            _check_type(where, item, typing.get_args(annotation)[0])
        return
    args = typing.get_args(annotation)
    mapping = _mapping_type(annotation)
    if mapping is not None and isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where} names must be strings, got {key!r}")
            _check_type(f"{where}[{key!r}]", item, typing.get_args(mapping)[1])
        return
    allowed = tuple(a for a in args if a is not type(None) and a is not mapping) if args else (
        annotation,)
    if value is None:
        if type(None) in args:
            return
        raise ConfigError(f"{where} must not be None")
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return
    if bool not in allowed and isinstance(value, bool):
        raise ConfigError(f"{where} must be {_type_name(annotation)}, got {value!r}")
    if not isinstance(value, allowed):
        raise ConfigError(f"{where} must be {_type_name(annotation)}, got {value!r}")


def _type_name(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple:
        return f"{args[0].__name__},..."
    if args:
        return " or ".join(
            "None" if a is type(None)
            else f"name:{typing.get_args(a)[1].__name__},..." if typing.get_origin(a) is dict
            else a.__name__ for a in args)
    return annotation.__name__


def to_dict(config: ExperimentConfig) -> dict:
    """A plain, JSON-serialisable dict of the whole config."""
    return dataclasses.asdict(config)


# Fields older run directories hold that no longer exist, and why they can be dropped.
RETIRED = {("train", "evaluate_last"): "the final parameters are now always evaluated"}


def from_dict(data: dict) -> ExperimentConfig:
    """Rebuild a config from :func:`to_dict`'s output; unknown keys are rejected, checked."""
    config = ExperimentConfig()
    for section_name, values in data.items():
        if section_name not in sections():
            raise ConfigError(f"unknown config section {section_name!r}")
        section = getattr(config, section_name)
        known = field_types(sections()[section_name])
        # the body first: it chooses the model section's class
        for name, value in sorted(values.items(), key=lambda item: item[0] != "body"):
            if (section_name, name) in RETIRED:
                continue
            if name not in known:
                raise ConfigError(f"unknown config field {section_name}.{name}")
            if known[name] is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            setattr(section, name, value)
        if section_name == "model":  # older configs list every body's settings: those of
            defaults = bodies.settings_fields()  # other bodies, at their default, are dropped
            for name, value in list(vars(section).items()):
                if name not in field_types(type(section)) and value == defaults[name][1]:
                    delattr(section, name)
    validate(config)
    return config


def describe_fields(base: ExperimentConfig | None = None) -> list[tuple[str, str, Any, str]]:
    """(key, type, default, comment) for every field, for --help and the docs; the defaults are
    ``base``'s values when given (a command's own defaults), else the dataclasses'."""
    rows = []
    other_bodies = {name: default for name, (_, default) in bodies.settings_fields().items()}
    for section_name, section_type in sections().items():
        comments = field_comments(section_type)
        default = getattr(base, section_name) if base is not None else section_type()
        for name, annotation in field_types(section_type).items():
            rows.append(
                (
                    f"{section_name}.{name}",
                    _type_name(annotation),
                    getattr(default, name, other_bodies.get(name)),
                    comments.get(name, ""),
                )
            )
    return rows


# --- composing a command's config -----------------------------------------------------------

# The stopping limits: training stops at the first one reached (None: that limit is off).
LIMITS = ("train.epochs", "train.max_steps", "train.budget_seconds")
STOPPING_RULES = (*LIMITS, "train.patience")  # what a run's first line reports
GIVEN = "given"  # the source of a value the user gave
RUN = "from the run"  # the source of a value a resumed run keeps from its config.json


def get_field(config: ExperimentConfig, key: str) -> Any:
    """The value of ``section.field`` ``key`` in ``config``."""
    section_name, _, name = key.partition(".")
    return getattr(getattr(config, section_name), name)


def _set_value(config: ExperimentConfig, key: str, value: Any) -> None:
    section_name, _, name = key.partition(".")
    setattr(getattr(config, section_name), name, copy.deepcopy(value))


@dataclass
class Limits:
    """Where each stopping rule of a run came from, and the default limits a given one lifted.

    A limit the user gives wins over limits that only came from defaults: giving
    ``train.budget_seconds`` (or ``max_steps``, or ``epochs``) clears the other limits that
    were defaults, so ``--train.budget_seconds=240`` trains 240 s instead of stopping at the
    default 10 epochs. Limits the user gave together, or that a resumed run keeps, all apply.
    """

    sources: dict[str, str]  # stopping rule -> where its value came from ("default", "given", ..)
    lifted: dict[str, Any] = field(default_factory=dict)  # limit -> the default value it cleared

    @classmethod
    def guess(cls, config: ExperimentConfig) -> Limits:
        """For a config built in Python: a value equal to ExperimentConfig()'s is "default"."""
        default = ExperimentConfig()
        return cls({key: "default" if get_field(config, key) == get_field(default, key) else "set"
                    for key in STOPPING_RULES})

    def give(self, config: ExperimentConfig, keys) -> Limits:
        """The limits once the settings ``keys`` (already set in ``config``) are given: when one
        of them is a limit with a value, every limit from a default is cleared in ``config``."""
        keys = {SHORTCUTS.get(key, key) for key in keys}
        sources, lifted = dict(self.sources), dict(self.lifted)
        for key in keys & set(STOPPING_RULES):
            sources[key] = GIVEN
            lifted.pop(key, None)
        if any(key in keys and get_field(config, key) is not None for key in LIMITS):
            for key in LIMITS:
                value = get_field(config, key)
                if value is not None and sources.get(key, "default") not in (GIVEN, RUN):
                    lifted[key] = value
                    _set_value(config, key, None)
        return Limits(sources, lifted)

    def line(self, config: ExperimentConfig) -> str:
        """One line: the rules in force and where each came from, and what was lifted, e.g.
        ``limits: train.budget_seconds=240 (given); lifted by it: train.epochs=10 (default)``."""
        def item(key: str, value: Any) -> str:
            shown = f"{value:g}" if isinstance(value, float) else value
            return f"{key}={shown} ({self.sources.get(key, 'default')})"

        rules = [item(key, get_field(config, key)) for key in STOPPING_RULES
                 if get_field(config, key) is not None]
        text = "limits: " + ", ".join(rules)
        if self.lifted:
            text += "; lifted by the given limit: " + ", ".join(
                item(key, value) for key, value in self.lifted.items()
            )
        return text


def compose(
    base: ExperimentConfig,
    given: list[tuple[str, str]],
    *,
    source: str = "default",
    defaults: bool = True,
) -> tuple[ExperimentConfig, Limits]:
    """The config a command runs, with where its stopping rules came from.

    ``base`` (its values' source named by ``source``), then, when ``defaults``, the chosen
    task's training defaults (``rnnlab.tasks.training_defaults``) for every field not given,
    then the ``given`` ``(key, text)`` settings (``section.field``, a shortcut or a task option);
    a given limit then lifts the limits that came from defaults (:class:`Limits`). A resumed
    run passes its own config with ``source=RUN, defaults=False``: no task defaults, and its
    limits stay beside the given ones. Checked with :func:`validate`; raises ConfigError.
    """
    import rnnlab.tasks

    config = copy.deepcopy(base)
    given = [(SHORTCUTS.get(key, key), text) for key, text in given]
    keys = {key for key, _ in given}
    sources = {key: source for key in STOPPING_RULES}
    if defaults:
        names = [text for key, text in given if key == "task.name"]
        task = names[-1] if names else config.task.name
        for key, value in rnnlab.tasks.training_defaults(task).items():
            if key not in keys:
                _set_value(config, key, value)
                if key in sources:
                    sources[key] = f"default for {task}"
    for key, text in _body_first(given):
        set_field(config, key, text)
    limits = Limits(sources).give(config, keys)
    validate(config)
    return config, limits
