"""Model bodies: every task × body is causal where the task needs it (by gradients) or refused;
every setting takes effect on its body, and a setting of another body is refused naming it."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import pytest
import torch

import rnnlab.tasks as tasks
from rnnlab.tasks.base import Classes, Tokens
from rnnlab.train import bodies
from rnnlab.train.bodies import BODIES, BodyError
from rnnlab.train.config import ConfigError, ExperimentConfig, ModelConfig, apply_overrides
from rnnlab.train.model import SequenceModel

REPO = Path(__file__).resolve().parents[2]
DATA = os.environ.get("RNNLAB_DATA") or str(REPO.parent / "shared" / "data")
CHEAP = {"text": {"chars": 20000}, "parity": {"bits": 12}}
SLOW_TO_LOAD = {"fsdd", "enwik8", "text8", "digits_ctc"}  # seconds to build: slow suite

# Body variants: (name, settings, reads the future?)
VARIANTS = {
    "stack": ({}, False),
    "stack_bidirectional": ({"bidirectional": True}, True),
    "stack_skip_gru": ({"cell": "gru", "skip": True, "num_layers": 2}, False),
    "grid": ({"num_layers": 2}, False),
    "grid_priority_time": ({"num_layers": 2, "priority": "time"}, False),
    "grid_deep": ({"body": "grid_deep", "num_layers": 2}, False),
    "grid_image": ({"body": "grid_image", "patch": 2}, True),
    "grid_spectrogram_top": (
        {"body": "grid_spectrogram", "band_size": 1, "corners": "top_left,top_right"}, False
    ),
    "grid_spectrogram_bottom": ({"body": "grid_spectrogram", "band_size": 1,
                                 "corners": "bottom_left"}, True),
    "stack_dilated": ({"num_layers": 2, "dilations": "1,2"}, False),
    "highway": ({"body": "highway", "num_layers": 2}, False),
    "freq_time": ({"body": "freq_time", "band_size": 1}, False),
    "freq_time_bidirectional": ({"body": "freq_time", "band_size": 1, "bidirectional": True},
                                True),
    "seq2seq": ({"body": "seq2seq"}, False),
    "reencoder": ({"body": "reencoder"}, False),
}
TOKEN_BODIES = ("seq2seq", "reencoder")  # read source=target ids themselves


def model_config(variant: str) -> ModelConfig:
    settings, _ = VARIANTS[variant]
    body = "stack" if variant.startswith("stack") else variant.split("_priority")[0]
    body = settings.get("body", body)
    return ModelConfig(**{"hidden_size": 4, **settings, "body": body})


@functools.cache
def parallel_files() -> dict:
    """A small aligned corpus for the parallel task (it has no data of its own)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="rnnlab-parallel-"))
    lines = [f"w{i} x{i % 7}" for i in range(80)]
    (folder / "a.txt").write_text("\n".join(lines), encoding="utf-8")
    (folder / "b.txt").write_text("\n".join(line.upper() for line in lines), encoding="utf-8")
    return {"path": str(folder / "a.txt"), "target_path": str(folder / "b.txt")}


@functools.cache
def built_task(name: str):
    options = dict(CHEAP.get(name, {}))
    if name == "parallel":
        options.update(parallel_files())
    if "download" in tasks.factory_options(name):
        options["download"] = False
    saved = os.environ.get("RNNLAB_DATA")
    os.environ["RNNLAB_DATA"] = saved or DATA  # only while the task reads its data
    try:
        return tasks.make(name, **options)
    except FileNotFoundError:
        return None
    finally:
        if saved is None:
            del os.environ["RNNLAB_DATA"]


def task_params() -> list:
    return [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW_TO_LOAD else [], id=name)
            for name in tasks.names()]


