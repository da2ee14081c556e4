"""A torch user's word-level language model, with torch.nn.LSTM and with rnnlab.RNN dropped in.

The training step of PyTorch's word_language_model example (Zaremba et al.'s small PTB model):
embedding 200 -> 2-layer LSTM 200 with dropout 0.2 -> Linear(200, 10,000), batch 20, unroll
35, SGD with learning rate 1 (the example's hand-written ``p.data.add_(p.grad, alpha=-lr)``),
gradient clipping at 0.25, the state carried from batch to batch as a plain tuple and detached
(``repackage_hidden``). The rnnlab model differs in one line, the recurrent layer:
``rnnlab.RNN("lstm", 200, 200, num_layers=2, dropout=0.2, forget_bias=0.0)`` (forget_bias 0:
torch's initialisation). The data are random token ids.

Both models run in this one process, alternating (the order flips every round), round after
round; each round times ``--steps`` training steps of each after one untimed warm-up step, and
the medians over the rounds give tokens/s and their ratio, so that load from other processes
falls on both alike::

    python benchmarks/client_wordlm.py                        # 1 thread, 5 rounds of 20 steps
    python benchmarks/client_wordlm.py --threads 2 --steps 50 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import rnnlab
from rnnlab import machine


class WordLM(nn.Module):
    """Embedding -> dropout -> recurrent layers -> dropout -> Linear, as the torch example."""

    def __init__(self, vocab: int, size: int, layers: int, dropout: float, use_rnnlab: bool):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, size)
        self.rnn = (rnnlab.RNN("lstm", size, size, num_layers=layers, dropout=dropout,
                               forget_bias=0.0) if use_rnnlab
                    else nn.LSTM(size, size, num_layers=layers, dropout=dropout))
        self.decoder = nn.Linear(size, vocab)
        self.layers, self.size = layers, size

    def forward(self, ids, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(ids)), hidden)
        return self.decoder(self.drop(output)), hidden

    def init_hidden(self, batch: int):
        weight = next(self.parameters())
        return (weight.new_zeros(self.layers, batch, self.size),
                weight.new_zeros(self.layers, batch, self.size))


def repackage_hidden(h):
    """Wrap hidden states in new tensors, to detach them from their history (as the example)."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def train_steps(model: WordLM, data: torch.Tensor, steps: int, bptt: int, lr: float,
                clip: float, hidden):
    """``steps`` training steps over ``data`` (T_total, B) from ``hidden``; returns the state."""
    model.train()
    vocab = model.decoder.out_features
    for k in range(steps):
        start = (k * bptt) % (data.shape[0] - bptt - 1)
        inputs, targets = data[start:start + bptt], data[start + 1:start + 1 + bptt]
        hidden = repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(inputs, hidden)
        loss = F.cross_entropy(output.view(-1, vocab), targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
    return hidden


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians are reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--vocab", type=int, default=10_000, help="vocabulary size")
    parser.add_argument("--size", type=int, default=200, help="embedding and hidden size")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=35, help="unrolled steps per batch")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine.line())
    print(f"word LM: embedding {args.size} -> 2-layer LSTM {args.size} (dropout 0.2) -> "
          f"Linear({args.size}, {args.vocab}); B={args.batch}, T={args.bptt}, SGD lr 1, clip "
          f"0.25; {args.rounds} rounds of {args.steps} steps each")
    data = torch.randint(args.vocab, (args.bptt * (args.steps + 2) + 2, args.batch))
    models = {name: WordLM(args.vocab, args.size, 2, 0.2, use_rnnlab=(name == "rnnlab.RNN"))
              for name in ("torch.nn.LSTM", "rnnlab.RNN")}
    hidden = {name: model.init_hidden(args.batch) for name, model in models.items()}
    for name, model in models.items():  # warm-up: first-call costs stay out of the timing
        hidden[name] = train_steps(model, data, 1, args.bptt, 1.0, 0.25, hidden[name])
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(args.rounds):
        order = list(models) if round_ % 2 == 0 else list(reversed(models))
        for name in order:
            started = time.perf_counter()
            hidden[name] = train_steps(models[name], data, args.steps, args.bptt, 1.0, 0.25,
                                       hidden[name])
            times[name].append(time.perf_counter() - started)
    tokens = args.steps * args.bptt * args.batch
    speed = {name: tokens / statistics.median(t) for name, t in times.items()}
    for name, value in speed.items():
        print(f"{name:>14}: {value:10,.0f} tokens/s (median of {args.rounds})")
    ratio = speed["rnnlab.RNN"] / speed["torch.nn.LSTM"]
    print(f"rnnlab.RNN / torch.nn.LSTM: {ratio:.2f}x")
    return {"speed": speed, "ratio": ratio}


if __name__ == "__main__":
    main()
