"""The trainable model: input -> recurrent body -> task head.

::

    Tokens(V) ids (T, B)        --Embedding(V, E)-->  (T, B, E)
    Features/Binary (T, B, F)   --Linear(F, E)---->   (T, B, E)
                                (model.input_projection=false: read directly, E = F)
                                   dropout, Gaussian input noise (training only)
    body: an entry of rnnlab.train.bodies.BODIES (stack: rnnlab.RNN, grid: rnnlab.GridLSTM,
          grid_deep, grid_image, grid_spectrogram)
                                -> (T, B, D)  with D = body.output_size (per-sequence bodies:
                                   (B, D))
                                   dropout
    head: Tokens(V) / Binary(K) / Labels(V): Linear(D, V or K) at every step -> (T, B, V or K)
          Classes(C): Linear(D, C) on each sequence's last valid step -> (B, C)

For ``Classes`` the head reads step ``lengths[b] - 1`` of sequence ``b``; with a bidirectional
stack the backward half is read at step 0, where the backward pass has seen the whole sequence.
A bidirectional stack gets padded batches as a PackedSequence, so padding never enters its
backward pass. Bodies that read the task's features directly (``grid_image``,
``grid_spectrogram``) get them without an embedding or projection.

A body that reads the future (a bidirectional stack, an image grid) is refused on a causal task
(``Task.causal``: the target at t is a prediction from inputs up to t), where it would see the
answer.

Input noise (Greff et al. 2016) is added to Features/Binary inputs before the projection; for
Tokens input, where ids cannot be perturbed, it is added to the embedding vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.tasks.base import Binary, Classes, Features, Labels, Tokens
from rnnlab.train import bodies
from rnnlab.train.config import ModelConfig


class SequenceModel(nn.Module):
    """Embedding or projection, a recurrent body and a head for one task's spaces.

    Args:
        input_space: the task's ``input`` (Tokens, Features or Binary).
        output_space: the task's ``output`` (Tokens, Binary or Classes).
        config: the model section of the experiment config (the chosen body's settings class).
        causal: the task's targets are next-step predictions (``Task.causal``): a body that reads
            later inputs is refused. None: per-step outputs (Tokens, Binary) are taken as causal,
            per-sequence ones (Classes) as not.

    ``forward(inputs, state=None, lengths=None, input_noise=0.0) -> (logits, state)``:
    inputs ``(T, B)`` ids or ``(T, B, F)`` floats; logits ``(T, B, V)``, ``(T, B, K)`` or
    ``(B, C)``; ``state`` is the body's state after the last step (carry it, detached, into the
    next batch of a stream).
    """

    def __init__(
        self,
        input_space,
        output_space,
        config: ModelConfig,
        *,
        causal: bool | None = None,
        task_name: str = "this task",
        pairs: bool = False,
    ):
        super().__init__()
        self.config = config
        self.input_space = input_space
        self.output_space = output_space
        if not isinstance(input_space, (Tokens, Features, Binary)):
            raise TypeError(f"input space must be Tokens, Features or Binary, got {input_space!r}")
        if not isinstance(output_space, (Tokens, Binary, Classes, Labels)):
            raise TypeError(
                f"output space must be Tokens, Binary, Classes or Labels, got {output_space!r}"
            )
        if causal is None:
            causal = not isinstance(output_space, Classes)
        self.causal = causal
        bodies.check_settings(config)
        bodies.check_task(config, input_space, output_space, causal, task_name, pairs)
        entry = bodies.BODIES[config.body]
        self.per_sequence = entry.per_sequence
        self.token_input = entry.token_input
        width = config.embedding_size or config.hidden_size
        if entry.token_input:  # an encoder-decoder embeds the ids itself
            self.input = nn.Identity()
            width = input_space.size
        elif entry.raw_input or (not isinstance(input_space, Tokens)
                                 and not config.input_projection):
            # The body reads the features directly (a raw-input body; or model.input_projection
            # = false, Chung et al. 2014's networks): no Linear, no extra parameters.
            self.input = nn.Identity()
            width = input_space.size
        elif isinstance(input_space, Tokens):
            self.input = nn.Embedding(input_space.size, width)
        else:
            self.input = nn.Linear(input_space.size, width)
        self.body = bodies.build(config, width)
        self.bidirectional = getattr(self.body, "bidirectional", False)
        backward = getattr(self.body, "backward_in_time", ())
        if backward and self.classifies and not self.per_sequence:
            raise bodies.BodyError(
                f"a classifier reads the last frame, where a scan from {', '.join(backward)} "
                f"(backwards in time) has seen one frame; with body={config.body} use "
                "model.corners=top_left or top_right"
            )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.body.output_size, output_space.size)
        if config.init_all is not None:  # one scheme over every parameter (Zaremba 2014)
            from rnnlab.train.init import initialize

            # forget_bias is a stack setting; the other bodies keep each cell's own offset
            initialize(self, config.init_all, getattr(config, "forget_bias", None))

    @property
    def classifies(self) -> bool:
        return isinstance(self.output_space, Classes)

    def embed(self, inputs: Tensor, input_noise: float = 0.0) -> Tensor:
        """(T, B) ids or (T, B, F) floats -> (T, B, E), with training noise and dropout; ids
        unchanged for a body that embeds them itself."""
        if self.token_input:
            return inputs
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
        output, state = self.body(x, state, lengths)
        output = self.dropout(output)  # (T, B, D), or (B, D) from a per-sequence body
        if self.classifies and not self.per_sequence:
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
        if not self.bidirectional:
            return final
        hidden = self.config.hidden_size
        halves = final.view(batch, -1, 2, hidden).clone()  # (B, layers, direction, H)
        halves[:, :, 1] = output[0].view(batch, -1, 2, hidden)[:, :, 1]
        return halves.view(batch, -1)


def model_for(task, config: ModelConfig) -> SequenceModel:
    """The model for ``task`` (its spaces and ``causal`` declaration) as ``config`` says."""
    return SequenceModel(
        task.input, task.output, config, causal=task.causal, task_name=task.name,
        pairs=getattr(task, "pairs", False),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def describe(model: SequenceModel) -> str:
    """One line: body, sizes and parameter count, e.g. ``3-layer lstm stack, hidden 128: ...``."""
    c = model.config
    return (
        f"{c.num_layers}-layer {bodies.describe(c)}, hidden {c.hidden_size}: "
        f"{count_parameters(model):,} parameters"
    )
