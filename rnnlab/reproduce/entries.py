"""The reproductions, as plain data: each entry is settings for the ordinary trainer.

An entry has a ``claim`` (one sentence, in the paper's terms), a ``base`` (``section.field`` ->
value, applied to :class:`ExperimentConfig`'s defaults), a list of ``runs`` (a label and the
settings that differ), the paper's ``published`` numbers as ``rows`` (which runs and which
summary value each compares to), ``comparisons`` (pairs of rows a claim "A beats B" rests on:
the table gives Welch's t-test for each), and ``budgets``: ``full`` (the paper's setting, or the
largest this project affords, said in ``scaled``) and ``small`` (a quick version; what it scales
is said in ``small_scaled``). Budgets are steps or epochs — the same work on every machine —
never seconds. ``seeds`` repeats every run once per seed (label ``LABEL-sSEED``); the small
budget trains seed 0 only. Nothing here is code: :mod:`rnnlab.reproduce.runner` applies the
settings and calls :func:`rnnlab.train.train`.

A row's ``value`` is a dotted path into a run's summary.json (``test.perplexity``,
``last.test.perplexity``); with several ``runs`` the table shows mean ± std over them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from rnnlab.train.config import ExperimentConfig, apply_overrides

SEEDS = (0, 1, 2)  # n = 3: the fewest that give a standard deviation and a t-test

# expected_minutes: CPU-minutes of the full budget on one core of the development machine (AMD
# EPYC), estimated from a 150-step probe of each run's speed; `rnnlab reproduce --list` shows the
# measured total instead once every run of an entry is in results/.
# Settings every entry shares: quiet, recorded runs with one intra-op thread (two threads
# collapse when other processes share the two cores; see rnnlab/train/compare.py).
COMMON = {"run.quiet": True, "run.threads": 1}

_ZAREMBA = {
    "task.name": "ptb",
    "task.seq_len": 20,  # "unrolled for 20 steps"
    "task.batch_size": 20,
    "task.eval_batch_size": 20,
    "task.test_batch_size": 1,  # the test file as one stream, batch 1
    # the issue's goal is stated for the whole machine (2 cores): torch's default thread count
    "run.threads": None,
    "model.cell": "lstm",
    "model.hidden_size": 200,
    "model.embedding_size": 200,
    "model.num_layers": 2,
    "model.dropout": 0.0,
    "model.forget_bias": 0.0,  # no forget-gate bias: b_f ~ U(-0.1, 0.1) like every parameter
    "model.init_all": "uniform:0.1",  # every parameter, embedding and softmax included
    "train.optimizer": "sgd",
    "train.lr": 1.0,
    "train.schedule": "zaremba",
    "train.lr_decay": 2.0,
    "train.decay_after": 4,
    "train.clip_norm": 5.0,
    "train.epochs": 13,
    "train.loss_reduction": "sequence",  # summed over the 20 steps, averaged over the batch
    "train.checkpoint_every": 500,
    "train.log_every": 50,
    "train.train_metric": "last",  # no second 10,000-way softmax per step (benchmarks/)
}

_CHUNG = {
    "task.name": "jsb",
    "task.batch_size": 8,
    "task.eval_batch_size": 64,
    "model.input_projection": False,  # the cell reads the 88 piano keys directly
    "train.optimizer": "rmsprop",  # Chung et al.: RMSProp, gradient norm rescaled to 1
    "train.lr": 1e-3,
    "train.clip_norm": 1.0,
    "train.epochs": 300,  # an upper bound: early stopping ends every run first
    "train.steps_per_epoch": 29,  # 229 training chorales / batch 8
    "train.eval_every": 29,
    "train.patience": 15,  # early stopping on valid NLL, as the paper
    "train.checkpoint_every": None,
    "train.log_every": 29,
}

_FORGET = {
    "task.name": "copy",
    "task.options": {"length": 10, "symbols": 8},  # each symbol held for 11 steps
    #   (30 symbols: neither bias left chance, 0.125, within 60 s; docs/reproductions.md)
    "task.batch_size": 32,
    "task.eval_batch_size": 500,
    "model.cell": "lstm",
    "model.hidden_size": 64,
    "train.optimizer": "adam",
    "train.lr": 3e-3,
    "train.clip_norm": 1.0,
    "train.epochs": None,
    "train.eval_every": 100,
    "train.checkpoint_every": None,
    "train.log_every": 25,
}

_JOZEFOWICZ_CELLS = (
    ("tanh", {"model.cell": "rnn"}),
    ("lstm", {"model.cell": "lstm", "model.forget_bias": 0.0}),  # the paper's plain LSTM
    ("lstm-f", {"model.cell": "lstm_f"}),
    ("lstm-i", {"model.cell": "lstm_i", "model.forget_bias": 0.0}),
    ("lstm-o", {"model.cell": "lstm_o", "model.forget_bias": 0.0}),
    ("lstm-b", {"model.cell": "lstm", "model.forget_bias": 1.0}),
    ("gru", {"model.cell": "gru"}),
    ("mut1", {"model.cell": "mut1"}),
    ("mut2", {"model.cell": "mut2"}),
    ("mut3", {"model.cell": "mut3"}),
)
# "a few hyperparameter draws": fixed draws from the paper's ranges (learning rate, init scale);
# the small budget uses the first only.
_JOZEFOWICZ_DRAWS = (
    {"train.lr": 3e-3, "model.init_all": "scaled:1.0"},
    {"train.lr": 1e-3, "model.init_all": "scaled:1.4"},
    {"train.lr": 1e-2, "model.init_all": "scaled:0.7"},
)
_JOZEFOWICZ_TASKS = (
    ("arith", {"task.name": "arithmetic", "task.eval_batch_size": 500}),
    ("xml", {"task.name": "xml", "task.eval_batch_size": 500}),
)
_JOZEFOWICZ_PUBLISHED = {  # best next-step accuracy (REFERENCE.md; see docs/reproductions.md)
    "tanh": (0.295, 0.321), "lstm": (0.892, 0.425), "lstm-f": (0.293, 0.234),
    "lstm-i": (0.751, 0.414), "lstm-o": (0.867, 0.421), "lstm-b": (0.902, 0.444),
    "gru": (0.896, 0.460), "mut1": (0.921, 0.475), "mut2": (0.897, 0.473),
    "mut3": (0.907, 0.465),
}

_GRID_SYNTH = {
    "task.batch_size": 64,
    "task.eval_batch_size": 500,
    "train.optimizer": "adam",
    "train.lr": 3e-3,
    "train.clip_norm": 5.0,
    "train.epochs": None,
    "train.eval_every": 200,
    "train.checkpoint_every": None,
    "train.log_every": 50,
}


_TIMING = {
    "task.batch_size": 32,
    "task.eval_batch_size": 500,
    "model.hidden_size": 16,
    "train.optimizer": "adam",
    "train.lr": 1e-2,
    "train.clip_norm": 1.0,
    "train.epochs": None,
    "train.eval_every": 100,
    "train.checkpoint_every": None,
    "train.log_every": 25,
}
_TIMING_CELLS = ("peephole", "np", "lstm")
# The paper's hard cases (its abstract: spikes 49 or 50 steps apart; stable spike streams):
# "-long" tell a delay of 49 from 50 and produce a spike every 50 steps. The short defaults
# (10-20 steps, period 10) can be counted without peepholes (docs/reproductions.md).
_TIMING_TASKS = {
    "msd": {"task.name": "msd"},
    "gts": {"task.name": "gts"},
    "msd-long": {"task.name": "msd", "task.options": {"min_delay": 49, "max_delay": 50}},
    "gts-long": {"task.name": "gts", "task.options": {"period": 50, "length": 300}},
}
_TIMING_METRICS = {"msd": "accuracy", "gts": "sequence_accuracy", "msd-long": "accuracy",
                   "gts-long": "sequence_accuracy"}
_FEEDFORWARD = {  # equal depth (2 layers), equal parameters within 1% (~151K on 16-bit parity)
    "grid_deep": {"model.body": "grid_deep", "model.hidden_size": 128},
    "highway": {"model.body": "highway", "model.hidden_size": 171},
    "plain": {"model.body": "grid_deep", "model.transforms": "tanh", "model.hidden_size": 221},
}
_FF_TASKS = {  # the whole input at once: a feed-forward net reads one step
    "parity16": {"task.name": "parity", "task.options": {"bits": 16, "signed": True}},
    "digits": {"task.name": "digits", "task.options": {"form": "vector"}},
}


def _jozefowicz_runs() -> list[dict]:
    runs = []
    for task_label, task in _JOZEFOWICZ_TASKS:
        for cell_label, cell in _JOZEFOWICZ_CELLS:
            for draw_index, draw in enumerate(_JOZEFOWICZ_DRAWS):
                runs.append(
                    {
                        "label": f"{task_label}-{cell_label}-d{draw_index}",
                        "settings": {**task, **cell, **draw},
                        "small": draw_index == 0,
                    }
                )
    return runs


def _jozefowicz_rows() -> list[dict]:
    rows = []
    for column, (task_label, _) in enumerate(_JOZEFOWICZ_TASKS):
        for cell_label, _ in _JOZEFOWICZ_CELLS:
            rows.append(
                {
                    "what": f"{task_label} next-step accuracy, {cell_label} (best draw)",
                    "published": _JOZEFOWICZ_PUBLISHED[cell_label][column],
                    "runs": [f"{task_label}-{cell_label}-d{i}" for i in range(3)],
                    "value": "test.accuracy",
                    "aggregate": "best_valid",
                }
            )
    return rows


def _tied_grid_vs_stack(what: str) -> dict:
    """Runs, rows and budgets of a Section 4.2 comparison (addition, memorisation): a tied
    2-D Grid LSTM against a stacked LSTM of the same width, by test sequence accuracy."""
    return {
        "runs": [
            {"label": "grid-tied", "settings": {"model.body": "grid", "model.tied": True,
                                                "model.hidden_size": 64}, "small": True},
            {"label": "lstm-stack", "settings": {"model.body": "stack", "model.cell": "lstm",
                                                 "model.hidden_size": 64}, "small": True},
        ],
        "rows": [
            {"what": f"{what} sequence accuracy, tied grid",
             "published": "above the stack (number unverified: docs/paper-settings.md)",
             "runs": ["grid-tied"], "value": "test.sequence_accuracy"},
            {"what": f"{what} sequence accuracy, stacked LSTM",
             "published": "below the grid (number unverified)", "runs": ["lstm-stack"],
             "value": "test.sequence_accuracy"},
            # per symbol: moves long before whole sequences come out right
            {"what": f"{what} per-symbol accuracy, tied grid", "published": "-",
             "runs": ["grid-tied"], "value": "test.accuracy"},
            {"what": f"{what} per-symbol accuracy, stacked LSTM", "published": "-",
             "runs": ["lstm-stack"], "value": "test.accuracy"},
        ],
        "comparisons": [
            {"a": f"{what} sequence accuracy, tied grid",
             "b": f"{what} sequence accuracy, stacked LSTM", "higher_is_better": True},
            {"a": f"{what} per-symbol accuracy, tied grid",
             "b": f"{what} per-symbol accuracy, stacked LSTM", "higher_is_better": True},
        ],
        "budgets": {"full": {"train.max_steps": 3000}, "small": {"train.max_steps": 600}},
    }


# grid-depth: the Grid LSTM paper's mechanism (depth) at a size a CPU reaches. Every network is
# 64 wide; depth L is the only setting that moves along a line.
_DEPTHS = (1, 2, 4, 8, 12)
_DEPTH_NETS = (  # (label, legend, settings)
    ("grid-tied", "tied 2-D Grid LSTM", {"model.body": "grid", "model.tied": True}),
    ("grid-untied", "untied 2-D Grid LSTM", {"model.body": "grid", "model.tied": False}),
    ("stack", "stacked LSTM", {"model.body": "stack", "model.cell": "lstm"}),
)
_DEPTH_TASKS = (  # (label, what, settings): sizes at which a 1-layer net learns within the budget
    ("add", "6-digit addition",
     {"task.name": "addition", "task.options": {"digits": 6}}),
    ("copy", "memorisation of 10 symbols of 16",
     {"task.name": "copy", "task.options": {"length": 10, "symbols": 16}}),
)
_DEPTH_ROWS = (1, 4, 12)  # the table's depths; the sweep plots show every depth


def _grid_depth() -> dict:
    """Runs, rows, comparisons and sweep plots of the ``grid-depth`` entry."""
    runs = [
        {"label": f"{task}-{net}-L{depth}",
         "settings": {**task_settings, **net_settings, "model.num_layers": depth},
         "small": depth <= 2}
        for task, _, task_settings in _DEPTH_TASKS
        for net, _, net_settings in _DEPTH_NETS
        for depth in _DEPTHS
    ]
    rows = [
        {"what": f"{what} per-symbol accuracy, {legend}, L={depth}", "published": "-",
         "runs": [f"{task}-{net}-L{depth}"], "value": "test.accuracy"}
        for task, what, _ in _DEPTH_TASKS
        for net, legend, _ in _DEPTH_NETS
        for depth in _DEPTH_ROWS
    ]
    comparisons = [  # the claim's two halves: the grid beats the stack when deep, and gains
        # from depth (deepest vs 1 layer)
        *({"a": f"{what} per-symbol accuracy, {grid}, L={_DEPTH_ROWS[-1]}",
           "b": f"{what} per-symbol accuracy, stacked LSTM, L={_DEPTH_ROWS[-1]}",
           "higher_is_better": True}
          for _, what, _ in _DEPTH_TASKS
          for grid in ("tied 2-D Grid LSTM", "untied 2-D Grid LSTM")),
        *({"a": f"{what} per-symbol accuracy, {legend}, L={_DEPTH_ROWS[-1]}",
           "b": f"{what} per-symbol accuracy, {legend}, L={_DEPTH_ROWS[0]}",
           "higher_is_better": True}
          for _, what, _ in _DEPTH_TASKS for _, legend, _ in _DEPTH_NETS),
    ]
    sweeps = [
        {"file": f"depth-{task}.png", "title": f"{what}: test accuracy per symbol against depth",
         "setting": "model.num_layers", "xlabel": "layers L (depth)",
         "value": "test.accuracy", "ylabel": "test accuracy per symbol (mean ± std over seeds)",
         "lines": {legend: [f"{task}-{net}-L{depth}" for depth in _DEPTHS]
                   for net, legend, _ in _DEPTH_NETS}}
        for task, what, _ in _DEPTH_TASKS
    ]
    return {"runs": runs, "rows": rows, "comparisons": comparisons, "sweeps": sweeps}


# grid-parity: k-bit parity, the bits given at once (±1). The tied 1-D grid has the same
# parameters at every depth (68,354 at k = 16); the plain nets, 180 wide, have 68,402.
_PARITY_BITS = (12, 16, 20, 24, 28, 32)  # k = 8: 256 vectors, no room for a test set
_PARITY_NETS = (  # (label, legend, settings)
    ("grid-L2", "tied 1-D Grid LSTM, 2 layers",
     {"model.body": "grid_deep", "model.tied": True, "model.num_layers": 2,
      "model.hidden_size": 128}),
    ("grid-L4", "tied 1-D Grid LSTM, 4 layers",
     {"model.body": "grid_deep", "model.tied": True, "model.num_layers": 4,
      "model.hidden_size": 128}),
    ("grid-L8", "tied 1-D Grid LSTM, 8 layers",
     {"model.body": "grid_deep", "model.tied": True, "model.num_layers": 8,
      "model.hidden_size": 128}),
    ("tanh", "tanh feed-forward net, 2 layers",
     {"model.body": "grid_deep", "model.transforms": "tanh", "model.num_layers": 2,
      "model.hidden_size": 180}),
    ("relu", "ReLU feed-forward net, 2 layers",
     {"model.body": "grid_deep", "model.transforms": "relu", "model.num_layers": 2,
      "model.hidden_size": 180}),
)
_PARITY_ROWS = (16, 24)


def _grid_parity() -> dict:
    """Runs, rows, comparisons and the k sweep of the ``grid-parity`` entry."""
    runs = [
        {"label": f"{net}-k{bits}",
         "settings": {"task.options": {"bits": bits, "signed": True}, **settings},
         "small": bits <= 16}
        for net, _, settings in _PARITY_NETS
        for bits in _PARITY_BITS
    ]
    rows = [
        {"what": f"k={bits} test accuracy, {legend}",
         "published": "1.0 (up to k=250)" if net.startswith("grid") else "-",
         "runs": [f"{net}-k{bits}"], "value": "test.accuracy"}
        for bits in _PARITY_ROWS
        for net, legend, _ in _PARITY_NETS
    ]
    grid, deep = _PARITY_NETS[0][1], _PARITY_NETS[2][1]
    comparisons = [
        *({"a": f"k=16 test accuracy, {grid}", "b": f"k=16 test accuracy, {legend}",
           "higher_is_better": True} for _, legend, _ in _PARITY_NETS[3:]),
        {"a": f"k=24 test accuracy, {deep}", "b": f"k=24 test accuracy, {grid}",
         "higher_is_better": True},
    ]
    sweeps = [{
        "file": "parity-k.png", "title": "k-bit parity: test accuracy against k",
        "setting": "task.options.bits", "xlabel": "k (bits, all given at once)", "log_x": False,
        "value": "test.accuracy", "ylabel": "test accuracy (mean ± std over seeds; 0.5: chance)",
        "lines": {legend: [f"{net}-k{bits}" for bits in _PARITY_BITS]
                  for net, legend, _ in _PARITY_NETS},
    }]
    return {"runs": runs, "rows": rows, "comparisons": comparisons, "sweeps": sweeps}


# Each regulariser of issue 25 at the rate its paper used on characters or words, for
# regularisers-char (a 2 x 128 LSTM that overfits 100,000 characters of Tiny Shakespeare, ~30
# steps per epoch: plain training passes its best valid loss within the budget) and
# regularisers-ptb (Zaremba's small model on 50,000 PTB words).
_REGULARISERS = (
    ("none", "none", {}),
    ("input-dropout", "input dropout 0.25", {"model.input_dropout": 0.25}),
    ("recurrent-dropout", "recurrent dropout 0.25", {"model.recurrent_dropout": 0.25}),
    ("output-dropout", "output dropout 0.25", {"model.output_dropout": 0.25}),
    ("weight-drop", "weight drop 0.5", {"model.weight_drop": 0.5}),
    ("zoneout", "zoneout h 0.05, c 0.5", {"model.zoneout": {"h": 0.05, "c": 0.5}}),
    ("layer-norm", "layer norm", {"model.layer_norm": True}),
)


def _regulariser_study(views: tuple, test_row: tuple | None = None) -> dict:
    """Runs, rows and comparisons of an entry that trains each of _REGULARISERS x SEEDS.

    ``views``: (row text with ``{}`` for the regulariser, value) pairs compared against "none";
    ``test_row``: one more such pair, reported without a comparison.
    """
    def rows_of(view):
        return [{"what": view[0].format(legend), "published": "-",
                 "runs": [f"{label}-s{seed}" for seed in SEEDS], "value": view[1]}
                for label, legend, _ in _REGULARISERS]
    return {
        "runs": [{"label": f"{label}-s{seed}", "settings": {**settings, "train.seed": seed},
                  "small": seed == 0 and label in ("none", "recurrent-dropout")}
                 for seed in SEEDS for label, _, settings in _REGULARISERS],
        "rows": [row for view in (*views, *([test_row] if test_row else []))
                 for row in rows_of(view)],
        "comparisons": [{"a": row.format(legend), "b": row.format("none"),
                         "higher_is_better": False}
                        for row, _ in views
                        for label, legend, _ in _REGULARISERS if label != "none"],
    }


# nats/char of the selected (best-valid) weights, and of the final weights: early stopping on
# the validation loss is itself a regulariser, so the two views can disagree
_REGULARISERS_CHAR_VIEWS = (
    ("valid nats/char at the best step, {}", "best_valid_loss"),
    ("valid nats/char of the final weights (2,000 steps), {}", "last.valid.loss"),
)
# Zaremba's protocol reports the final weights (no early stopping), and the claim is about
# their test perplexity; the weights of the best validation epoch too
_REGULARISERS_PTB_VIEWS = (
    ("test perplexity of the final weights (13 epochs), {}", "last.test.perplexity"),
    ("valid perplexity of the final weights, {}", "last.valid.perplexity"),
    ("valid perplexity at the best epoch, {}", "valid.perplexity"),
)


# seed-char: three 3-layer networks of ~410K parameters (on Tiny Shakespeare's 65 characters):
# stacked LSTM 411,457; untied Grid LSTM 410,825; tied Grid LSTM (one block) 413,809.
_SEED_CHAR_NETS = (
    ("lstm", {"model.body": "stack", "model.hidden_size": 128}),
    ("grid", {"model.body": "grid", "model.hidden_size": 90}),
    ("grid-tied", {"model.body": "grid", "model.tied": True, "model.hidden_size": 152}),
)


ENTRIES: dict[str, dict] = {
    "gers-timing": {
        "paper": "Gers, Schraudolph & Schmidhuber 2002, Learning Precise Timing with LSTM "
        "Recurrent Networks (seed 003: peepholes help timing)",
        "table": "MSD (measuring spike delays) and GTS (generating timed spikes): peephole vs "
        "no-peephole LSTM",
        "claim": "peephole connections let an LSTM learn precise timing (measuring and "
        "generating intervals between spikes) that an LSTM without them does not learn",
        "expected_minutes": 25,
        "base": _TIMING,
        "runs": [
            {"label": f"{variant}-{cell}-s{seed}",
             "settings": {**settings, "model.cell": cell, "train.seed": seed},
             "small": seed == 0 and variant in ("msd", "gts")}
            for variant, settings in _TIMING_TASKS.items()
            for cell in _TIMING_CELLS for seed in (0, 1, 2)
        ],
        "rows": [
            {"what": f"{variant} {metric}, {cell}",
             "published": "peepholes help" if cell == "peephole" else "below peephole",
             "runs": [f"{variant}-{cell}-s{seed}" for seed in (0, 1, 2)],
             "value": f"test.{metric}"}
            for variant, metric in _TIMING_METRICS.items()
            for cell in _TIMING_CELLS
        ],
        "comparisons": [
            {"a": f"{variant} {metric}, peephole", "b": f"{variant} {metric}, {cell}",
             "higher_is_better": True}
            for variant, metric in _TIMING_METRICS.items()
            for cell in ("np", "lstm")
        ],
        "budgets": {"full": {"train.max_steps": 10000}, "small": {"train.max_steps": 2000}},
        "scaled": "delays of 10-20 steps and 49 vs 50 (the paper's hard case), 4 spikes, GTS "
        "period 10 and 50; 16 units, Adam, 10,000 steps of 32 sequences, 3 seeds",
        "small_scaled": "2,000 steps, 1 seed",
    },
    "highway-vs-grid": {
        "paper": "Kalchbrenner et al. 2016 (1-D Grid LSTM); Srivastava, Greff & Schmidhuber 2015 "
        "(Highway networks); seed 000: 'very closely related to Highway Networks'",
        "table": "16-bit parity and 8x8 digits: 1-D Grid LSTM vs Highway vs plain deep net, "
        "2 layers, equal parameters",
        "claim": "a 1-D Grid LSTM is a feed-forward net with LSTM cells along depth, close to a "
        "Highway network; both gated nets learn k-bit parity where a plain tanh net of equal "
        "parameters does not",
        "seeds": SEEDS,
        "expected_minutes": 8,
        "base": {**_GRID_SYNTH, "task.batch_size": 128, "model.num_layers": 2,
                 "model.input_projection": False},  # each net's own projection reads the input
        "runs": [
            {"label": f"{task}-{net}", "settings": {**task_settings, **net_settings},
             "small": True}
            for task, task_settings in _FF_TASKS.items()
            for net, net_settings in _FEEDFORWARD.items()
        ],
        "rows": [
            {"what": f"{task} test accuracy, {net}",
             "published": "1.0 (k=250)" if (task, net) == ("parity16", "grid_deep") else "-",
             "runs": [f"{task}-{net}"], "value": "test.accuracy"}
            for task in _FF_TASKS for net in _FEEDFORWARD
        ],
        "comparisons": [
            {"a": f"parity16 test accuracy, {net}", "b": "parity16 test accuracy, plain",
             "higher_is_better": True}
            for net in ("grid_deep", "highway")
        ],
        "budgets": {"full": {"train.max_steps": 5000}, "small": {"train.max_steps": 1000}},
        "scaled": "16-bit parity (the paper: 250 bits, deeper nets) and scikit-learn's 8x8 "
        "digits (one vector) instead of MNIST rows; 2 layers; 5,000 steps of 128, 3 seeds",
        "small_scaled": "1,000 steps, 1 seed",
    },
    "digits-grid": {
        "paper": "seed 000's future work (speech with a 2-D/3-D Grid LSTM over spectrograms); "
        "Li et al. 2015 (F-T-LSTM: 3.6% relative WER gain); Sainath & Li 2016 (1-4%)",
        "table": "connected FSDD digits with CTC: bidirectional LSTM vs F-T-LSTM vs 3-D "
        "spectrogram Grid LSTM, ~169K parameters each, equal steps",
        "claim": "LSTMs along frequency as well as time (a time-frequency grid) lower the "
        "recognition error of an LSTM over spectrogram frames by 1-4% relative",
        "seeds": SEEDS,
        "expected_minutes": 150,
        "base": {
            "task.name": "digits_ctc",
            "task.batch_size": 16,
            "model.num_layers": 2,
            "train.epochs": None,
            "train.eval_every": 100,
            "train.checkpoint_every": None,
        },
        "runs": [
            {"label": "blstm", "settings": {"model.bidirectional": True, "model.hidden_size": 64},
             "small": True},
            {"label": "freq_time", "settings": {"model.body": "freq_time",
                                                "model.bidirectional": True,
                                                "model.hidden_size": 64}, "small": True},
            {"label": "grid", "settings": {"model.body": "grid_spectrogram",
                                           "model.hidden_size": 48}, "small": True},
            # like with like: the grid scans from one corner (it never reads later frames,
            # and scans backward in time need equal lengths), so its fair baselines are
            # unidirectional too (169,287 and 168,552 parameters)
            {"label": "lstm", "settings": {"model.hidden_size": 101}, "small": False},
            {"label": "freq_time-uni", "settings": {"model.body": "freq_time",
                                                    "model.hidden_size": 107}, "small": False},
        ],
        "rows": [
            {"what": f"test digit error rate, {label}", "published": published,
             "runs": [label], "value": "test.error_rate"}
            for label, published in (("blstm", "baseline"),
                                     ("freq_time", "1-4% relative below the baseline"),
                                     ("grid", "1-4% relative below the baseline"),
                                     ("lstm", "baseline (one direction)"),
                                     ("freq_time-uni", "1-4% relative below the baseline"))
        ],
        "comparisons": [
            *({"a": f"test digit error rate, {net}", "b": f"test digit error rate, {base}",
               "higher_is_better": False}
              for net, base in (("freq_time", "blstm"), ("grid", "lstm"),
                                ("freq_time-uni", "lstm"))),
        ],
        "budgets": {"full": {"train.max_steps": 1500}, "small": {"train.max_steps": 300}},
        "scaled": "FSDD connected digits instead of TIMIT/voice search (licensed); ~169K "
        "parameters; 1,500 steps of 16 utterances, 3 seeds; the grid (one corner) against "
        "unidirectional baselines, the bidirectional ones beside",
        "small_scaled": "300 steps, 1 seed",
    },
    "numbers-grid": {
        "paper": "seed 000's future work (translation with a 3-D Grid LSTM); Kalchbrenner et al. "
        "2016 (Reencoder); Bahdanau et al. 2015 (attention baseline)",
        "table": "numbers in words, English -> French: attention encoder-decoder vs Reencoder "
        "(3-D Grid LSTM), equal parameters, equal steps",
        "claim": "a 3-D Grid LSTM over source x target x depth (the Reencoder) translates "
        "without an attention mechanism, as an alternative to an attention encoder-decoder",
        "seeds": SEEDS,
        "expected_minutes": 60,
        "base": {
            "task.name": "numbers",
            "task.batch_size": 32,
            "task.eval_batch_size": 250,
            "model.num_layers": 1,
            "train.epochs": None,
            "train.eval_every": 100,
            "train.checkpoint_every": None,
        },
        "runs": [
            {"label": "seq2seq", "settings": {"model.body": "seq2seq", "model.hidden_size": 48},
             "small": True},
            {"label": "reencoder", "settings": {"model.body": "reencoder",  # 91K vs 92K
                                                "model.hidden_size": 48}, "small": True},
        ],
        "rows": [
            *({"what": f"test exact match (teacher-forced = greedy), {label}",
               "published": "-", "runs": [label], "value": "test.sequence_accuracy"}
              for label in ("seq2seq", "reencoder")),
            *({"what": f"test character accuracy, {label}", "published": "-",
               "runs": [label], "value": "test.accuracy"} for label in ("seq2seq", "reencoder")),
        ],
        "comparisons": [
            {"a": "test exact match (teacher-forced = greedy), reencoder",
             "b": "test exact match (teacher-forced = greedy), seq2seq", "higher_is_better": True},
        ],
        "budgets": {"full": {"train.max_steps": 2000}, "small": {"train.max_steps": 300}},
        "scaled": "a generated corpus (the paper: Chinese-English); ~92K parameters; 2,000 "
        "steps, 3 seeds",
        "small_scaled": "300 steps, 1 seed",
    },
    "zaremba-ptb-small": {
        "paper": "Zaremba, Sutskever & Vinyals 2014, Recurrent Neural Network Regularization",
        "table": "Table 1, non-regularized LSTM (small: 2 x 200, 13 epochs)",
        "claim": "a 2 x 200 LSTM without dropout, trained 13 epochs with SGD and the paper's "
        "schedule, reaches 120.7 valid / 114.5 test perplexity on PTB",
        "seeds": SEEDS,
        "expected_minutes": 105,
        "base": _ZAREMBA,
        "runs": [{"label": "lstm-2x200", "settings": {}, "small": True}],
        "rows": [
            {"what": "valid perplexity (final weights)", "published": 120.7,
             "runs": ["lstm-2x200"], "value": "last.valid.perplexity"},
            {"what": "test perplexity (final weights)", "published": 114.5,
             "runs": ["lstm-2x200"], "value": "last.test.perplexity"},
            {"what": "test perplexity (best-valid weights)", "published": 114.5,
             "runs": ["lstm-2x200"], "value": "test.perplexity"},
        ],
        "budgets": {"full": {}, "small": {"train.epochs": 2}},
        "scaled": "nothing: the paper's model, data, schedule and 13 epochs; 3 seeds",
        "small_scaled": "2 epochs instead of 13, 1 seed",
    },
    "chung-jsb": {
        "paper": "Chung, Gulcehre, Cho & Bengio 2014, Empirical Evaluation of Gated Recurrent "
        "Neural Networks on Sequence Modeling",
        "table": "Table 2, JSB Chorales test NLL per time step (~20K parameters)",
        "claim": "on JSB Chorales, gated units (GRU 8.54, LSTM 8.67 nats) model the music "
        "better than a tanh RNN (9.10) of about the same number of parameters",
        "seeds": SEEDS,
        "expected_minutes": 5,
        "base": _CHUNG,
        "runs": [
            {"label": "tanh-100", "settings": {"model.cell": "rnn", "model.hidden_size": 100},
             "small": True},
            {"label": "gru-46", "settings": {"model.cell": "gru", "model.hidden_size": 46},
             "small": True},
            {"label": "lstm-36", "settings": {"model.cell": "lstm", "model.hidden_size": 36},
             "small": True},
        ],
        "rows": [
            {"what": "test NLL, tanh RNN", "published": 9.10, "runs": ["tanh-100"],
             "value": "test.nll"},
            {"what": "test NLL, GRU", "published": 8.54, "runs": ["gru-46"], "value": "test.nll"},
            {"what": "test NLL, LSTM", "published": 8.67, "runs": ["lstm-36"],
             "value": "test.nll"},
        ],
        "comparisons": [
            {"a": f"test NLL, {cell}", "b": "test NLL, tanh RNN", "higher_is_better": False}
            for cell in ("GRU", "LSTM")
        ],
        "budgets": {"full": {}, "small": {"train.epochs": 20}},
        "scaled": "to early stopping on valid NLL (patience 15 epochs, at most 300), as the "
        "paper; one learning rate and 3 seeds instead of 10 random draws; no weight noise",
        "small_scaled": "20 epochs, 1 seed",
    },
    "forget-bias": {
        "paper": "Gers, Schmidhuber & Cummins 2000; Jozefowicz, Zaremba & Sutskever 2015 "
        "(LSTM-b)",
        "table": "forget-gate bias 0 vs 1 on a long-range task (copy 10, 20 and 30 symbols "
        "of 8)",
        "claim": "initialising the LSTM's forget-gate bias to 1 (LSTM-b) makes it learn "
        "long-range dependencies that the LSTM with bias 0 learns more slowly or not at all",
        "expected_minutes": 8,
        "base": _FORGET,
        "runs": [
            {"label": f"fb{bias}-s{seed}",
             "settings": {"model.forget_bias": float(bias), "train.seed": seed},
             "small": seed == 0}
            for bias in (0, 1) for seed in (0, 1, 2)
        ] + [  # lags of 21 and 31 steps: long enough that the bias may decide whether the
            # task is learnt at all (at 31 neither bias learnt it reliably in 8,000 steps)
            {"label": f"L{length}-fb{bias}-s{seed}",
             "settings": {"model.forget_bias": float(bias), "train.seed": seed,
                          "task.options": {"length": length, "symbols": 8}},
             "small": False}
            for length in (30, 20) for bias in (0, 1) for seed in (0, 1, 2)
        ] + [  # seed 003: the vanilla RNN's gradient norm over training, clipped or not
            {"label": label,
             "settings": {"model.cell": "rnn", "train.clip_norm": clip, "train.log_every": 20,
                          "train.optimizer": "sgd", "train.lr": 0.1,
                          "model.init_all": "scaled:3"},  # recurrent spectral radius ~1.7
             "small": True}
            for label, clip in (("rnn-clip1", 1.0), ("rnn-noclip", None))
        ],
        "rows": [
            {"what": "copy-10 sequence accuracy, forget_bias 0", "published": "lower than 1",
             "runs": ["fb0-s0", "fb0-s1", "fb0-s2"], "value": "test.sequence_accuracy"},
            {"what": "copy-10 sequence accuracy, forget_bias 1", "published": "higher than 0",
             "runs": ["fb1-s0", "fb1-s1", "fb1-s2"], "value": "test.sequence_accuracy"},
            {"what": "copy-10 symbol accuracy, forget_bias 0", "published": "lower than 1",
             "runs": ["fb0-s0", "fb0-s1", "fb0-s2"], "value": "test.accuracy"},
            {"what": "copy-10 symbol accuracy, forget_bias 1", "published": "higher than 0",
             "runs": ["fb1-s0", "fb1-s1", "fb1-s2"], "value": "test.accuracy"},
            {"what": "copy-30 symbol accuracy, forget_bias 0", "published": "lower than 1",
             "runs": [f"L30-fb0-s{seed}" for seed in (0, 1, 2)], "value": "test.accuracy"},
            {"what": "copy-30 symbol accuracy, forget_bias 1", "published": "higher than 0",
             "runs": [f"L30-fb1-s{seed}" for seed in (0, 1, 2)], "value": "test.accuracy"},
            *({"what": f"copy-20 symbol accuracy, forget_bias {bias}",
               "published": "lower than 1" if bias == 0 else "higher than 0",
               "runs": [f"L20-fb{bias}-s{seed}" for seed in (0, 1, 2)], "value": "test.accuracy"}
              for bias in (0, 1)),
        ],
        "gradflow": {"cells": ["lstm"], "forget_bias": [0.0, 1.0],
                     "grad_norm": ["rnn-clip1", "rnn-noclip"]},
        "comparisons": [
            {"a": "copy-10 symbol accuracy, forget_bias 1",
             "b": "copy-10 symbol accuracy, forget_bias 0", "higher_is_better": True},
            {"a": "copy-10 sequence accuracy, forget_bias 1",
             "b": "copy-10 sequence accuracy, forget_bias 0", "higher_is_better": True},
            {"a": "copy-30 symbol accuracy, forget_bias 1",
             "b": "copy-30 symbol accuracy, forget_bias 0", "higher_is_better": True},
            {"a": "copy-20 symbol accuracy, forget_bias 1",
             "b": "copy-20 symbol accuracy, forget_bias 0", "higher_is_better": True},
        ],
        "budgets": {"full": {"train.max_steps": 8000}, "small": {"train.max_steps": 2000}},
        "scaled": "copy 10, 20 and 30 symbols of 8 (lags of 11, 21 and 31 steps); 8,000 steps "
        "of 32, 3 seeds",
        "small_scaled": "2,000 steps, 1 seed",
    },
    "jozefowicz-table": {
        "paper": "Jozefowicz, Zaremba & Sutskever 2015, An Empirical Exploration of Recurrent "
        "Network Architectures",
        "table": "Table 2/3: best next-step accuracy on arithmetic and XML",
        "claim": "among the LSTM's ablations the forget gate matters most (LSTM-f worst), a "
        "forget-gate bias of 1 closes the gap to the GRU, and MUT1-3 match or beat the GRU",
        "expected_minutes": 170,
        "base": {
            "task.batch_size": 32,
            "model.hidden_size": 64,
            "train.optimizer": "adam",
            "train.clip_norm": 5.0,
            "train.epochs": None,
            "train.eval_every": 200,
            "train.checkpoint_every": None,
            "train.log_every": 50,
        },
        "runs": _jozefowicz_runs(),
        "rows": _jozefowicz_rows(),
        "budgets": {"full": {"train.max_steps": 10000}, "small": {"train.max_steps": 2000}},
        "scaled": "hidden 64 (the paper: sizes up to ~1000 drawn per run), 10,000 steps of 32 "
        "per run, the best of 3 fixed hyperparameter draws per cell instead of the paper's "
        "search",
        "small_scaled": "2,000 steps per run, 1 draw per cell",
    },
    "grid-parity": {
        "paper": "Kalchbrenner, Danihelka & Graves 2016, Grid Long Short-Term Memory",
        "table": "k-bit parity (published: solved up to k = 250 by a 1-D Grid LSTM): test "
        "accuracy against k for the tied 1-D Grid LSTM at depth 2, 4 and 8 and for tanh and "
        "ReLU feed-forward nets of the same parameters",
        "claim": "a 1-D Grid LSTM (LSTM cells along depth, all k bits given at once) learns "
        "k-bit parity for far larger k than plain feed-forward nets of equal parameters, and "
        "more depth lets it solve larger k",
        "seeds": SEEDS,
        "expected_minutes": 60,
        "base": {**_GRID_SYNTH, "task.name": "parity", "task.batch_size": 128,
                 "model.input_projection": False},  # each net's projection reads the ±1 bits
        **_grid_parity(),
        "budgets": {"full": {"train.max_steps": 3000}, "small": {"train.max_steps": 500}},
        "scaled": "k = 12-32 (the paper: up to 250), 3,000 steps of 128 vectors (384,000 "
        "samples) per network, the tied grid 128 wide (68K parameters at every depth), "
        "feed-forward nets 2 x 180 (the same parameters within 0.1%), 3 seeds",
        "small_scaled": "k = 12 and 16, 500 steps, 1 seed",
    },
    "grid-parity-long": {
        "paper": "Kalchbrenner, Danihelka & Graves 2016, Grid Long Short-Term Memory",
        "table": "20-bit parity with ten times grid-parity's samples (3.84 million, the paper's "
        "order: up to 5 million): the tied 1-D Grid LSTM at depth 2, 4 and 8 and the "
        "feed-forward nets; 24-bit parity for the grids alone",
        "claim": "given about the paper's number of samples, the tied 1-D Grid LSTM learns "
        "20-bit parity and plain feed-forward nets of equal parameters do not",
        "seeds": SEEDS,
        "expected_minutes": 120,
        "base": {**_GRID_SYNTH, "task.name": "parity", "task.batch_size": 128,
                 "model.input_projection": False, "train.max_steps": 30000,
                 "train.eval_every": 500, "train.log_every": 200,  # results stay small
                 "task.options": {"bits": 20, "signed": True}},
        # k = 24: the grids only (the plain nets are at chance at k = 20 already)
        "runs": [{"label": f"{net}-k{k}",
                  "settings": {**settings, "task.options": {"bits": k, "signed": True}},
                  "small": net == "grid-L2" and k == 20}
                 for k in (20, 24) for net, _, settings in _PARITY_NETS
                 if k == 20 or net.startswith("grid")],
        "rows": [{"what": f"k={k} test accuracy after 30,000 steps, {legend}",
                  "published": "1.0 (up to k=250)" if net.startswith("grid") else "-",
                  "runs": [f"{net}-k{k}"], "value": "test.accuracy"}
                 for k in (20, 24) for net, legend, _ in _PARITY_NETS
                 if k == 20 or net.startswith("grid")],
        "comparisons": [
            {"a": f"k=20 test accuracy after 30,000 steps, {_PARITY_NETS[0][1]}",
             "b": f"k=20 test accuracy after 30,000 steps, {legend}", "higher_is_better": True}
            for _, legend, _ in _PARITY_NETS[1:]] + [
            {"a": f"k=24 test accuracy after 30,000 steps, {legend}",
             "b": f"k=24 test accuracy after 30,000 steps, {_PARITY_NETS[0][1]}",
             "higher_is_better": True}
            for _, legend, _ in _PARITY_NETS[1:3]],
        "budgets": {"full": {}, "small": {"train.max_steps": 1000}},
        "scaled": "k = 20 and 24 (the paper: up to 250), 30,000 steps of 128 vectors (3.84 "
        "million samples), the nets of grid-parity (at k = 24 the grids only), 3 seeds",
        "small_scaled": "the 2-layer grid at k = 20, 1,000 steps, 1 seed",
    },
    "grid-addition": {
        "paper": "Kalchbrenner, Danihelka & Graves 2016, Grid Long Short-Term Memory",
        "table": "Section 4.2: 15-digit addition, tied 2-D Grid LSTM vs stacked LSTM",
        "claim": "a tied 2-D Grid LSTM learns 15-digit addition better than a stacked LSTM, "
        "and keeps improving with depth where the stack does not",
        "seeds": SEEDS,
        "expected_minutes": 30,
        "base": {**_GRID_SYNTH, "task.name": "addition", "model.num_layers": 3},
        **_tied_grid_vs_stack("15-digit addition"),
        "scaled": "3 layers of 64 units, 3,000 steps of 64 per network, 3 seeds (the paper: "
        "up to 18 layers, trained to convergence)",
        "small_scaled": "600 steps, 1 seed",
    },
    "grid-memorize": {
        "paper": "Kalchbrenner, Danihelka & Graves 2016, Grid Long Short-Term Memory",
        "table": "Section 4.2: sequence memorisation, tied 2-D Grid LSTM vs stacked LSTM",
        "claim": "a tied 2-D Grid LSTM memorises sequences better than a stacked LSTM, and "
        "keeps improving with depth where the stack does not",
        "seeds": SEEDS,
        "expected_minutes": 30,
        "base": {**_GRID_SYNTH, "task.name": "copy", "model.num_layers": 3},
        **_tied_grid_vs_stack("memorisation"),
        "scaled": "copy task, 20 symbols of 64, 3 layers of 64, 3,000 steps of 64 per network, "
        "3 seeds",
        "small_scaled": "600 steps, 1 seed",
    },
    "grid-depth": {
        "paper": "Kalchbrenner, Danihelka & Graves 2016, Grid Long Short-Term Memory",
        "table": "Section 4.2's mechanism: accuracy against depth L = 1-12 for the tied and "
        "untied 2-D Grid LSTM and the stacked LSTM, on addition and memorisation",
        "claim": "a stacked LSTM stops improving as layers are added; a Grid LSTM, whose depth "
        "connections are LSTM cells too, keeps improving (the tied grid at no cost in "
        "parameters)",
        "seeds": SEEDS,
        "expected_minutes": 170,
        "base": {**_GRID_SYNTH, "model.hidden_size": 64},
        **_grid_depth(),
        "budgets": {"full": {"train.max_steps": 1500}, "small": {"train.max_steps": 300}},
        "scaled": "64 units, L = 1, 2, 4, 8, 12 (the paper: up to 18 layers), 6-digit addition "
        "and copying 10 symbols of 16 (the paper: 15 digits, longer sequences), 1,500 steps of "
        "64 sequences (96,000 samples; the paper: up to 5 million), 3 seeds",
        "small_scaled": "L = 1 and 2, 300 steps, 1 seed",
    },
    "regularisers-char": {
        "paper": "Gal & Ghahramani 2016 (locked dropout); Merity, Keskar & Socher 2018 (weight "
        "drop); Krueger et al. 2017 (zoneout); Ba, Kiros & Hinton 2016 (layer norm); Zaremba, "
        "Sutskever & Vinyals 2014 (dropout: PTB 114.5 -> 82.7 for the medium model)",
        "table": "Tiny Shakespeare, 100,000 training characters, 2 x 128 LSTM: each "
        "regulariser against none",
        "claim": "on a network that overfits its training set, each regulariser lowers the "
        "held-out loss of the best-valid weights below the unregularised network's",
        "expected_minutes": 90,
        "base": {
            "task.name": "tinyshakespeare",
            "task.options": {"train_chars": 100_000},
            "task.eval_batch_size": 256,
            "model.body": "stack",
            "model.cell": "lstm",
            "model.num_layers": 2,
            "model.hidden_size": 128,
            "train.epochs": None,
            "train.eval_every": 100,
            "train.checkpoint_every": None,
            "train.log_every": 20,
        },
        **_regulariser_study(_REGULARISERS_CHAR_VIEWS, ("test nats/char, {}", "test.loss")),
        "budgets": {"full": {"train.max_steps": 2000}, "small": {"train.max_steps": 300}},
        "scaled": "the mechanism, not a paper's table: 100,000 characters (~31 steps of 32 x "
        "100 per epoch, 2,000 steps = 64 epochs) so that the 2 x 128 LSTM (~220K parameters) "
        "overfits; one rate per regulariser from its paper; 3 seeds. Zaremba's PTB models with "
        "these regularisers (13-39 epochs of 929K words) take ~1.8 h per run here: not run",
        "small_scaled": "300 steps, 1 seed, none and recurrent dropout",
    },
    "regularisers-ptb": {
        "paper": "Zaremba, Sutskever & Vinyals 2014 (the small model and its schedule; "
        "non-regularised 114.5 test perplexity on all of PTB); Gal & Ghahramani 2016; Merity, "
        "Keskar & Socher 2018; Krueger et al. 2017; Ba, Kiros & Hinton 2016",
        "table": "PTB words, Zaremba's small model (2 x 200 LSTM, SGD 1.0 halved after epoch "
        "4, 13 epochs) on the first 50,000 training words: each regulariser against none",
        "claim": "on Zaremba's small model, where it overfits, each regulariser lowers the "
        "test perplexity below the non-regularised model's; which lowers it most",
        "expected_minutes": 170,
        "base": {
            **_ZAREMBA,
            "task.options": {"train_words": 50_000},
            "task.test_batch_size": 20,  # the test stream in 20 rows, as valid (not batch 1)
            "run.threads": 1,
            "train.checkpoint_every": 125,  # one epoch of 50,000 words
        },
        **_regulariser_study(_REGULARISERS_PTB_VIEWS),
        "budgets": {"full": {}, "small": {"train.epochs": 2}},
        "scaled": "the mechanism at a scale that fits: Zaremba's small model, schedule and 13 "
        "epochs on the first 50,000 of PTB's 929,589 training words (valid and test whole), "
        "so that it overfits as the paper's models do on all of it; each regulariser at "
        "regularisers-char's rate; 3 seeds. On all of PTB (zaremba-ptb-small with each "
        "regulariser) a run takes ~1.8 h here, 38 CPU-hours for the table: not run",
        "small_scaled": "2 epochs, 1 seed, none and recurrent dropout",
    },
    "seed-char": {
        "paper": "seed 000; Kalchbrenner et al. 2016 enwik8 (stacked LSTM 1.67 vs Grid LSTM "
        "1.47 bits/char, 16-27M parameters)",
        "table": "Tiny Shakespeare bits/char, 3-layer stacked LSTM vs 3-layer Grid LSTM, equal "
        "parameters and steps (`rnnlab compare` gives the equal-time view)",
        "claim": "a 3-layer Grid LSTM, whose depth connections are LSTM cells too, models "
        "characters better than a 3-layer stacked LSTM of about the same size",
        "expected_minutes": 45,
        "base": {
            "task.eval_batch_size": 256,
            "task.eval_max_batches": 1,
            "model.num_layers": 3,
            "train.epochs": None,
            "train.eval_every": 100,
            "train.checkpoint_every": None,
        },
        "runs": [
            {"label": f"{prefix}{kind}-s{seed}",
             "settings": {"task.name": data, **settings, "train.seed": seed},
             "small": seed == 0 and not prefix}
            for prefix, data in (("", "tinyshakespeare"), ("ptb-", "ptb_char"))
            for seed in (0, 1, 2)
            for kind, settings in _SEED_CHAR_NETS
        ],
        "rows": [
            {"what": f"{data} test bits/char, 3-layer {legend}",
             "published": published if not prefix else "-",
             "runs": [f"{prefix}{kind}-s{seed}" for seed in (0, 1, 2)],
             "value": "test.bits_per_char"}
            for prefix, data in (("", "Tiny Shakespeare"), ("ptb-", "PTB characters"))
            for (kind, _), (legend, published) in zip(_SEED_CHAR_NETS, (
                ("stacked LSTM", 1.67), ("Grid LSTM", 1.47), ("tied Grid LSTM", 1.47)))
        ],
        "comparisons": [
            {"a": f"{data} test bits/char, 3-layer {grid}",
             "b": f"{data} test bits/char, 3-layer stacked LSTM", "higher_is_better": False}
            for data in ("Tiny Shakespeare", "PTB characters")
            for grid in ("Grid LSTM", "tied Grid LSTM")
        ],
        # the equal-time view (rnnlab.reproduce.equal_time): validation curves against the
        # seconds per step measured on one idle machine (python benchmarks/equal_time.py)
        "equal_time": [
            {"title": data, "file": f"equal-time-{short}.png",
             "value": "bits_per_char", "ylabel": "validation bits/char",
             "networks": {f"3-layer {legend}": [f"{prefix}{kind}-s{seed}" for seed in (0, 1, 2)]
                          for (kind, _), legend in zip(_SEED_CHAR_NETS, (
                              "stacked LSTM", "Grid LSTM", "tied Grid LSTM"))}}
            for prefix, data, short in (("", "Tiny Shakespeare", "shakespeare"),
                                        ("ptb-", "PTB characters", "ptb"))
        ],
        "budgets": {"full": {"train.max_steps": 3000}, "small": {"train.max_steps": 500}},
        "scaled": "Tiny Shakespeare and PTB characters instead of enwik8 (published numbers are "
        "enwik8, not comparable in value, only in ordering), ~410K parameters instead of "
        "17-27M, 3,000 steps of 32 x 100 characters per network, 3 seeds",
        "small_scaled": "500 steps, 1 seed",
    },
    "shakespeare-hour": {
        "paper": "issue 25's goal; nanoGPT's character baseline (Karpathy 2023: 1.47 valid nats, "
        "a 10.6M-parameter transformer, on a GPU); char-rnn's LSTMs (Karpathy 2015: ~1.4-1.6)",
        "table": "Tiny Shakespeare, a 2 x 512 LSTM with regularisers-char's best regulariser, a "
        "budget that takes about an hour on 2 CPU cores",
        "claim": "a 2 x 512 LSTM with input dropout reaches nanoGPT's character baseline "
        "(1.47 valid nats/char) within 60 minutes on 2 CPU cores",
        "seeds": SEEDS,
        "expected_minutes": 360,
        "base": {
            "task.name": "tinyshakespeare",
            "task.batch_size": 64,
            "task.eval_batch_size": 256,
            # the goal is stated for the whole machine (2 cores): torch's default thread count
            "run.threads": None,
            "model.body": "stack",
            "model.cell": "lstm",
            "model.num_layers": 2,
            "model.hidden_size": 512,
            "model.embedding_size": 64,
            # regularisers-char's best held-out loss (a 2 x 128 LSTM on 100,000 characters)
            "model.input_dropout": 0.25,
            "train.lr": 2e-3,
            "train.schedule": "cosine",
            "train.epochs": None,
            "train.eval_every": 200,
            "train.checkpoint_every": 200,
            "train.log_every": 50,
        },
        "runs": [{"label": "lstm", "settings": {}, "small": True}],
        "rows": [
            {"what": "valid nats/char at the best step", "published": 1.47, "runs": ["lstm"],
             "value": "best_valid_loss"},
            {"what": "test nats/char", "published": "-", "runs": ["lstm"], "value": "test.loss"},
        ],
        # 4,000 steps of 64 x 100 characters (25.6M, ~25.5 epochs): 60 minutes at the 7,160
        # characters/s that 2 threads of the development machine (AMD EPYC) train this model at
        "budgets": {"full": {"train.max_steps": 4000}, "small": {"train.max_steps": 200}},
        "scaled": "the published numbers are other models (a transformer; char-rnn's own sizes "
        "and budgets): the row says what an LSTM reaches here in the hour; 2 x 512 LSTM "
        "(~3.3M parameters), Adam 2e-3 with a cosine decay over 4,000 steps of 64 x 100 "
        "characters, 2 threads, 3 seeds",
        "small_scaled": "200 steps, 1 seed",
    },
}


@dataclass(frozen=True)
class Run:
    """One training run of an entry: its label and its full settings."""

    label: str
    settings: dict
    small: bool = True

    def config(self, extra: dict | None = None) -> ExperimentConfig:
        """ExperimentConfig() with this run's settings and ``extra`` applied, validated."""
        config = ExperimentConfig()
        merged = {**self.settings, **(extra or {})}
        for key, value in merged.items():
            section, _, name = key.partition(".")
            if name == "options":
                getattr(config, section).options.update(copy.deepcopy(value))
            else:
                setattr(getattr(config, section), name, value)
        return apply_overrides(config, [])


