"""``--run.device``: cpu by default, auto takes the CPU on a machine without a GPU, cuda without
one is refused in one line; the trainer moves the model (before the optimiser) and every batch
to the resolved device; checkpoints load onto the CPU and resume; the CUDA RNG state and the
GPU's name are recorded when on CUDA (checked with torch.cuda stood in for)."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import tiny_config

from rnnlab.cli.main import main
from rnnlab.tasks.base import Batch
from rnnlab.train import checkpoint as ckpt
from rnnlab.train import device as devices
from rnnlab.train import distributed as dist
from rnnlab.train import trainer as trainer_module
from rnnlab.train.config import ConfigError, ExperimentConfig, apply_overrides
from rnnlab.train.run import RunDir
from rnnlab.train.trainer import Trainer, build, train

TINY_RUN = ["--task.chars=20000", "--task.seq_len=8", "--task.batch_size=4",
            "--task.eval_max_batches=1", "--model.hidden_size=8", "--train.max_steps=2",
            "--train.epochs=none", "--train.eval_every=2", "--run.quiet", "--run.plots=false"]


def no_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_is_the_default_and_the_choices_are_checked():
    assert ExperimentConfig().run.device == "cpu"
    assert apply_overrides(ExperimentConfig(), ["run.device=auto"]).run.device == "auto"
    with pytest.raises(ConfigError, match="run.device must be one of cpu, cuda, auto; got 'gpu'"):
        apply_overrides(ExperimentConfig(), ["run.device=gpu"])


def test_auto_trains_on_the_cpu_without_a_gpu(tmp_path, monkeypatch):
    no_gpu(monkeypatch)
    assert devices.resolve("auto") == "cpu"
    assert main(["train", *TINY_RUN, "--run.device=auto", f"--run.dir={tmp_path / 'r'}"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["device"] == "cpu" and "gpu" not in summary["machine"]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["run"]["device"] == "auto"


def test_cuda_without_a_gpu_is_refused_in_one_line_at_the_start(tmp_path, monkeypatch, capsys):
    no_gpu(monkeypatch)
    code = main(["train", *TINY_RUN, "--run.device=cuda", f"--run.dir={tmp_path / 'r'}"])
    assert code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "run.device=cuda, but torch sees no CUDA GPU" in lines[0]
    assert "--run.device=cpu" in lines[0] and "--run.device=auto" in lines[0]
    assert not (tmp_path / "r").exists()  # refused before anything was made


def test_the_trainer_moves_the_model_before_the_optimizer_and_every_batch(tmp_path, monkeypatch):
    """Every training and evaluation batch goes through Batch.to with the resolved device, and
    the model is on it before the optimiser is built."""
    no_gpu(monkeypatch)
    order, moved = [], []
    original_to, original_optimizer = Batch.to, trainer_module.make_optimizer

    def batch_to(self, device, non_blocking=False):
        moved.append(torch.device(device))
        return original_to(self, device, non_blocking)

    def make_optimizer(parameters, train_config):
        parameters = list(parameters)
        order.append(("optimizer", {p.device for p in parameters}))
        return original_optimizer(parameters, train_config)

    def counting(method, counts):
        def wrapped(self, *args, **kwargs):
            before = len(moved)
            result = method(self, *args, **kwargs)
            counts.append(len(moved) - before)
            return result
        return wrapped

    per_step, per_evaluation = [], []
    monkeypatch.setattr(Batch, "to", batch_to)
    monkeypatch.setattr(trainer_module, "make_optimizer", make_optimizer)
    monkeypatch.setattr(Trainer, "train_step", counting(Trainer.train_step, per_step))
    monkeypatch.setattr(Trainer, "evaluate", counting(Trainer.evaluate, per_evaluation))
    config = tiny_config("train.max_steps=3", "train.eval_every=3", "task.eval_max_batches=2",
                         "run.device=auto", f"run.dir={tmp_path / 'r'}")
    task, model = build(config)
    module_to = model.to
    model.to = lambda *args, **kwargs: order.append(("model.to", args)) or module_to(*args,
                                                                                     **kwargs)
    trainer = Trainer(config, task, model, RunDir(tmp_path / "r"))
    assert trainer.device == torch.device("cpu") and trainer.world.device == "cpu"
    assert order == [("model.to", (torch.device("cpu"),)), ("optimizer", {torch.device("cpu")})]
    trainer.run.create(config, ["train"])
    summary = trainer.fit()
    assert summary["device"] == "cpu"
    assert set(moved) == {torch.device("cpu")}
    assert per_step == [1, 1, 1]  # each training batch
    # the validation at step 3 (eval_max_batches=2), then the full valid and test splits
    assert per_evaluation[0] == 2 and len(per_evaluation) == 3 and min(per_evaluation) >= 1
    assert all(p.device == torch.device("cpu") for p in trainer.model.parameters())


def test_a_checkpoint_loads_onto_the_cpu_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    """A resumed run reads its checkpoint with map_location (it may have been written on a GPU)
    and may name another device; it ends where an uninterrupted run ends."""
    no_gpu(monkeypatch)
    settings = ["train.max_steps=6", "train.eval_every=3", "train.checkpoint_every=2",
                "model.num_layers=2", "model.dropout=0.2", "model.recurrent_dropout=0.2"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    train(tiny_config(*settings, f"run.dir={whole}"))
    train(tiny_config(*settings, "train.max_steps=4", f"run.dir={part}"))
    places = []
    original_load = torch.load

    def load(*args, **kwargs):
        places.append(kwargs.get("map_location"))
        return original_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    resumed = tiny_config(*settings, "run.device=auto", f"run.dir={part}")
    train(resumed, resume=str(part))
    assert places and set(places) == {"cpu"}
    a, b = ckpt.load(whole / "checkpoint.pt"), ckpt.load(part / "checkpoint.pt")
    assert a["counters"]["step"] == b["counters"]["step"] == 6
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_the_carried_state_is_restored_on_the_models_device_and_dtype():
    template = (torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    leaves = ckpt.flatten_state((torch.ones(2, 3), torch.full((2, 3), 2.0)))
    assert all(leaf.device.type == "cpu" for leaf in leaves)
    h, c = ckpt.unflatten_state(template, leaves)
    assert h.dtype == c.dtype == torch.float64 and float(c[0, 0]) == 2.0


def test_the_cuda_rng_state_is_saved_and_restored_on_cuda(monkeypatch):
    restored = []
    fake = torch.arange(16, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": fake.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device="cuda": restored.append((state, device)))
    state = ckpt.rng_state("cuda:1")
    assert torch.equal(state["cuda"], fake)
    assert "cuda" not in ckpt.rng_state("cpu")
    ckpt.set_rng_state(state, "cuda:1")
    ((saved, where),) = restored
    assert torch.equal(saved, fake) and torch.device(where) == torch.device("cuda:1")
    ckpt.set_rng_state(state, "cpu")  # a GPU run resumed on the CPU: the GPU state is left
    assert len(restored) == 1


def test_the_gpu_name_is_recorded_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU 80GB")
    assert devices.gpu("cuda:0") == {"gpu": "Fake GPU 80GB"}
    assert devices.gpu("cpu") == {}


@pytest.mark.parametrize("kind, backend, device", [("cuda", "nccl", "cuda:1"),
                                                    ("cpu", "gloo", "cpu")])
def test_under_torchrun_each_rank_takes_the_gpu_of_its_local_rank(kind, backend, device,
                                                                  monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist.dist, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setattr(dist.dist, "get_rank", lambda: 3)
    monkeypatch.setattr(dist.dist, "get_world_size", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set", index)))
    world = dist.setup(kind)
    assert world == dist.World(rank=3, size=4, device=device)
    assert calls == ([("set", 1)] if kind == "cuda" else []) + [backend]
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert dist.setup(kind) == dist.World(device="cuda:0" if kind == "cuda" else "cpu")
