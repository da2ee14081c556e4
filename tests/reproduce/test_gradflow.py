"""``rnnlab gradflow``: ‖∂C_T/∂s_t‖ per step, and the gradient norm over training."""

from __future__ import annotations

import csv

import pytest

from rnnlab.cli.main import main
from rnnlab.reproduce.gradflow import fresh_model, gradient_flow, input_gradient, probe_batch
from rnnlab.train.config import ExperimentConfig, apply_overrides
from rnnlab.train.trainer import train

COPY = {"task.name": "copy", "task.options": {"length": 30, "symbols": 8},
        "model.hidden_size": 32}


def _flow(**settings):
    task, model = fresh_model({**COPY, **settings})
    return gradient_flow(model, probe_batch(task, 16))


def test_forget_bias_one_carries_the_gradient_further_back():
    """Gers / Jozefowicz: with b_f = 1 (f ≈ 0.73) the cell path decays far slower than with 0."""
    zero = _flow(**{"model.cell": "lstm", "model.forget_bias": 0.0})
    one = _flow(**{"model.cell": "lstm", "model.forget_bias": 1.0})
    assert set(zero) == {"h", "c"} and len(zero["c"]) == 60  # 30 + "=" + 30, inputs one short
    assert one["c"][0] > 1e3 * zero["c"][0]
    assert one["c"][-1] < 100 * zero["c"][-1]  # near the loss they are alike


def test_vanilla_rnn_gradient_vanishes_back_in_time():
    flow = _flow(**{"model.cell": "rnn"})["h"]
    assert flow[-1] > 1e-4 and flow[0] < 1e-6 * flow[-1]


def test_gradflow_cli_writes_png_and_csv_and_reads_run_dirs(tmp_path, capsys):
    out = tmp_path / "gf"
    assert main(["gradflow", "--set", "task.length=6", "--out", str(out)]) == 0
    rows = list(csv.reader(open(out / "gradflow.csv")))
    assert rows[0][:2] == ["t", "rnn:h"] and len(rows) == 1 + 12  # 6 + "=" + 6 symbols, less one
    assert (out / "gradflow.png").stat().st_size > 1000
    # a trained run directory, with and without clipping: the gradient-norm curves
    dirs = []
    for clip in ("1", "none"):
        config = ExperimentConfig()
        apply_overrides(config, ["task.name=copy", "task.length=4", "task.valid_size=16",
                                 "task.test_size=16", "model.cell=rnn", "model.hidden_size=8",
                                 f"train.clip_norm={clip}", "train.max_steps=6",
                                 "train.log_every=2", f"run.dir={tmp_path / clip}",
                                 "run.quiet=true", "run.plots=false"])
        train(config)
        dirs.append(str(tmp_path / clip))
    assert main(["gradflow", dirs[0], "--out", str(tmp_path / "gf2")]) == 0
    assert main(["gradflow", "--grad-norm", *dirs, "--out", str(tmp_path / "gn")]) == 0
    assert (tmp_path / "gn" / "grad_norm.png").is_file()
    capsys.readouterr()


def test_gradflow_bad_input_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradflow", "nonsense", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "neither a run directory nor" in capsys.readouterr().err


ADDITION = {"task.name": "addition", "task.options": {"digits": 5}, "model.hidden_size": 16,
            "model.num_layers": 2}


@pytest.mark.parametrize("body", [{"model.body": "stack"},
                                  {"model.body": "grid", "model.tied": True}])
def test_input_gradient_is_causal_and_reaches_back_in_stack_and_grid(body):
    """The loss of the first answer digit (step 11 of '12345+67890=') moves every input up to
    and including that step, and none after it — for a grid as for a stack."""
    task, model = fresh_model({**ADDITION, **body})
    batch = probe_batch(task, 8, equal_lengths=False)  # sums of 5 or 6 digits: padded
    norms = input_gradient(model, batch)["x"]
    first = int(batch.mask.any(dim=1).nonzero()[0])
    assert first == 11 and len(norms) == batch.inputs.shape[0]
    assert all(n > 0 for n in norms[: first + 1])
    assert all(n == 0 for n in norms[first + 1 :])


def test_input_gradient_matches_a_direct_perturbation():
    """‖∂C/∂x_0‖ is the gradient of the loss: a step along it changes C by ε‖g‖²."""
    import torch
    import torch.nn.functional as F

    task, model = fresh_model({**ADDITION, "model.body": "grid", "model.tied": True})
    model = model.double()
    batch = probe_batch(task, 4, equal_lengths=False)
    norms = input_gradient(model, batch)["x"]

    def loss(x):
        logits = model.head(model.body(x, None, batch.lengths)[0])
        return F.cross_entropy(logits[11], batch.targets[11])

    x = model.embed(batch.inputs).detach()
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(x), x)
    eps = 1e-6
    moved = x.detach().clone()
    moved[0] += eps * grad[0]
    with torch.no_grad():
        change = float(loss(moved) - loss(x.detach()))
    assert change == pytest.approx(eps * float(grad[0].norm()) ** 2, rel=1e-3)
    assert norms[0] == pytest.approx(float(grad[0].norm()) / 2)  # √B = 2


def test_gradflow_cli_inputs_mode_measures_a_grid(tmp_path, capsys):
    out = tmp_path / "gf"
    argv = ["gradflow", "--inputs", "--set", "task.name=addition", "--set", "task.digits=4",
            "--set", "hidden_size=8", "stack:body=stack", "grid:body=grid,tied=true",
            "--batch", "8", "--out", str(out)]
    assert main(argv) == 0
    rows = list(csv.reader(open(out / "gradflow.csv")))
    assert rows[0] == ["t", "stack:x", "grid:x"]
    assert float(rows[1][2]) > 0 and float(rows[-1][2]) == 0  # the first operand digit; padding
    assert (out / "gradflow.png").stat().st_size > 1000
