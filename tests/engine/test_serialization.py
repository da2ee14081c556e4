"""Whole modules saved with torch.save load with torch.load's default weights_only=True once
``rnnlab.serialization.safe_globals()`` is allowlisted — checked in a fresh process, where no
cell has been built or registered yet — for every zoo cell, a JSON cell, a cell of the user's
own, every grid network and a model class of the user's own."""

from __future__ import annotations

import copy
import importlib.util
import io
import os
import pickle
import random
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import rnnlab
from rnnlab.grid import (
    CellTransform,
    DeepGridLSTM,
    GridLSTM,
    GridLSTMNd,
    HighwayNetwork,
    ImageGridLSTM,
    SpectrogramGridLSTM,
)
from rnnlab.lang import cell, sigmoid, tanh
from rnnlab.lang.mutate import mutate
from rnnlab.serialization import rebuild, safe_globals


@cell("mgu_saved", state=("h",))
def mgu_saved(x, state, p):  # a cell of the user's own, never registered
    f = sigmoid(p.W_f @ x + p.R_f @ state.h + p.b_f)
    h = (1 - f) * state.h + f * tanh(p.W_h @ x + p.R_h @ (f * state.h) + p.b_h)
    return h, (h,)


def _cases(tmp_path) -> dict:
    """name -> (module, input)."""
    torch.manual_seed(0)
    cases = {f"zoo-{name}": (rnnlab.RNN(name, 4, 4, num_layers=2), torch.randn(5, 2, 4))
             for name in rnnlab.cells.names()}
    lstm = rnnlab.RNN("lstm", 3, 4, num_layers=2, bidirectional=True, batch_first=True,
                      dropout=0.3).eval()
    frozen = rnnlab.RNN("peephole", 3, 4, num_layers=2, dilations=(1, 2))
    frozen.cells["layer0"].W_i.requires_grad_(False)
    frozen.cells["layer1"].eval()  # modes are kept per submodule
    graph = mutate(rnnlab.cells.graph("gru", 4, 4), random.Random(0))  # made by the search
    json_file = tmp_path / "mutant.json"
    json_file.write_text(graph.to_json())
    from_json = rnnlab.RNN(str(json_file), 4, 4, num_layers=2)
    json_file.unlink()  # the saved module must not need the file
    cases.update({
        "lstm-bidirectional-batch_first-eval": (lstm, torch.randn(2, 5, 3)),
        "gru_torch-bias_false-float64": (rnnlab.RNN("gru_torch", 3, 4, bias=False).double(),
                                         torch.randn(5, 2, 3, dtype=torch.float64)),
        "mut1-project-bidirectional": (rnnlab.RNN("mut1", 6, 6, num_layers=2,
                                                  bidirectional=True, raw_input="project"),
                                       torch.randn(5, 2, 6)),
        "peephole-dilations-frozen": (frozen, torch.randn(5, 2, 3)),
        "lstm-skip-xavier-forget0": (rnnlab.RNN("lstm", 3, 4, num_layers=2, skip=True,
                                                init="xavier", forget_bias=0.0),
                                     torch.randn(5, 2, 3)),
        "json-cell": (from_json, torch.randn(5, 2, 4)),
        "own-cell": (rnnlab.RNN(mgu_saved, 3, 4, num_layers=2), torch.randn(5, 2, 3)),
        "bare-cell": (rnnlab.cells.make("cifg", 3, 4), torch.randn(2, 3)),
        "GridLSTM": (GridLSTM(3, 4, num_layers=2), torch.randn(5, 2, 3)),
        "GridLSTM-options": (GridLSTM(3, 4, num_layers=2, tied=True, batch_first=True,
                                      time_transform="cell:gru",
                                      depth_transform="lstm_standard", priority="depth",
                                      schedule="naive"), torch.randn(2, 5, 3)),
        "GridLSTM-cell-options": (GridLSTM(3, 4, num_layers=2, time_transform=CellTransform(
            "lstm", forget_bias=0.5)), torch.randn(5, 2, 3)),
        "DeepGridLSTM": (DeepGridLSTM(5, 4, 3, transform="tanh"), torch.randn(2, 5)),
        "HighwayNetwork": (HighwayNetwork(5, 4, 3, activation="tanh", transform_bias=-1.0),
                           torch.randn(2, 5)),
        "ImageGridLSTM": (ImageGridLSTM(2, 3, num_layers=2, corners="all", combine="concat"),
                          torch.randn(2, 4, 5, 2)),
        "SpectrogramGridLSTM": (SpectrogramGridLSTM(3, 4, num_layers=1, band_stride=2),
                                torch.randn(2, 6, 9)),
        "GridLSTMNd": (GridLSTMNd(2, 3, num_layers=1, num_axes=3, scans=[(), (0, 2)]),
                       torch.randn(2, 3, 3, 3, 2)),
    })
    return cases


