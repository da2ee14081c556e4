"""Composite networks for the speech and translation tasks, used as model bodies.

- ``FreqTimeLSTM`` (``freq_time.py``): Li et al.'s F-T-LSTM — an LSTM scanning the frequency
  bands of each frame feeds an LSTM over time (speech, ``digits_ctc``).
- ``AttentionSeq2Seq`` (``attention.py``): Bahdanau et al.'s encoder–decoder with additive
  attention (the translation baseline, ``numbers``).
- ``Reencoder`` (``reencoder.py``): Kalchbrenner et al.'s translation model, a 3-D Grid LSTM
  over target positions × source positions × depth instead of an encoder–decoder.

``layout.py`` splits the ``source = target`` sequences of the translation tasks for the two
encoder–decoder bodies and puts their outputs back in place.
"""

from rnnlab.models.attention import AttentionSeq2Seq
from rnnlab.models.freq_time import FreqTimeLSTM
from rnnlab.models.reencoder import Reencoder

__all__ = ["AttentionSeq2Seq", "FreqTimeLSTM", "Reencoder"]
