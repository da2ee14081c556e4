"""A node-by-node interpreter of cell graphs for tests: it shares nothing with the compiler.

It reads ``Graph.nodes`` in dependency order and computes every node with its own torch calls
(no op table, no plan, no fused weights), one step at a time under autograd, so a compiler that
drops, merges or reorders terms wrongly disagrees with it.
"""

from __future__ import annotations

import torch


def _node_value(graph, name, vals, x_t, state, params, masks_t):
    node = graph.nodes[name]
    op = node.op
    if op == "input":
        return x_t
    if op == "mask":  # a per-step mask: its block of this step's masks
        k = graph.step_masks.index(node.ref)
        return masks_t[:, k * graph.hidden_size:(k + 1) * graph.hidden_size]
    if op == "state":
        return state[graph.states.index(node.ref)]
    if op == "param":
        return params[node.ref]
    if op == "const":
        return torch.tensor(float(node.value), dtype=x_t.dtype)
    if op == "pnorm":  # block k of the layer normalisation of all arguments side by side
        parts = torch.broadcast_tensors(*(vals[a] for a in node.args))
        n, k, H = len(parts), int(node.value), parts[0].shape[-1]
        mean = sum(p.sum(-1, keepdim=True) for p in parts) / (n * H)
        var = sum(((p - mean) ** 2).sum(-1, keepdim=True) for p in parts) / (n * H)
        return (parts[k] - mean) / torch.sqrt(var + 1e-5)
    a = vals[node.args[0]]
    if op == "linear":  # W (H, n) applied to a (…, n)
        return torch.einsum("hn,...n->...h", params[node.ref], a)
    if op == "tanh":
        return torch.tanh(a)
    if op == "sigmoid":
        return 1 / (1 + torch.exp(-a))
    if op == "relu":
        return torch.where(a > 0, a, torch.zeros_like(a))
    if op == "identity":
        return a
    if op == "scale":
        return a * float(node.value)
    if op == "norm":  # layer normalisation over the row, biased variance, eps 1e-5
        centred = a - a.sum(-1, keepdim=True) / a.shape[-1]
        return centred / torch.sqrt((centred * centred).sum(-1, keepdim=True) / a.shape[-1]
                                    + 1e-5)
    if op == "mean":  # the row's mean on every unit
        return (a.sum(-1, keepdim=True) / a.shape[-1]).expand(a.shape)
    if op == "rsqrt":
        return 1 / torch.sqrt(a)
    b = vals[node.args[1]]
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    raise AssertionError(f"the test interpreter does not know op {op}")


def interpret(graph, params: dict, x: torch.Tensor, state: tuple, masks=None):
    """Run ``graph`` over x (T, B, I) from ``state``; returns (outputs (T, B, H), final state).
    ``masks``: the per-step masks (T, B, H · len(graph.step_masks)) of a zoned-out cell."""
    T, B = x.shape[:2]
    H = graph.hidden_size
    outputs = []
    for t in range(T):
        vals: dict = {}
        for name in graph.order:
            vals[name] = _node_value(graph, name, vals, x[t], state, params,
                                     None if masks is None else masks[t])
        outputs.append(vals[graph.output].expand(B, H))
        state = tuple(vals[graph.writes[s]].expand(B, H) for s in graph.states)
    return torch.stack(outputs), state


def assert_same_values_and_gradients(out: torch.Tensor, expected: torch.Tensor, wrt: list):
    """``out`` equals ``expected`` (the interpreter's), and so do the gradients of the sum of
    their squares with respect to ``wrt``; a tensor that one side does not use must get no
    gradient or zeros from the other."""
    torch.testing.assert_close(out, expected)
    g = torch.autograd.grad((out ** 2).sum(), wrt, allow_unused=True)
    g_ref = torch.autograd.grad((expected ** 2).sum(), wrt, allow_unused=True)
    for a, b in zip(g, g_ref):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            torch.testing.assert_close(a, b)