@dataclass(frozen=True)
class Entry:
    """One reproduction (see the module docstring)."""

    name: str
    paper: str
    table: str
    claim: str
    expected_minutes: float
    runs: tuple[Run, ...]
    rows: tuple[dict, ...]
    budgets: dict
    scaled: str
    small_scaled: str
    gradflow: dict | None = field(default=None)
    comparisons: tuple[dict, ...] = ()
    seeds: tuple[int, ...] | None = None  # every run repeated per seed (None: runs say)
    sweeps: tuple[dict, ...] = ()  # plots of a value against a setting (rnnlab.reproduce.sweep)
    equal_time: tuple[dict, ...] = ()  # curves against measured seconds (reproduce.equal_time)

    def row(self, what: str) -> dict:
        for row in self.rows:
            if row["what"] == what:
                return row
        raise ValueError(f"entry {self.name!r} has no row {what!r}")

    def seeds_per_row(self) -> int:
        """The fewest runs behind a row (the n of its mean ± std)."""
        return min(len(row["runs"]) for row in self.rows)

    def budget_text(self, budget: str = "full") -> str:
        """``train.max_steps=3000``-style text of a budget's settings (the base's limit when
        the budget adds none)."""
        settings = self.budgets[budget]
        if not settings:
            base = self.runs[0].settings
            settings = {k: base[k] for k in ("train.epochs", "train.max_steps", "train.patience")
                        if base.get(k) is not None}
        return ", ".join(f"{k.split('.', 1)[1]}={v:,}" if isinstance(v, int) else
                         f"{k.split('.', 1)[1]}={v}" for k, v in settings.items())

    def run(self, label: str) -> Run:
        for run in self.runs:
            if run.label == label:
                return run
        raise ValueError(
            f"entry {self.name!r} has no run {label!r}; its runs: "
            f"{', '.join(r.label for r in self.runs)}"
        )


