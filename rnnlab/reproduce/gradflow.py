"""How far back a gradient reaches: ‖∂C_T/∂h_t‖ for every step t (BPTT, seed 003).

For a model with a stacked body and a batch of ``T`` steps, the body is unrolled one step at a
time, ``(output_t, s_t) = body(x_t, s_{t-1})`` from a zero ``s_0``; ``C_T`` is the loss of the
prediction made at the last step only (averaged over the batch). For every state ``s_t`` the
recurrence reads (t = 0..T−1) and every state field (``h``, and ``c`` for an LSTM) of the top
layer we record the norm of ``∂C_T/∂s_t`` (Frobenius over the batch, divided by √B so that it
does not grow with the batch). With
``h_t = f(h_{t-1}, x_t)``, ``∂C_T/∂h_t = ∂C_T/∂h_T · Π_{k=t+1..T} ∂h_k/∂h_{k-1}``: a vanilla
RNN's product of Jacobians shrinks geometrically, an LSTM's cell path is scaled by the forget
gates ``Π f_k`` (so ``forget_bias`` = 1, f ≈ 0.73 at first, keeps it alive longer than 0,
f ≈ 0.5).

Also here: :func:`grad_norm_curves`, the global gradient norm over training (before clipping,
as the trainer logs it) of several run directories, e.g. a vanilla RNN with and without
clipping.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from rnnlab.tasks.base import Classes, Tokens


def _step_loss(model, logits: torch.Tensor, batch, step: int = -1) -> torch.Tensor:
    """The loss of step ``step``'s prediction (every sequence; a classifier's one prediction),
    mean over the batch: C_T for the last step."""
    space = model.output_space
    if isinstance(space, Classes):
        return F.cross_entropy(logits, batch.targets)
    at = logits[step]  # (B, V or K)
    if isinstance(space, Tokens):
        return F.cross_entropy(at, batch.targets[step])
    return F.binary_cross_entropy_with_logits(at, batch.targets[step].to(at.dtype)).sum(-1)


def _fields(state) -> tuple:
    """The state's tensors: rnnlab.RNN gives a one-field state as the tensor itself."""
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def gradient_flow(model, batch) -> dict[str, list[float]]:
    """``{field: [‖∂C_T/∂s_t‖ / √B for t = 0..T-1]}`` for the top layer of ``model``'s body,
    where ``s_t`` is the state that step ``t + 1`` reads (``s_0`` the zero initial state).

    ``model``: a :class:`~rnnlab.train.model.SequenceModel` with ``body=stack`` (one direction);
    ``batch``: a batch of its task whose sequences all have the batch's full length.
    """
    config = model.config
    if config.body != "stack" or config.bidirectional or config.skip or config.dilations:
        raise ValueError(
            "gradflow needs a one-directional stacked body (model.body=stack, no bidirectional, "
            "no skip, no dilations); the other bodies' state is not one vector per step"
        )
    was_training = model.training
    model.eval()
    rnn = model.body.rnn  # the stack body's rnnlab.RNN
    x = model.embed(batch.inputs)  # (T, B, E)
    steps, size = x.shape[0], x.shape[1]
    # s_0 (zeros) .. s_{T-1}: the states the recurrence reads at steps 1..T
    state = tuple(
        t.clone().requires_grad_(True)
        for t in _fields(rnn.initial_state(size, x.device, x.dtype))
    )
    states, outputs = [], []
    for t in range(steps):
        for tensor in state:
            tensor.retain_grad()
        states.append(state)
        output, state = rnn(x[t : t + 1], state)
        state = _fields(state)
        outputs.append(output)
    output = torch.cat(outputs)  # (T, B, D)
    if model.classifies:
        logits = model.head(output[-1])
    else:
        logits = model.head(output)
    loss = _step_loss(model, logits, batch)
    model.zero_grad(set_to_none=True)
    loss.backward()
    fields = getattr(rnn, "state_fields", None) or tuple(
        f"s{i}" for i in range(len(states[0]))
    )
    norms = {field: [] for field in fields}
    scale = math.sqrt(size)
    for state in states:
        for field, tensor in zip(fields, state):
            grad = tensor.grad[-1] if tensor.grad is not None else torch.zeros(1)
            norms[field].append(float(grad.norm()) / scale)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return norms


def input_gradient(model, batch) -> dict[str, list[float]]:
    """``{"x": [‖∂C/∂x_t‖ / √B for every input step t]}`` for a model with any body (grids too):
    how strongly each step's input vector (after the embedding or projection) moves the loss
    ``C`` of the first step that counts (the batch's mask; the last step without one), e.g. the
    first answer digit of an addition. Steps after that one get 0 (the body is causal).

    Unlike :func:`gradient_flow` it needs no state per step, so it measures a grid, where the
    state is one vector per layer and dimension, by where the gradient arrives."""
    was_training = model.training
    model.eval()
    x = model.embed(batch.inputs).detach().requires_grad_(True)  # (T, B, E)
    output, _ = model.body(x, None, batch.lengths)
    logits = model.head(output)
    if model.classifies:
        raise ValueError("input_gradient needs a model that predicts at every step")
    if batch.mask is not None:
        counted = batch.mask.any(dim=1).nonzero()
        if not len(counted):
            raise ValueError("the probe batch has no step that counts")
        step = int(counted[0])
    else:
        step = logits.shape[0] - 1
    (grad,) = torch.autograd.grad(_step_loss(model, logits, batch, step), x)
    model.train(was_training)
    scale = math.sqrt(x.shape[1])
    return {"x": [float(g.norm()) / scale for g in grad]}


