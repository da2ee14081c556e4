"""Architecture identity (canonical form, hash), cell JSON files, degenerate cells."""

from __future__ import annotations

import json
import random

import pytest
import torch

import rnnlab
from rnnlab.lang import Graph, GraphError, Node
from rnnlab.lang.mutate import mutate
from rnnlab.lang.serialize import CellFileError
from rnnlab.search import architecture_hash, canonical_form, degenerate_reason, similarity


def renamed(graph: Graph, rng: random.Random) -> Graph:
    """The same graph with every node and parameter renamed and the node table shuffled."""
    names = {n: f"v{rng.randrange(10**9)}_{i}" for i, n in enumerate(graph.nodes)}
    refs = {n.ref: f"P{i}" for i, n in enumerate(graph.nodes.values()) if n.op != "state"}
    items = list(graph.nodes.items())
    rng.shuffle(items)
    nodes = {
        names[n]: Node(node.op, tuple(names[a] for a in node.args),
                       node.ref if node.op == "state" else refs.get(node.ref), node.value)
        for n, node in items
    }
    return graph.replace(nodes=nodes, writes={s: names[n] for s, n in graph.writes.items()},
                         output=names[graph.output], name="other")


def swapped(graph: Graph) -> Graph:
    """Every add and mul with its arguments reversed."""
    nodes = {n: Node(node.op, node.args[::-1] if node.op in ("add", "mul") else node.args,
                     node.ref, node.value) for n, node in graph.nodes.items()}
    return graph.replace(nodes=nodes)


@pytest.mark.parametrize("cell", ["lstm", "gru", "mut1", "peephole", "cifg"])
def test_hash_ignores_names_argument_order_and_sizes(cell):
    graph = rnnlab.cells.graph(cell, 8, 8)
    rng = random.Random(0)
    key = architecture_hash(graph)
    assert architecture_hash(renamed(graph, rng)) == key
    assert architecture_hash(swapped(graph)) == key
    assert architecture_hash(swapped(renamed(graph, rng))) == key
    assert architecture_hash(graph.resized(16, 16)) == key
    assert canonical_form(renamed(graph, rng)) == canonical_form(graph)


def test_hash_separates_different_cells_and_merges_equal_ones():
    keys = {n: architecture_hash(rnnlab.cells.graph(n, 8, 8)) for n in rnnlab.cells.names()}
    assert keys["np"] == keys["lstm"]  # Greff's NP is the LSTM without peepholes, equation for eq
    others = {k: v for k, v in keys.items() if k != "np"}
    assert len(set(others.values())) == len(others)


def test_hash_reassociation_identity_and_parameter_sharing():
    def cell(body):
        @rnnlab.lang.cell("t", state=("h",))
        def fn(x, state, p):
            h = body(x, state.h, p)
            return h, (h,)
        return rnnlab.cells.graph(fn, 4, 4)

    tanh, identity = rnnlab.lang.tanh, rnnlab.lang.identity
    a = cell(lambda x, h, p: tanh((p.W @ x + p.R @ h) + p.b))
    b = cell(lambda x, h, p: tanh(p.W @ x + (p.b + p.R @ h)))
    c = cell(lambda x, h, p: tanh(identity(p.W @ x) + p.R @ h + p.b))
    shared = cell(lambda x, h, p: tanh(p.W @ x + p.W @ h + p.b))
    assert architecture_hash(a) == architecture_hash(b) == architecture_hash(c)
    assert architecture_hash(shared) != architecture_hash(a)  # one matrix read twice
    minus = cell(lambda x, h, p: tanh(p.W @ x - p.R @ h + p.b))
    assert architecture_hash(minus) != architecture_hash(a)  # − is not commutative


def test_similarity_ranks_the_gru_family():
    g = {n: rnnlab.cells.graph(n, 8, 8) for n in ("gru", "mut3", "lstm")}
    assert similarity(g["gru"], renamed(g["gru"], random.Random(1))) == 1.0
    assert similarity(g["gru"], g["mut3"]) > similarity(g["gru"], g["lstm"]) > 0.0


def test_mutants_hash_stably():
    rng = random.Random(3)
    graph = rnnlab.cells.graph("gru", 8, 8)
    for _ in range(20):
        child = mutate(graph, rng)
        assert architecture_hash(child) == architecture_hash(renamed(child, rng))
        assert architecture_hash(Graph.from_json(child.to_json())) == architecture_hash(child)


