"""The Grid LSTM equations written out with plain loops, independently of rnnlab.grid's code.

Only the parameters are read from the modules (``block.dimension_parameters(k, copy)`` gives
``W_k`` (out, N·d) and ``b_k``; ``projection.weight`` gives ``I``); every product, gate and loop
is written here from Kalchbrenner, Danihelka & Graves (2016), eqs. 3–5.
"""

from __future__ import annotations

import itertools

import torch


def lstm(H, m, W, b, standard=False):
    """One LSTM transform: gates in the order u, f, o, c."""
    z = H @ W.T + b
    u, f, o, c = z.split(m.shape[-1], dim=-1)
    m_new = torch.sigmoid(f) * m + torch.sigmoid(u) * torch.tanh(c)
    if standard:
        return torch.sigmoid(o) * torch.tanh(m_new), m_new
    return torch.tanh(torch.sigmoid(o) * m_new), m_new


ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda z: z}


def transform(name, H, m, W, b):
    if name == "lstm":
        return lstm(H, m, W, b)
    if name == "lstm_standard":
        return lstm(H, m, W, b, standard=True)
    return ACTIVATIONS[name](H @ W.T + b), m


def block(module, names, hs, ms, copy=0):
    """One N-D block: ``hs``, ``ms`` lists of N (B, d) tensors → new lists.

    The non-priority dimensions all read the incoming H; then each priority dimension, in
    order, reads H with the new hidden vectors of every dimension computed so far.
    """
    hs, ms = list(hs), list(ms)
    H = torch.cat(hs, dim=-1)
    first = [k for k in range(len(hs)) if k not in module.priority]
    new = {}
    for k in first:
        new[k] = transform(names[k], H, ms[k], *module.dimension_parameters(k, copy))
    for k in first:
        hs[k], ms[k] = new[k]
    for k in module.priority:
        H = torch.cat(hs, dim=-1)
        hs[k], ms[k] = transform(names[k], H, ms[k], *module.dimension_parameters(k, copy))
    return hs, ms


def grid(scan, names, x, state_h=None, state_m=None, lengths=None):
    """A grid of blocks over K input axes and depth, block by block.

    ``x`` (S_1, …, S_K, B, I); ``state_h``, ``state_m`` (L, S_2, …, S_K, B, d) entering along
    axis 1. Returns the top layer's depth hidden vectors (S_1, …, S_K, B, d) and the final
    dimension-0 vectors, after each batch element's last valid position along axis 1.
    """
    K, L, d = scan.num_axes, scan.num_layers, scan.hidden_size
    sizes, batch = x.shape[:K], x.shape[K]
    zeros = x.new_zeros(batch, d)
    projected = x @ scan.projection.weight.T
    out = {}  # (k, p, l) → (h, m) leaving block (p, l) along dimension k
    final = {}
    for p in itertools.product(*map(range, sizes)):
        h_depth, m_depth = projected[p], zeros
        for l in range(L):
            hs, ms = [], []
            for k in range(K):
                if p[k] > 0:
                    before = (*p[:k], p[k] - 1, *p[k + 1 :])
                    h, m = out[(k, before, l)]
                elif k == 0 and state_h is not None:
                    h, m = state_h[(l, *p[1:])], state_m[(l, *p[1:])]
                else:
                    h, m = zeros, zeros
                hs.append(h)
                ms.append(m)
            hs.append(h_depth)
            ms.append(m_depth)
            hs, ms = block(scan.block, names, hs, ms, copy=0 if scan.tied else l)
            for k in range(K):
                out[(k, p, l)] = (hs[k], ms[k])
            h_depth, m_depth = hs[K], ms[K]
            for b in range(batch):
                last = sizes[0] - 1 if lengths is None else int(lengths[b]) - 1
                if p[0] == last:
                    final[(l, *p[1:], b)] = (hs[0][b], ms[0][b])
        out[("top", p)] = h_depth
    outputs = torch.stack([out[("top", p)] for p in itertools.product(*map(range, sizes))])
    outputs = outputs.view(*sizes, batch, d)
    keys = list(itertools.product(range(L), *map(range, sizes[1:]), range(batch)))
    h = torch.stack([final[key][0] for key in keys]).view(L, *sizes[1:], batch, d)
    m = torch.stack([final[key][1] for key in keys]).view(L, *sizes[1:], batch, d)
    return outputs, h, m