def write(results: dict[str, dict[str, list[float]]], out: Path, title: str,
          xlabel: str | None = None, ylabel: str | None = None) -> tuple[Path, Path]:
    """``results`` {model label: {field: norms}} -> out/gradflow.csv and out/gradflow.png."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "gradflow.csv", out / "gradflow.png"
    columns = [(label, field) for label, fields in results.items() for field in fields]
    steps = max(len(norms) for fields in results.values() for norms in fields.values())
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", *(f"{label}:{field}" for label, field in columns)])
        for t in range(steps):
            row = [t]
            for label, field in columns:
                norms = results[label][field]
                row.append(f"{norms[t]:.6g}" if t < len(norms) else "")
            writer.writerow(row)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # one colour per model (its fields share it: h solid, c dashed), the legend beside the axes
    palette = plt.get_cmap("tab10" if len(results) <= 10 else "tab20").colors
    colour = {label: palette[i % len(palette)] for i, label in enumerate(results)}
    figure, axis = plt.subplots(figsize=(9.5, 4.5))
    for label, field in columns:
        norms = results[label][field]
        positive = [n if n > 0 else math.nan for n in norms]  # 0: below float32 range
        axis.plot(range(len(norms)), positive, label=f"{label} ({field})", color=colour[label],
                  linestyle="-" if field in ("h", "s0", "x") else "--")
    axis.set_yscale("log")
    same = len({len(norms) for fields in results.values() for norms in fields.values()}) == 1
    axis.set_xlabel(xlabel or "t (state s_t read by step t+1; the loss is at the last step, "
                    + (f"T = {steps})" if same else "T = each line's end)"))
    axis.set_ylabel(ylabel or "‖∂C_T/∂s_t‖ / √B")
    axis.set_title(title)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.tight_layout()
    figure.savefig(png_path, dpi=120)
    plt.close(figure)
    return csv_path, png_path


def grad_norm_curves(run_dirs: list[Path], out: Path, labels: list[str] | None = None) -> Path:
    """The trainer's logged gradient norm (before clipping) over steps, one line per run, on a
    log scale: out/grad_norm.png (and grad_norm.csv)."""
    from rnnlab.train.run import RunDir

    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for index, directory in enumerate(run_dirs):
        run = RunDir(directory)
        records = [r for r in run.metrics() if r.get("split") == "train" and "grad_norm" in r]
        if not records:
            raise ValueError(f"{directory} has no training records with grad_norm in metrics.jsonl")
        label = labels[index] if labels else Path(directory).name
        curves[label] = [(r["step"], r["grad_norm"]) for r in records]
    with open(out / "grad_norm.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "step", "grad_norm"])
        for label, points in curves.items():
            writer.writerows([label, step, f"{norm:.6g}"] for step, norm in points)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    for label, points in curves.items():
        axis.plot([s for s, _ in points], [max(n, 1e-30) for _, n in points], label=label)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("global gradient norm before clipping (window mean)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = out / "grad_norm.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def fresh_model(settings: dict, seed: int = 0):
    """(task, model) built from config ``settings`` ({"model.cell": "gru", ...})."""
    from rnnlab.reproduce.entries import Run
    from rnnlab.train.trainer import build

    config = Run("gradflow", {"train.max_steps": 1, "train.seed": seed, **settings}).config()
    return build(config)


def probe_batch(task, batch_size: int = 32, equal_lengths: bool = True):
    """A batch of ``task``'s valid split (whose sequences all have the same length unless
    ``equal_lengths`` is False: :func:`input_gradient` takes padded batches)."""
    batch = next(task.batches("valid", batch_size))
    if equal_lengths and batch.lengths is not None:
        raise ValueError(
            f"task {task.name!r} has sequences of different lengths; gradflow needs equal "
            "lengths (e.g. copy, parity form=sequence, or a stream task)"
        )
    return batch


def entry_gradflow(entry, root: Path, record: dict) -> None:
    """The gradient flow an entry asks for (``entry.gradflow``): fresh models of each cell and
    forget bias, and the entry's trained runs where they exist, into root/gradflow/."""
    spec = entry.gradflow
    base = {k: v for k, v in entry.runs[0].settings.items() if k.startswith("task.")}
    results = {}
    for cell in spec["cells"]:
        for bias in spec.get("forget_bias", [None]):
            settings = {**base, "model.cell": cell, "model.hidden_size": 64}
            if bias is not None:
                settings["model.forget_bias"] = bias
            task, model = fresh_model(settings)
            label = f"{cell} fresh" + (f" fb={bias:g}" if bias is not None else "")
            results[label] = gradient_flow(model, probe_batch(task))
    from rnnlab.train.pretrained import load_trained

    for run in entry.runs:
        if (root / run.label / "summary.json").is_file() and run.label.endswith("-s0"):
            _, task, model = load_trained(root / run.label, "last")
            results[f"{run.label} trained"] = gradient_flow(model, probe_batch(task))
    for cell in ("rnn", "gru"):  # the other cells, fresh, for comparison
        task, model = fresh_model({**base, "model.cell": cell, "model.hidden_size": 64})
        results[f"{cell} fresh"] = gradient_flow(model, probe_batch(task))
    csv_path, png_path = write(results, root / "gradflow", f"{entry.name}: gradient flow")
    finished = [label for label in spec.get("grad_norm", [])
                if (root / label / "summary.json").is_file()]
    if finished:
        path = grad_norm_curves([root / label for label in finished], root / "gradflow",
                                finished)
        record["grad_norm"] = str(path.relative_to(root))
    record["gradflow"] = {"csv": str(csv_path.relative_to(root)),
                          "png": str(png_path.relative_to(root))}
    (root / "gradflow" / "labels.json").write_text(json.dumps(list(results), indent=2) + "\n")
