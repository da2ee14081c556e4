"""The cell language: recurrent cells as small expression graphs (see graph.py, trace.py)."""

from .graph import Graph, GraphError, Node
from .ops import ACTIVATIONS, BINARY_OPS, OPS
from .trace import (
    CellDef,
    as_hidden,
    cell,
    identity,
    relu,
    scale,
    sigmoid,
    state_type,
    tanh,
    trace,
)

__all__ = [
    "ACTIVATIONS", "BINARY_OPS", "OPS", "CellDef", "Graph", "GraphError", "Node", "as_hidden",
    "cell", "identity", "relu", "scale", "sigmoid", "state_type", "tanh", "trace",
]