_CHILD = textwrap.dedent("""
    import sys, torch, rnnlab
    from saved_checks import check
    with torch.serialization.safe_globals(rnnlab.serialization.safe_globals()):
        saved = torch.load(sys.argv[1])                    # weights_only=True: the default
    check(saved)
""")

# The checks, as a module that both processes import (written next to the saved file).
_CHECK = textwrap.dedent('''
    import torch

    def _run(module, x):
        """The output for x, the same way in both processes (dropout seeded)."""
        torch.manual_seed(1)
        with torch.no_grad():
            out = module(x)
        return out[0] if isinstance(out, tuple) else out

    def _facts(module):
        """What must survive saving besides the outputs."""
        return {"class": type(module).__name__,
                "flags": {n: p.requires_grad for n, p in module.named_parameters()},
                "modes": {n: m.training for n, m in module.named_modules()},
                "tensors": {n: (str(t.dtype), str(t.device), tuple(t.shape))
                            for n, t in [*module.named_parameters(), *module.named_buffers()]}}

    def check(saved):
        bad = []
        for name, case in saved.items():
            module = case["module"]
            try:
                assert _facts(module) == case["facts"], (_facts(module), case["facts"])
                torch.testing.assert_close(_run(module, case["x"]), case["y"])
            except Exception as error:
                bad.append(f"{name}: {type(error).__name__}: {str(error)[:300]}")
        print("\\n".join(bad) or f"ok {len(saved)}")
''')


def test_every_module_loads_weights_only_in_a_fresh_process(tmp_path):
    (tmp_path / "saved_checks.py").write_text(_CHECK)
    spec = importlib.util.spec_from_file_location("saved_checks", tmp_path / "saved_checks.py")
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    saved = {name: {"module": module, "x": x, "y": checks._run(module, x),
                    "facts": checks._facts(module)}
             for name, (module, x) in _cases(tmp_path).items()}
    torch.save(saved, tmp_path / "models.pt")
    result = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "models.pt")],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.stdout.strip() == f"ok {len(saved)}", result.stdout + result.stderr[-3000:]


def test_without_the_allowlist_torch_names_rebuild():
    buffer = io.BytesIO()
    torch.save(rnnlab.RNN("lstm", 3, 4), buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="rnnlab.serialization.rebuild"):
        torch.load(buffer)
    assert rebuild in safe_globals() and rnnlab.RNN in safe_globals()


_CLIENT = textwrap.dedent('''
    import torch
    from torch import nn
    import rnnlab

    class WordModel(nn.Module):
        """The user's model: embedding -> rnnlab.RNN -> linear, weights tied."""

        def __init__(self, vocab=20, size=6):
            super().__init__()
            self.embedding = nn.Embedding(vocab, size)
            self.rnn = rnnlab.RNN("lstm", size, size, num_layers=2, dropout=0.2)
            self.head = nn.Linear(size, vocab)
            self.head.weight = self.embedding.weight

        def forward(self, ids, state=None):
            output, state = self.rnn(self.embedding(ids), state)
            return self.head(output), state
''')

