"""The time recurrence of one layer of a sequence grid, for an LSTM time transform, as one op.

With the parts of the time dimension's ``W H + b`` that read the depth vectors computed
beforehand for all steps (``P``, see ``layerwise.py``), what is left along time is

    z_t          = P_t + h_{t-1} R                                         (B, 4d)
    g_u, g_f, g_o = σ(z_t^u), σ(z_t^f), σ(z_t^o);  g_c = tanh(z_t^c)
    m_t          = g_f ⊙ m_{t-1} + g_u ⊙ g_c
    h_t          = tanh(g_o ⊙ m_t)   ("lstm", the paper's)  or  g_o ⊙ tanh(m_t)   ("lstm_standard")

and, past a sequence's length, ``(h_t, m_t) = (h_{t-1}, m_{t-1})`` (the state freezes).

``LSTMRecurrence`` runs this loop as a single autograd op: the forward keeps the gates and the
states, the backward runs the loop in reverse with the derivative of each step written out
(the gate factors that do not depend on the incoming gradient computed for all steps at
once), and then computes ``dR`` as ONE GEMM over all T · B rows (``dR = Σ_t h_{t-1}ᵀ dz_t``)
and returns ``dP = dz`` whole, so autograd turns the hoisted GEMM's gradients into one GEMM
each as well. Under plain autograd the same loop costs about twice the time: a graph node per
elementwise op per step, and one small weight-gradient GEMM per step.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class LSTMRecurrence(torch.autograd.Function):
    """``(Hs, h_T, m_T, Hn) = LSTMRecurrence.apply(x, W, b, R, h, m, valid, standard)``.

    Args:
        x: (T, B, n) what the time dimension reads besides ``h_{t-1}``: ``P = x W + b``.
        W: (n, 4d) and b: (4d,) the weights that read x (input-major; gates u, f, o, c).
        R: (d, 4d) the weights that read ``h_{t-1}``.
        h, m: (B, d) the state entering t = 0.
        valid: None, or (T, B, 1) booleans: which sequences run at step t (else they freeze).
        standard: False for the paper's ``h = tanh(g_o ⊙ m)``, True for ``g_o ⊙ tanh(m)``.

    Returns:
        Hs (T + 1, B, d): the hidden state entering each step, then the final one; h_T, m_T
        (B, d): the final state; Hn (T, B, d): the hidden vector each step computed, before
        freezing (an empty tensor without ``valid``: then it is ``Hs[1:]``).
    """

    @staticmethod
    def forward(ctx, x, W, b, R, h, m, valid, standard):
        steps, batch, _ = x.shape
        d = R.shape[0]
        # z_t for all steps but the h_{t-1} R part; turned into the gates in place, step by step
        G = torch.addmm(b, x.reshape(steps * batch, -1), W).view(steps, batch, 4 * d)
        R = R.contiguous()  # read every step; a view with a wider row stride is slower
        Hs, Ms = G.new_empty(steps + 1, batch, d), G.new_empty(steps + 1, batch, d)
        Hs[0], Ms[0] = h, m
        if valid is None:  # nothing freezes: the computed state is the carried one
            Hn, Mn = Hs[1:], Ms[1:]
        else:
            Hn, Mn = G.new_empty(steps, batch, d), G.new_empty(steps, batch, d)
        u, f, o, c = (part.unbind(0) for part in G.split(d, dim=-1))
        z, sigmoid = G.unbind(0), G[..., : 3 * d].unbind(0)
        H, M, H_new, M_new = Hs.unbind(0), Ms.unbind(0), Hn.unbind(0), Mn.unbind(0)
        for t in range(steps):
            z[t].addmm_(H[t], R)
            sigmoid[t].sigmoid_()
            c[t].tanh_()
            torch.mul(f[t], M[t], out=M_new[t]).addcmul_(u[t], c[t])
            if standard:
                torch.tanh(M_new[t], out=H_new[t]).mul_(o[t])
            else:
                torch.mul(o[t], M_new[t], out=H_new[t]).tanh_()
            if valid is not None:
                torch.where(valid[t], H_new[t], H[t], out=H[t + 1])
                torch.where(valid[t], M_new[t], M[t], out=M[t + 1])
        ctx.standard = standard
        ctx.set_materialize_grads(False)  # unused outputs give None: no work for them
        ctx.save_for_backward(x, W, R, G, Hs, Ms, valid, *(() if valid is None else (Hn, Mn)))
        empty = G.new_empty(0)
        return Hs, Hs[-1].clone(), Ms[-1].clone(), empty if valid is None else Hn

    @staticmethod
    @once_differentiable
    def backward(ctx, dHs, dh_final, dm_final, dHn):
        x, W, R, G, Hs, Ms, valid, *computed = ctx.saved_tensors
        Hn, Mn = computed if computed else (Hs[1:], Ms[1:])
        if dHn is not None and not dHn.numel():  # the empty placeholder without ``valid``
            dHn = None
        steps, batch, width = G.shape
        d = width // 4
        u, f, o, c = G.split(d, dim=-1)
        # Factors of each step's derivative that do not depend on the incoming gradient, for
        # all steps at once (in place where possible: big temporaries cost more than the
        # arithmetic): with dh the gradient of h_t and dm the total one of m_t,
        # dm += dh ⊙ k_m, dz_o = dh ⊙ k_o, dz_{u,f} = dm ⊙ k_uf, dz_c = dm ⊙ k_c.
        if ctx.standard:  # h = g_o ⊙ tanh(m)
            k_o = torch.tanh(Mn)
            k_m = k_o.square().neg_().add_(1).mul_(o)
        else:  # h = tanh(g_o ⊙ m)
            k_o = Hn.square().neg_().add_(1)
            k_m = k_o * o
            k_o.mul_(Mn)
        k_o.mul_(o - o.square())
        k_uf = G.new_empty(steps, batch, 2, d)
        k_u, k_f = k_uf.unbind(-2)
        torch.mul(u, u, out=k_u).neg_().add_(u).mul_(c)  # σ'(z_u) g_c
        torch.mul(f, f, out=k_f).neg_().add_(f).mul_(Ms[:-1])  # σ'(z_f) m_{t-1}
        k_c = c.square().neg_().add_(1).mul_(u)  # tanh'(z_c) g_u
        # dH: the gradient of each h entering a step, accumulated in place
        dH = Hs.new_zeros(Hs.shape) if dHs is None else dHs.clone()
        if dh_final is not None:
            dH[-1] += dh_final
        dm = Ms.new_zeros(batch, d) if dm_final is None else dm_final
        dZ = G.new_empty(steps, batch, width)
        dz, dz_uf = dZ.unbind(0), dZ[..., : 2 * d].unflatten(-1, (2, d)).unbind(0)
        dz_o, dz_c = dZ[..., 2 * d : 3 * d].unbind(0), dZ[..., 3 * d :].unbind(0)
        dh, R_T = dH[-1], R.T.contiguous()  # (4d, d): a transposed view makes a slow GEMM
        for t in reversed(range(steps)):
            if valid is not None:  # a frozen sequence passes its gradient straight through
                keep_h, keep_m = torch.where(valid[t], 0, dh), torch.where(valid[t], 0, dm)
                dh, dm = torch.where(valid[t], dh, 0), torch.where(valid[t], dm, 0)
            if dHn is not None:
                dh = dh + dHn[t]
            dm = torch.addcmul(dm, dh, k_m[t])
            torch.mul(dh, k_o[t], out=dz_o[t])
            torch.mul(dm.unsqueeze(-2), k_uf[t], out=dz_uf[t])
            torch.mul(dm, k_c[t], out=dz_c[t])
            dm = dm * f[t]
            dh = dH[t].addmm_(dz[t], R_T)
            if valid is not None:
                dh, dm = dh + keep_h, dm + keep_m
        # The weight gradients, each ONE GEMM over all T · B rows.
        rows = dZ.view(-1, width)
        dx = dW = db = dR = None
        if ctx.needs_input_grad[0]:
            dx = (rows @ W.T.contiguous()).view(x.shape)
        if ctx.needs_input_grad[1]:
            dW = x.reshape(rows.shape[0], -1).T @ rows
        if ctx.needs_input_grad[2]:
            db = rows.sum(0)
        if ctx.needs_input_grad[3]:
            dR = Hs[:-1].reshape(-1, d).T @ rows
        return dx, dW, db, dR, dh, dm, None, None
