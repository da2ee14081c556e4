"""Grid LSTM (Kalchbrenner, Danihelka & Graves 2016): N-dimensional blocks and their networks.

- ``GridBlock``: the N-dimensional block; ``rnnlab.grid.transform``: its per-dimension transforms;
  ``CellTransform``: a cell of the zoo as a dimension's transform.
- ``DeepGridLSTM``: 1-D grid, a deep feed-forward network of blocks along depth;
  ``HighwayNetwork`` (Srivastava et al. 2015), its feed-forward relative, for comparison.
- ``GridLSTM``: 2-D grid, time × depth over a sequence (like a stacked LSTM).
- ``ImageGridLSTM``, ``SpectrogramGridLSTM``: 3-D grids over 2-D inputs and depth.
- ``GridLSTMNd``: the N-D grid over an (N−1)-D input and depth.
- ``rnnlab.grid.regularise``: the regularisers of every grid (``recurrent_dropout=…``): each
  LSTM and zoo-cell dimension's cell graph regularised, locked dropout of input and output.
"""

from rnnlab.grid.block import BlockState, GridBlock
from rnnlab.grid.cell_transform import CellTransform
from rnnlab.grid.deep import DeepGridLSTM
from rnnlab.grid.highway import HighwayNetwork
from rnnlab.grid.image import ImageGridLSTM, SpectrogramGridLSTM
from rnnlab.grid.multidim import GridLSTMNd
from rnnlab.grid.scan import SCHEDULES, GridScan
from rnnlab.grid.schedule import State
from rnnlab.grid.sequence import GridLSTM
from rnnlab.grid.transform import LSTM, TRANSFORMS, Activation, Transform

__all__ = [
    "LSTM",
    "SCHEDULES",
    "TRANSFORMS",
    "Activation",
    "BlockState",
    "CellTransform",
    "DeepGridLSTM",
    "GridBlock",
    "GridLSTM",
    "GridLSTMNd",
    "GridScan",
    "HighwayNetwork",
    "ImageGridLSTM",
    "SpectrogramGridLSTM",
    "State",
    "Transform",
]
