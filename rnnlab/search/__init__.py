"""``rnnlab search``: Jozefowicz, Zaremba & Sutskever (2015)'s evolutionary search over cells.

    >>> from rnnlab.search import SearchConfig, run, top
    >>> config = SearchConfig(name="demo", steps=24)     # journal file searches/demo/
    >>> run(config)                                      # resumable; more workers: workers=4
    >>> print(top(config, n=5))

Pieces: ``canonical`` (architecture identity: canonical form and hash), ``checks``
(degenerate cells, engine probe), ``evaluate`` (the lean training loop, the memorisation
filter, settings, fitness), ``loop`` (the search on ``rnnlab.trials`` storage), ``results``
(top list, export, report), ``retraining`` (the winners re-trained with several seeds and
settings against GRU, LSTM and LSTM-b, with intervals and Welch's test). See docs/search.md.
"""

from .canonical import architecture_hash, canonical_form, similarity
from .checks import degenerate_reason, engine_used
from .evaluate import Budget, fitness
from .loop import REFERENCES, SearchConfig, SearchError, architectures, run
from .results import export, report, top
from .retraining import retrain

__all__ = [
    "REFERENCES", "Budget", "SearchConfig", "SearchError", "architecture_hash",
    "architectures", "canonical_form", "degenerate_reason", "engine_used", "export", "fitness",
    "report", "retrain", "run", "similarity", "top",
]
