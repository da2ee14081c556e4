"""F-T-LSTM (Li, Mohamed, Zweig & Gong 2015): a frequency LSTM feeding a time LSTM."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class FreqTimeLSTM(nn.Module):
    r"""An LSTM that scans the frequency bands of each frame, feeding an LSTM over time.

    The frame's F features are cut into K bands of ``band_size`` (every ``band_stride``); a
    frequency LSTM runs over the bands k = 1 … K of each frame on its own (the same weights for
    every frame), and the concatenation of its K outputs is the time LSTM's input at that
    frame::

        b_{t,k} = x_t[k·stride : k·stride + band_size]
        f_{t,k} = F-LSTM(b_{t,k}, f_{t,k−1})                  k = 1 … K, per frame t
        y_t     = T-LSTM([f_{t,1}; …; f_{t,K}], y_{t−1})      rnnlab.RNN, num_layers deep

    Li et al. (ASRU 2015) report 3.6% relative WER reduction over a time-only LSTM; this is the
    "frequency LSTM inside each frame, feeding a time LSTM" of the speech body list, beside the
    full time × frequency grid (``rnnlab.grid.SpectrogramGridLSTM``).

    Args:
        input_size: F, features per frame.
        hidden_size: units of the time LSTM (per direction).
        num_layers: time LSTM layers.
        band_size, band_stride: the bands (stride default: band_size, no overlap).
        frequency_size: units of the frequency LSTM. Default 16.
        bidirectional: the time LSTM also runs backwards (reads the future).
        cell: the cell of both LSTMs. Default ``"lstm"``.

    Shapes: x (T, B, F), lengths (B,) or None -> output (T, B, D · hidden_size).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        band_size: int = 8,
        band_stride: int | None = None,
        frequency_size: int = 16,
        bidirectional: bool = False,
        cell: str = "lstm",
    ):
        import rnnlab

        super().__init__()
        stride = band_size if band_stride is None else band_stride
        if band_size < 1 or stride < 1 or band_size > input_size:
            raise ValueError(
                f"band_size must be in [1, input_size={input_size}] and band_stride >= 1, got "
                f"band_size={band_size}, band_stride={stride}"
            )
        self.band_size, self.band_stride = band_size, stride
        self.bands = (input_size - band_size) // stride + 1
        self.frequency = rnnlab.RNN(cell, band_size, frequency_size)
        self.time = rnnlab.RNN(cell, self.bands * frequency_size, hidden_size, num_layers,
                               bidirectional=bidirectional)
        self.bidirectional = bidirectional
        self.output_size = self.time.output_size

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        T, B, _ = x.shape
        bands = x.unfold(-1, self.band_size, self.band_stride)  # (T, B, K, band_size)
        scan = bands.reshape(T * B, self.bands, self.band_size).transpose(0, 1)  # (K, T·B, b)
        f, _ = self.frequency(scan)  # (K, T·B, Hf)
        frames = f.transpose(0, 1).reshape(T, B, -1)  # (T, B, K·Hf)
        if lengths is not None and self.bidirectional:
            frames = pack_padded_sequence(frames, lengths.cpu(), enforce_sorted=False)
        output, state = self.time(frames, state)
        if lengths is not None and self.bidirectional:
            output, _ = pad_packed_sequence(output, total_length=T)
        return output, state
