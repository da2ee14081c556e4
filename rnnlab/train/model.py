"""The trainable model: input -> recurrent body -> task head.

::

    Tokens(V) ids (T, B)        --Embedding(V, E)-->  (T, B, E)
    Features/Binary (T, B, F)   --Linear(F, E)---->   (T, B, E)
                                (model.input_projection=false: read directly, E = F)
                                   dropout, Gaussian input noise (training only)
    body: rnnlab.RNN(cell, E, H, num_layers, ...) or rnnlab.GridLSTM(E, H, num_layers)
                                -> (T, B, D)  with D = body.output_size
                                   dropout
    head: Tokens(V) / Binary(K): Linear(D, V or K) at every step      -> (T, B, V or K)
          Classes(C): Linear(D, C) on each sequence's last valid step -> (B, C)

For ``Classes`` the head reads step ``lengths[b] - 1`` of sequence ``b``; with a bidirectional
body the backward half is read at step 0, where the backward pass has seen the whole sequence.
A bidirectional body gets padded batches as a PackedSequence, so padding never enters its
backward pass.

Input noise (Greff et al. 2016) is added to Features/Binary inputs before the projection; for
Tokens input, where ids cannot be perturbed, it is added to the embedding vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab.tasks.base import Binary, Classes, Features, Tokens
from rnnlab.train.config import ModelConfig


def grid_class():
    """rnnlab.GridLSTM (from rnnlab.grid while the top-level export is not there)."""
    import rnnlab

    cls = getattr(rnnlab, "GridLSTM", None)
    if cls is None:
        from rnnlab.grid import GridLSTM as cls
    return cls


def rnn_class():
    """rnnlab.RNN (from rnnlab.engine while the top-level export is not there)."""
    import rnnlab

    cls = getattr(rnnlab, "RNN", None)
    if cls is None:
        from rnnlab.engine import RNN as cls
    return cls


def build_body(config: ModelConfig, input_size: int) -> nn.Module:
    """The recurrent body named by ``config``: a stack of cells or a Grid LSTM."""
    if config.body == "grid":
        return grid_class()(
            input_size, config.hidden_size, config.num_layers, tied=config.tied
        )
    options = {}
    if config.forget_bias is not None:
        options["forget_bias"] = config.forget_bias
    if config.init is not None:
        options["init"] = config.init
    return rnn_class()(
        config.cell,
        input_size,
        config.hidden_size,
        num_layers=config.num_layers,
        bidirectional=config.bidirectional,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
        skip=config.skip,
        **options,
    )


class SequenceModel(nn.Module):
    """Embedding or projection, a recurrent body and a head for one task's spaces.

    Args:
        input_space: the task's ``input`` (Tokens, Features or Binary).
        output_space: the task's ``output`` (Tokens, Binary or Classes).
        config: the model section of the experiment config.

    ``forward(inputs, state=None, lengths=None, input_noise=0.0) -> (logits, state)``:
    inputs ``(T, B)`` ids or ``(T, B, F)`` floats; logits ``(T, B, V)``, ``(T, B, K)`` or
    ``(B, C)``; ``state`` is the body's state after the last step (carry it, detached, into the
    next batch of a stream).
    """

    def __init__(self, input_space, output_space, config: ModelConfig):
        super().__init__()
        self.config = config
        self.input_space = input_space
        self.output_space = output_space
        width = config.embedding_size or config.hidden_size
        if isinstance(input_space, Tokens):
            self.input = nn.Embedding(input_space.size, width)
        elif isinstance(input_space, (Features, Binary)) and not config.input_projection:
            # The cell reads the features directly (Chung et al. 2014's networks): no Linear,
            # no extra parameters; the body's input size is the feature size.
            self.input = nn.Identity()
            width = input_space.size
        elif isinstance(input_space, (Features, Binary)):
            self.input = nn.Linear(input_space.size, width)
        else:
            raise TypeError(f"input space must be Tokens, Features or Binary, got {input_space!r}")
        if not isinstance(output_space, (Tokens, Binary, Classes)):
            raise TypeError(f"output space must be Tokens, Binary or Classes, got {output_space!r}")
        self.body = build_body(config, width)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.body.output_size, output_space.size)
        if config.init_all is not None:  # one scheme over every parameter (Zaremba 2014)
            from rnnlab.train.init import initialize

            initialize(self, config.init_all, config.forget_bias)

    @property
    def classifies(self) -> bool:
        return isinstance(self.output_space, Classes)

    def embed(self, inputs: Tensor, input_noise: float = 0.0) -> Tensor:
        """(T, B) ids or (T, B, F) floats -> (T, B, E), with training noise and dropout."""
        noisy = self.training and input_noise > 0
        if isinstance(self.input, nn.Embedding):
            x = self.input(inputs)
            if noisy:
                x = x + input_noise * torch.randn_like(x)
        else:
            inputs = inputs.to(self.head.weight.dtype)
            if noisy:
                inputs = inputs + input_noise * torch.randn_like(inputs)
            x = self.input(inputs)
        return self.dropout(x)

    def forward(
        self,
        inputs: Tensor,
        state=None,
        lengths: Tensor | None = None,
        input_noise: float = 0.0,
    ):
        x = self.embed(inputs, input_noise)  # (T, B, E)
        steps = x.shape[0]
        packed = lengths is not None and self.config.bidirectional
        if packed:
            x = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        output, state = self.body(x, state)
        if isinstance(output, PackedSequence):
            output, _ = pad_packed_sequence(output, total_length=steps)
        output = self.dropout(output)  # (T, B, D)
        if self.classifies:
            output = self.last_step(output, lengths)  # (B, D)
        return self.head(output), state

    def last_step(self, output: Tensor, lengths: Tensor | None) -> Tensor:
        """(T, B, D) -> (B, D): each sequence's output at its last valid step.

        With a bidirectional body every layer's output is [forward; backward] halves of H; the
        backward halves are read at step 0, which has seen the whole sequence.
        """
        steps, batch = output.shape[:2]
        last = (
            torch.full((batch,), steps - 1, dtype=torch.long, device=output.device)
            if lengths is None
            else lengths.to(output.device).long() - 1
        )
        final = output[last, torch.arange(batch, device=output.device)]  # (B, D)
        if not self.config.bidirectional:
            return final
        hidden = self.config.hidden_size
        halves = final.view(batch, -1, 2, hidden).clone()  # (B, layers, direction, H)
        halves[:, :, 1] = output[0].view(batch, -1, 2, hidden)[:, :, 1]
        return halves.view(batch, -1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def describe(model: SequenceModel) -> str:
    """One line: body, sizes and parameter count, e.g. ``3-layer lstm stack, hidden 128, ...``."""
    c = model.config
    if c.body == "grid":
        what = f"{c.num_layers}-layer Grid LSTM{' (tied)' if c.tied else ''}"
    else:
        extras = [w for w, on in (("bidirectional", c.bidirectional), ("skip", c.skip)) if on]
        what = f"{c.num_layers}-layer {c.cell} stack"
        if extras:
            what += f" ({', '.join(extras)})"
    return f"{what}, hidden {c.hidden_size}: {count_parameters(model):,} parameters"