# ---- JSON cells -----------------------------------------------------------------------------
@pytest.mark.parametrize("cell", rnnlab.cells.names())
def test_json_round_trip_is_exact(cell):
    try:
        graph = rnnlab.cells.graph(cell, 8, 8)
    except ValueError:  # a cell whose options need other sizes
        pytest.skip(f"{cell} needs other sizes")
    text = graph.to_json()
    back = Graph.from_json(text)
    assert back == graph
    assert list(back.nodes) == list(graph.nodes)
    assert back.to_json() == text
    assert str(back) == str(graph)


def _gru_data() -> dict:
    return json.loads(rnnlab.cells.graph("gru", 8, 8).to_json())


def _node(data, name):
    return next(n for n in data["nodes"] if n["name"] == name)


def _bad_files():
    cycle = _gru_data()
    first = next(n for n in cycle["nodes"] if n["op"] == "sigmoid")
    reader = next(n for n in cycle["nodes"] if first["name"] in n.get("args", []))
    first["args"] = [reader["name"]]
    mismatch = _gru_data()
    mismatch["input_size"] = 5  # matrices follow x's size, but a raw x + h cannot
    mismatch["nodes"].append({"name": "q", "op": "add", "args": ["x", "h"]})
    mismatch["writes"] = {"h": "q"}
    mismatch["output"] = "q"
    unknown = _gru_data()
    _node(unknown, "h'")["op"] = "softplus"
    version = _gru_data()
    version["version"] = 99
    return {
        "malformed": ("{\"format\": \"rnnlab-cell\", ", "not valid JSON"),
        "cycle": (json.dumps(cycle), "cycle"),
        "size mismatch": (json.dumps(mismatch), "combines sizes 5 and 8"),
        "unknown op": (json.dumps(unknown), "unknown op 'softplus'"),
        "wrong version": (json.dumps(version), "version 99 is not supported"),
        "not a cell": (json.dumps({"a": 1}), "'format' is None"),
    }


@pytest.mark.parametrize("case", list(_bad_files()))
def test_bad_cell_files_give_one_clear_line(case, tmp_path):
    text, expected = _bad_files()[case]
    path = tmp_path / "cell.json"
    path.write_text(text)
    with pytest.raises(CellFileError) as error:
        rnnlab.cells.load(path)
    message = str(error.value)
    assert expected in message and str(path) in message and "\n" not in message
    with pytest.raises(GraphError):
        rnnlab.RNN(str(path), 8, 8)


def test_load_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="search export"):
        rnnlab.cells.load(tmp_path / "none.json")


def test_cell_file_works_as_rnn_make_and_train_cell(tmp_path):
    path = tmp_path / "mut3.json"
    rnnlab.lang.serialize.save(rnnlab.cells.graph("mut3", 8, 8), path)
    graph = rnnlab.cells.load(path)
    assert str(graph) == str(rnnlab.cells.graph("mut3", 8, 8))
    rnn = rnnlab.RNN(str(path), 6, 10)  # re-sized to the RNN's sizes
    out, _ = rnn(torch.randn(3, 2, 6))
    assert out.shape == (3, 2, 10)
    assert rnnlab.cells.make(path, 6, 10).hidden_size == 10


# ---- degenerate cells ---------------------------------------------------------------------------
def _cell(body, state=("h",)):
    @rnnlab.lang.cell("t", state=state)
    def fn(x, s, p):
        h = body(x, s.h, p)
        return h, (h,)
    return rnnlab.cells.graph(fn, 6, 6)


def test_degenerate_cells_are_rejected():
    sig, tanh, scale = rnnlab.lang.sigmoid, rnnlab.lang.tanh, rnnlab.lang.scale
    assert "input" in degenerate_reason(_cell(lambda x, h, p: tanh(p.R @ h + p.b)))
    assert "state" in degenerate_reason(_cell(lambda x, h, p: sig(p.W @ x + p.b)))
    # edges say x reaches h', but Linear(0, ·) cuts it
    assert "input" in degenerate_reason(_cell(lambda x, h, p: tanh(scale(0.0, p.W @ x) + p.R @ h)))
    # a − a is zero: h' depends on neither (a structural reading would miss this)
    assert degenerate_reason(_cell(lambda x, h, p: (p.W @ x + h) - (p.W @ x + h))) is not None


@pytest.mark.parametrize("cell", ["gru", "lstm", "mut1", "mut2", "mut3", "rnn"])
def test_real_cells_are_not_degenerate(cell):
    assert degenerate_reason(rnnlab.cells.graph(cell, 8, 8)) is None
