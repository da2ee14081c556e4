"""The cell zoo and its registry: ``make(name, input_size, hidden_size, **options)``.

A new cell is a function in the cell language, registered once; it then runs everywhere a
built-in cell runs (``rnnlab.RNN``, the trainer, the command line)::

    from rnnlab.lang import cell, sigmoid, tanh

    @rnnlab.cells.register
    @cell("mgu", state=("h",))
    def mgu(x, state, p):             # minimal gated unit
        f = sigmoid(p.W_f @ x + p.R_f @ state.h + p.b_f)
        h_tilde = tanh(p.W_h @ x + p.R_h @ (f * state.h) + p.b_h)
        h = (1 - f) * state.h + f * h_tilde
        return h, (h,)
"""

from __future__ import annotations

import inspect
from pathlib import PurePath

from ..lang import CellDef, Graph
from ..lang.regularise import OPTIONS as REGULARISERS
from ..lang.regularise import regularise
from ..lang.trace import KNOWN_MODULE_OPTIONS
from .module import Cell
from .zoo import BUILTIN

REGISTRY: dict[str, CellDef] = {defn.name: defn for defn in BUILTIN}


def register(defn: CellDef, *, replace: bool = False) -> CellDef:
    """Add a cell definition to the registry (usable as a decorator); returns it."""
    if not isinstance(defn, CellDef):
        raise TypeError(
            "register() takes a CellDef: decorate the function with @rnnlab.lang.cell(name, "
            f"state=...) first; got {type(defn).__name__}"
        )
    if defn.name in REGISTRY and not replace:
        raise ValueError(f"a cell named {defn.name!r} is already registered; pass replace=True")
    REGISTRY[defn.name] = defn
    return defn


def names() -> list[str]:
    """The registered cell names, built-ins first."""
    return list(REGISTRY)


def get(name: str) -> CellDef:
    """The definition registered under ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; known cells: {', '.join(REGISTRY)}") from None


def doc(cell: str | CellDef) -> str:
    """A cell's description: the docstring of its function (first line: the one-line summary)."""
    defn = get(cell) if isinstance(cell, str) else cell
    return inspect.getdoc(defn.fn) or ""


def graph(cell: str | CellDef, input_size: int, hidden_size: int, **options) -> Graph:
    """The validated graph of a cell at the given sizes."""
    defn = get(cell) if isinstance(cell, str) else cell
    trace_options = {k: v for k, v in options.items() if k not in KNOWN_MODULE_OPTIONS}
    return defn.graph(input_size, hidden_size, **trace_options)


def make(cell: str | CellDef | Graph, input_size: int, hidden_size: int, **options) -> Cell:
    """Build a cell module.

    Args:
        cell: a registered name (see ``names()``), a CellDef, a Graph (re-sized if needed) or
            the path of a JSON cell file (ending ``.json``; see ``load``).
        input_size, hidden_size: sizes of x and of every state vector.
        options: ``init`` ("uniform" | "xavier" | "orthogonal"), ``forget_bias`` (cells with a
            forget gate; default 1.0), ``raw_input`` (MUT1/MUT2: "strict" | "project"), and the
            regularisers (probabilities; see ``rnnlab.lang.regularise`` and
            docs/regularisers.md): ``input_dropout``, ``recurrent_dropout``,
            ``output_dropout`` (locked dropout, one mask per sequence), ``weight_drop``
            (DropConnect of the recurrent matrices, one mask per call), ``zoneout`` (a
            probability or ``{field: p}``, a new mask every step) and ``layer_norm`` (True or
            ``"gate"``: layer-normalised pre-activations, each gate's own statistics, and
            memory cell; ``"joint"``: all gates' statistics together, as Ba et al.).
    """
    module_options = {k: v for k, v in options.items() if k in KNOWN_MODULE_OPTIONS}
    regularisers = {k: options.pop(k) for k in REGULARISERS if k in options}
    if is_cell_file(cell):
        cell = load(cell)
    if isinstance(cell, Graph):
        extra = set(options) - KNOWN_MODULE_OPTIONS
        if extra:
            raise ValueError(f"options {sorted(extra)} do not apply to a ready graph")
        g = cell.resized(input_size, hidden_size).validate()
    else:
        g = graph(cell, input_size, hidden_size, **options)
    return Cell(regularise(g, **regularisers), **module_options)


def is_cell_file(cell) -> bool:
    """True for a path (str or Path) naming a JSON cell file rather than a registered cell."""
    return isinstance(cell, (str, PurePath)) and str(cell).lower().endswith(".json")


def load(path) -> Graph:
    """The cell graph stored in a JSON file (``Graph.to_json``, ``rnnlab search export``).

    The file is checked (format, version, fields, then the graph: unknown op, cycle, size
    mismatch); a bad file raises one ``CellFileError`` line naming it. The graph works wherever
    a cell does: ``rnnlab.RNN(graph, ...)``, ``make(graph, ...)``, ``rnnlab train
    --cell=cell.json`` (it is re-sized to the model's input and hidden sizes).
    """
    from ..lang.serialize import load as load_file

    return load_file(path)


__all__ = ["REGISTRY", "Cell", "doc", "get", "graph", "is_cell_file", "load", "make", "names",
           "register"]