def names() -> list[str]:
    return list(ENTRIES)


def get(name: str) -> Entry:
    """The entry ``name`` with every run's settings merged (COMMON, base, run)."""
    if name not in ENTRIES:
        raise ValueError(
            f"unknown reproduction {name!r}; `rnnlab reproduce --list` shows: {', '.join(ENTRIES)}"
        )
    data = ENTRIES[name]
    seeds = data.get("seeds")
    runs, rows = [], [dict(row) for row in data["rows"]]
    for r in data["runs"]:
        settings = {**COMMON, **data["base"], **r["settings"]}
        if seeds is None:
            runs.append(Run(r["label"], settings, r.get("small", True)))
            continue
        for seed in seeds:
            runs.append(Run(f"{r['label']}-s{seed}", {**settings, "train.seed": seed},
                            r.get("small", True) and seed == seeds[0]))
    if seeds is not None:
        for row in rows:
            row["runs"] = [f"{label}-s{seed}" for label in row["runs"] for seed in seeds]
    entry = Entry(
        name=name,
        paper=data["paper"],
        table=data["table"],
        claim=data["claim"],
        expected_minutes=data["expected_minutes"],
        runs=tuple(runs),
        rows=tuple(rows),
        budgets=data["budgets"],
        scaled=data["scaled"],
        small_scaled=data["small_scaled"],
        gradflow=data.get("gradflow"),
        comparisons=tuple(data.get("comparisons", ())),
        seeds=tuple(seeds) if seeds is not None else None,
        sweeps=tuple(_expand_sweep(sweep, seeds) for sweep in data.get("sweeps", ())),
        equal_time=tuple(data.get("equal_time", ())),
    )
    labels = {run.label for run in entry.runs}
    for sweep in entry.sweeps:  # a sweep's points name runs of the entry
        for points in sweep["lines"].values():
            for point in points:
                missing = set(point) - labels
                if missing:
                    raise ValueError(f"entry {name!r}: sweep names unknown runs {sorted(missing)}")
    for view in entry.equal_time:  # an equal-time view names runs of the entry
        missing = {label for labels in view["networks"].values() for label in labels} - labels
        if missing:
            raise ValueError(f"entry {name!r}: equal-time view names unknown runs "
                             f"{sorted(missing)}")
    for comparison in entry.comparisons:  # a comparison names two rows of the entry
        entry.row(comparison["a"]), entry.row(comparison["b"])
    return entry


def _expand_sweep(sweep: dict, seeds: tuple[int, ...] | None) -> dict:
    """A sweep whose every point is the list of runs behind it (one per seed)."""
    def runs(label: str) -> list[str]:
        return [label] if seeds is None else [f"{label}-s{seed}" for seed in seeds]

    lines = {legend: [runs(label) for label in labels] for legend, labels in sweep["lines"].items()}
    return {**sweep, "lines": lines}