_CLIENT_CHILD = textwrap.dedent("""
    import sys, torch, rnnlab
    from torch import nn
    from client_model import WordModel
    allowed = [WordModel, nn.Embedding, nn.Linear, *rnnlab.serialization.safe_globals()]
    with torch.serialization.safe_globals(allowed):
        saved = torch.load(sys.argv[1])
    model = saved["model"]
    assert model.head.weight is model.embedding.weight
    assert not model.training and model.rnn.dropout == 0.2
    torch.testing.assert_close(model(saved["ids"])[0], saved["logits"])
    print("ok")
""")


def test_a_model_of_the_users_own_loads_with_its_class_and_rnnlabs(tmp_path):
    (tmp_path / "client_model.py").write_text(_CLIENT)
    spec = importlib.util.spec_from_file_location("client_model", tmp_path / "client_model.py")
    client = importlib.util.module_from_spec(spec)
    sys.modules["client_model"] = client  # pickled by reference: client_model.WordModel
    try:
        spec.loader.exec_module(client)
        torch.manual_seed(0)
        model = client.WordModel().eval()
        ids = torch.randint(20, (5, 2))
        torch.save({"model": model, "ids": ids, "logits": model(ids)[0]}, tmp_path / "lm.pt")
    finally:
        sys.modules.pop("client_model")
    result = subprocess.run([sys.executable, "-c", _CLIENT_CHILD, str(tmp_path / "lm.pt")],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.stdout.strip() == "ok", result.stderr[-3000:]


@pytest.mark.parametrize("make", [lambda: rnnlab.RNN("lstm", 3, 4, num_layers=2),
                                  lambda: rnnlab.RNN("gru_torch", 3, 4, bias=False),
                                  lambda: GridLSTM(3, 4, num_layers=2)])
def test_state_dict_saves_and_loads(make, tmp_path):
    torch.manual_seed(0)
    module, fresh = make(), make()
    x = torch.randn(5, 2, 3)
    torch.save(module.state_dict(), tmp_path / "w.pt")
    fresh.load_state_dict(torch.load(tmp_path / "w.pt"))
    torch.testing.assert_close(fresh(x)[0], module(x)[0])


def test_parameter_objects_are_shared_as_they_were():
    torch.manual_seed(0)
    rnn = rnnlab.RNN("lstm", 3, 4)
    loaded = pickle.loads(pickle.dumps({"rnn": rnn, "again": rnn, "R_i": rnn.cells.layer0.R_i}))
    assert loaded["again"] is loaded["rnn"]
    assert loaded["R_i"] is loaded["rnn"].cells.layer0.R_i
    twin = copy.deepcopy(rnn)
    with torch.no_grad():
        twin.cells.layer0.R_i.add_(1.0)
    assert not torch.equal(twin.cells.layer0.R_i, rnn.cells.layer0.R_i)


def _hook(module, inputs, output):
    return output


def test_a_module_with_hooks_pickles_the_ordinary_way():
    """Options and tensors would lose the hook, so such a module keeps ordinary pickling (and
    needs weights_only=False, its internals not being allowlisted)."""
    rnn = rnnlab.RNN("lstm", 3, 4)
    rnn.register_forward_hook(_hook)
    assert len(pickle.loads(pickle.dumps(rnn))._forward_hooks) == 1
    buffer = io.BytesIO()
    torch.save(rnn, buffer)
    buffer.seek(0)
    with torch.serialization.safe_globals(safe_globals()):
        with pytest.raises(pickle.UnpicklingError):
            torch.load(buffer)


def test_rebuild_refuses_what_it_cannot_make():
    with pytest.raises(TypeError, match="makes rnnlab modules"):
        rebuild(nn.Linear, {}, {}, {})
    rnn = rnnlab.RNN("lstm", 3, 4)
    _, (cls, config, tensors, modes) = rnn.__reduce_ex__(2)
    del tensors["cells.layer0.W_i"]
    with pytest.raises(ValueError, match=r"does not match .*cells.layer0.W_i"):
        rebuild(cls, config, tensors, modes)
    config["cells"]["layer0"]["graph"] = rnnlab.cells.graph("lstm", 3, 5).to_json()
    with pytest.raises(ValueError, match="does not match"):
        rebuild(cls, config, dict(rnn.named_parameters()), modes)