def random_inputs(space, steps: int, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if isinstance(space, Tokens):
        return torch.randint(0, space.size, (steps, batch), generator=generator)
    return torch.rand(steps, batch, space.size, generator=generator)


def expected_refusal(task, variant: str) -> bool:
    """Independently of the registry: which combinations cannot be right."""
    settings, future = VARIANTS[variant]
    per_sequence = variant == "grid_image"
    raw = variant.startswith(("grid_image", "grid_spectrogram", "freq_time"))
    return (
        (task.causal and future)
        or (per_sequence and not isinstance(task.output, Classes))
        or (raw and isinstance(task.input, Tokens))
        or (variant in TOKEN_BODIES and not getattr(task, "pairs", False))
        # a classifier reads the last frame, where a scan backwards in time has seen one frame
        or (variant == "grid_spectrogram_bottom" and isinstance(task.output, Classes))
    )


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("task_name", task_params())
def test_every_task_and_body_reads_no_future_input_where_the_task_forbids_it(task_name, variant):
    task = built_task(task_name)
    if task is None:
        pytest.skip(f"no data for {task_name}")
    torch.manual_seed(0)
    config = model_config(variant)
    if config.body in ("grid_spectrogram", "freq_time") and not isinstance(task.input, Tokens):
        config.band_size = -(-task.input.size // 2)  # two bands: fast, and still a grid
    pairs = getattr(task, "pairs", False)
    if expected_refusal(task, variant):
        with pytest.raises(BodyError, match=f"body={config.body}"):
            SequenceModel(task.input, task.output, config, causal=task.causal, task_name=task.name,
                          pairs=pairs)
        return
    model = SequenceModel(task.input, task.output, config, causal=task.causal,
                          task_name=task.name, pairs=pairs).double()
    if variant in TOKEN_BODIES:
        check_ids_never_read_ahead(model, task)
        return
    steps, batch = 6, 2
    inputs = random_inputs(task.input, steps, batch)
    leaf = model.embed(inputs).detach().double().requires_grad_()  # (T, B, E): the body's input
    model.embed = lambda *args, **kwargs: leaf
    logits, _ = model(inputs)
    if isinstance(task.output, Classes):
        # One label per sequence, read after the last input, which must reach it.
        (grad,) = torch.autograd.grad(logits.sum(), leaf)
        assert grad[-1].abs().sum() > 0
        return
    for t in range(steps):
        (grad,) = torch.autograd.grad(logits[t].sum(), leaf, retain_graph=True)
        assert grad[t].abs().sum() > 0, "the check cannot see a dependence on the present input"
        if task.causal:
            assert torch.all(grad[t + 1:] == 0), f"output at {t} reads later inputs ({variant})"


def check_ids_never_read_ahead(model, task) -> None:
    """An encoder-decoder reads ids, not vectors: change each token in turn (the separator
    excepted, it defines the layout) and check that no earlier output moves."""
    batch = next(task.batches("valid", 2))
    base, _ = model(batch.inputs, None, batch.lengths)
    for q in range(batch.inputs.shape[0]):
        changed = batch.inputs.clone()
        separator = changed[q] == 1  # id 1 in every translation vocabulary
        other = (changed[q] + 1) % task.input.size
        other = torch.where(other == 1, (other + 1) % task.input.size, other)
        changed[q] = torch.where(separator, changed[q], other)
        out, _ = model(changed, None, batch.lengths)
        torch.testing.assert_close(out[:q], base[:q])


def test_the_bidirectional_language_model_is_refused_from_the_command_line_config():
    from rnnlab.train.trainer import build

    config = apply_overrides(
        ExperimentConfig(), ["task.chars=20000", "model.bidirectional=true", "train.max_steps=1"]
    )
    with pytest.raises(BodyError, match="reads inputs after step t.*would see the answer"):
        build(config)


# --- every setting takes effect on its body, or is refused naming the body -----------------------
# A value other than the default for every setting of every body.
OTHER = {
    "cell": "gru", "bidirectional": True, "skip": True, "forget_bias": 3.0, "init": "orthogonal",
    "transforms": "tanh", "priority": "depth", "tied": True, "schedule": "wavefront",
    "patch": 3, "corners": "top_right", "combine": "concat", "band_size": 2, "band_stride": 1,
    "dilations": "1,2", "activation": "tanh", "transform_bias": 0.5, "frequency_size": 3,
    "attention_size": 5, "input_dropout": 0.5, "recurrent_dropout": 0.5, "output_dropout": 0.5,
    "weight_drop": 0.5, "zoneout": 0.5, "layer_norm": True,
}
ONE_DIMENSION = {"grid": "time", "grid_image": "rows", "grid_spectrogram": "time",
                 "grid_deep": "depth"}
# Spaces each body can serve (per-sequence and raw-input bodies need features and labels; a
# spectrogram grid from a bottom corner needs per-frame outputs).
SPACES = {"grid_image": (tasks.Features(6), Classes(3)),
          "grid_spectrogram": (tasks.Features(12), tasks.Binary(3)),
          "freq_time": (tasks.Features(12), Classes(3))}
# Settings that act only together with another: combine needs several corners, the corner of
# a spectrogram grid matters only with more than one band.
CONTEXT = {("grid_image", "combine"): {"corners": "all"},
           ("grid_spectrogram", "combine"): {"corners": "all"},
           ("grid_spectrogram", "corners"): {"band_size": 4}}


def outputs(body: str, **settings):
    input_space, output_space = SPACES.get(body, (Tokens(7), Tokens(7)))
    torch.manual_seed(0)
    config = ModelConfig(body=body, hidden_size=4, num_layers=2, **settings)
    model = SequenceModel(input_space, output_space, config, causal=False,
                          pairs=body in TOKEN_BODIES)
    torch.manual_seed(1)
    inputs = random_inputs(input_space, 5, 2)
    if body in TOKEN_BODIES:  # source = target: ids other than the separator 1, one at step 2
        inputs = torch.where(inputs == 1, 2, inputs)
        inputs[2] = 1
    logits, _ = model(inputs)
    return model, logits


@pytest.mark.parametrize(
    "body, setting",
    [(b, s) for b in BODIES for s in bodies.body_settings(b)],
)
def test_each_setting_of_a_body_takes_effect(body, setting):
    value = OTHER[setting]
    if setting == "priority":
        value = ONE_DIMENSION[body]
    context = CONTEXT.get((body, setting), {})
    base_model, base = outputs(body, **context)
    model, changed = outputs(body, **context, **{setting: value})
    if setting == "schedule":  # same results by design: the module runs the other schedule
        assert value in str([getattr(m, "schedule", None) for m in model.modules()])
        return
    differs = changed.shape != base.shape or not torch.allclose(changed, base)
    sizes = sum(p.numel() for p in model.parameters()) != sum(
        p.numel() for p in base_model.parameters()
    )
    assert differs or sizes, f"model.{setting}={value!r} changed nothing on body={body}"


@pytest.mark.parametrize(
    "body, setting",
    [(b, s) for b in BODIES for s in bodies.settings_fields()
     if s not in (*bodies.SHARED, *bodies.body_settings(b))],
)
def test_a_setting_the_body_does_not_have_is_refused_naming_the_body(body, setting):
    config = ExperimentConfig()
    with pytest.raises(ConfigError, match=f"model.{setting}=.*body={body}"):
        apply_overrides(config, [f"model.body={body}", f"model.{setting}={OTHER[setting]}"])


@pytest.mark.parametrize("body", [b for b in BODIES if not BODIES[b].layer_dropout])
def test_dropout_between_layers_is_refused_by_a_body_that_cannot_apply_it(body):
    with pytest.raises(ConfigError, match=f"model.dropout=0.5 .*body={body}"):
        apply_overrides(ExperimentConfig(), [f"model.body={body}", "model.dropout=0.5",
                                             "model.num_layers=3"])


def test_a_body_is_one_entry_whose_settings_class_extends_the_shared_model_config():
    shared = {f.name for f in dataclasses.fields(ModelConfig)}
    for name, body in BODIES.items():
        assert issubclass(body.settings, ModelConfig)
        assert shared <= {f.name for f in dataclasses.fields(body.settings)}
        assert body.settings().body == name
        assert type(ModelConfig(body=name)) is body.settings
    assert set(BODIES) >= {"stack", "grid", "grid_deep", "grid_image", "grid_spectrogram"}


def test_no_body_branch_outside_the_registry():
    source = REPO / "rnnlab"
    for path in source.rglob("*.py"):
        if path.name == "bodies.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert 'body == "' not in text and "body == '" not in text, path
