"""Cell graphs as JSON files: ``Graph.to_json`` / ``Graph.from_json`` and ``rnnlab.cells.load``.

A cell file is one JSON object::

    {"format": "rnnlab-cell", "version": 1, "name": "gru",
     "input_size": 64, "hidden_size": 64,
     "states": ["h"], "writes": {"h": "h'"}, "output": "h'",
     "nodes": [{"name": "x", "op": "input"},
               {"name": "_0", "op": "linear", "args": ["x"], "ref": "W_xr"}, ...]}

A regularised cell (``rnnlab.lang.regularise``) has one more key, ``"masks"``: mask name ->
``{"kind": "state" | "input" | "weight" | "step", "target": …, "p": …}`` (left out when
there are none).

Nodes are a list, in the graph's own order, so ``from_json(to_json(g)) == g`` and
``to_json(from_json(text)) == text`` for any text ``to_json`` wrote (the round trip is exact).
Loading checks the format and version, every field's type, and then the graph itself
(``Graph.validate``: unknown ops, cycles, size mismatches, dead parameters); any problem is one
:class:`CellFileError` line that names the file and says what was expected.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .graph import Graph, GraphError, Mask, Node

FORMAT = "rnnlab-cell"
VERSION = 1
_NODE_KEYS = ("name", "op", "args", "ref", "value")


class CellFileError(GraphError):
    """A cell file (or JSON text) that is not a valid cell."""


def to_dict(graph: Graph) -> dict:
    """The graph as plain JSON-ready data (see the module docstring)."""
    nodes = []
    for name, node in graph.nodes.items():
        entry: dict = {"name": name, "op": node.op}
        if node.args:
            entry["args"] = list(node.args)
        if node.ref is not None:
            entry["ref"] = node.ref
        if node.value is not None:
            entry["value"] = node.value
        nodes.append(entry)
    data = {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "input_size": graph.input_size,
        "hidden_size": graph.hidden_size,
        "states": list(graph.states),
        "writes": dict(graph.writes),
        "output": graph.output,
        "nodes": nodes,
    }
    if graph.masks:
        data["masks"] = {name: {"kind": m.kind, "target": m.target, "p": m.p}
                         for name, m in graph.masks.items()}
    return data


def to_json(graph: Graph, indent: int | None = 1) -> str:
    """The graph as JSON text (deterministic: the same graph always gives the same text)."""
    return json.dumps(to_dict(graph), indent=indent, ensure_ascii=False)


def from_dict(data, where: str = "cell JSON") -> Graph:
    """A validated Graph from :func:`to_dict`'s data; CellFileError saying what is wrong."""

    def bad(what: str) -> CellFileError:
        return CellFileError(
            f"{where}: {what}; expected a cell written by Graph.to_json or `rnnlab search export`"
        )

    if not isinstance(data, dict):
        raise bad(f"the top level is a JSON {type(data).__name__}, not an object")
    if data.get("format") != FORMAT:
        raise bad(f"'format' is {data.get('format')!r}, not {FORMAT!r}")
    version = data.get("version")
    if version != VERSION:
        raise CellFileError(
            f"{where}: cell format version {version!r} is not supported; this rnnlab reads "
            f"version {VERSION} (re-export the cell with this version of rnnlab)"
        )
    missing = [k for k in ("name", "input_size", "hidden_size", "states", "writes", "output",
                           "nodes") if k not in data]
    if missing:
        raise bad(f"missing field(s) {', '.join(missing)}")

    def text(value, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise bad(f"{field} must be a non-empty string, got {value!r}")
        return value

    for field in ("input_size", "hidden_size"):
        value = data[field]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise bad(f"{field} must be a positive integer, got {value!r}")
    if not isinstance(data["states"], list) or not data["states"]:
        raise bad(f"states must be a non-empty list of names, got {data['states']!r}")
    states = tuple(text(s, "each state") for s in data["states"])
    if not isinstance(data["writes"], dict):
        raise bad(f"writes must be an object state -> node, got {data['writes']!r}")
    writes = {text(s, "writes key"): text(n, f"writes[{s!r}]") for s, n in data["writes"].items()}
    if not isinstance(data["nodes"], list):
        raise bad(f"nodes must be a list, got {type(data['nodes']).__name__}")
    nodes: dict[str, Node] = {}
    for k, entry in enumerate(data["nodes"]):
        if not isinstance(entry, dict):
            raise bad(f"nodes[{k}] must be an object, got {entry!r}")
        unknown = set(entry) - set(_NODE_KEYS)
        if unknown:
            raise bad(f"nodes[{k}] has unknown key(s) {sorted(unknown)}; keys: {_NODE_KEYS}")
        name = text(entry.get("name"), f"nodes[{k}].name")
        if name in nodes:
            raise bad(f"node name {name!r} appears twice")
        args = entry.get("args", [])
        if not isinstance(args, list):
            raise bad(f"node {name!r}: args must be a list of node names, got {args!r}")
        ref = entry.get("ref")
        if ref is not None:
            text(ref, f"node {name!r}: ref")
        value = entry.get("value")
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise bad(f"node {name!r}: value must be a finite number, got {value!r}")
        nodes[name] = Node(
            op=text(entry.get("op"), f"node {name!r}: op"),
            args=tuple(text(a, f"node {name!r}: argument") for a in args),
            ref=ref,
            value=None if value is None else float(value),
        )
    masks_data = data.get("masks", {})
    if not isinstance(masks_data, dict):
        raise bad(f"masks must be an object name -> mask, got {masks_data!r}")
    masks: dict[str, Mask] = {}
    for name, entry in masks_data.items():
        if not isinstance(entry, dict) or set(entry) != {"kind", "target", "p"}:
            raise bad(f"mask {name!r} must be an object with keys kind, target, p; got {entry!r}")
        p = entry["p"]
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise bad(f"mask {name!r}: p must be a number, got {p!r}")
        masks[text(name, "mask name")] = Mask(text(entry["kind"], f"mask {name!r}: kind"),
                                              text(entry["target"], f"mask {name!r}: target"),
                                              float(p))
    graph = Graph(
        nodes=nodes,
        states=states,
        writes=writes,
        output=text(data["output"], "output"),
        input_size=data["input_size"],
        hidden_size=data["hidden_size"],
        name=text(data["name"], "name"),
        masks=masks,
    )
    try:
        return graph.validate()
    except CellFileError:
        raise
    except GraphError as error:
        raise CellFileError(f"{where}: invalid cell: {error}") from None


def from_json(text: str, where: str = "cell JSON") -> Graph:
    """A validated Graph from :func:`to_json` text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CellFileError(
            f"{where}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "expected a cell written by Graph.to_json or `rnnlab search export`"
        ) from None
    return from_dict(data, where)


def load(path) -> Graph:
    """The cell graph in the JSON file ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no cell file {str(path)!r}; write one with `rnnlab search export ID --out "
            f"{path.name}` or Graph.to_json"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise CellFileError(f"{path}: cannot read the cell file ({error})") from None
    return from_json(text, str(path))


def save(graph: Graph, path) -> Path:
    """Write ``graph`` to ``path`` as JSON (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(graph) + "\n", encoding="utf-8")
    return path
