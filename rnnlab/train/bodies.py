"""Model bodies as a registry: the recurrent part of a model, chosen with ``--model.body=NAME``.

=====================  ==================================================================  =====
body                   module                                                              input
=====================  ==================================================================  =====
``stack``              ``rnnlab.RNN(cell, E, H, num_layers)``: layers of one cell          E
``grid``               ``rnnlab.GridLSTM``: 2-D Grid LSTM, time × depth                    E
``grid_deep``          ``rnnlab.grid.DeepGridLSTM``: 1-D grid along depth, at every step   E
``grid_image``         ``ImageGridLSTM`` over the (T × F) input cut into patches, pooled   raw F
``grid_spectrogram``   ``SpectrogramGridLSTM``: time × frequency bands × depth             raw F
``highway``            ``rnnlab.grid.HighwayNetwork`` at every step (beside grid_deep)      E
``freq_time``          ``rnnlab.models.FreqTimeLSTM``: frequency LSTM -> time LSTM          raw F
``seq2seq``            ``rnnlab.models.AttentionSeq2Seq``: attention encoder-decoder        ids
``reencoder``          ``rnnlab.models.Reencoder``: 3-D grid, target × source × depth       ids
=====================  ==================================================================  =====

The model config is typed by its body: :class:`ModelConfig` holds what every body shares and
each body has a subclass with its own settings, so ``ModelConfig(body="grid")`` is a
:class:`GridConfig`, and assigning ``body`` changes the class, keeping what both bodies have. A
setting the chosen body does not have is refused in one line naming the body and its settings
(:func:`check_settings`): nothing is silently ignored, a comparison between bodies is like for
like. List settings are tuples. Adding a body is a settings class and an entry of :data:`BODIES`.

Every body module maps time-major ``x (T, B, F)``, an optional state and optional
``lengths (B,)`` to ``(output, state)``: output ``(T, B, output_size)``, or ``(B, output_size)``
for a body with ``per_sequence`` (one vector per sequence).

A body **reads the future** when its output at step t depends on inputs after t (a
bidirectional stack, an image grid, a spectrogram grid scanned from a bottom corner). Such a
body is refused on a task whose targets are predictions of what comes next
(``Task.causal``): it would see the answer.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


class ConfigError(ValueError):
    """A config value or override that is not valid; the message says what is expected."""


class BodyError(ConfigError):
    """A body setting that is not valid for the chosen body (the message names the body)."""


# --- the model section: the shared settings, then one class per body --------------------------
@dataclass
class ModelConfig:
    """Input (embedding or projection) -> recurrent body -> head: the settings of every body.
    ``ModelConfig(...)`` makes the class of its ``body`` (see the module doc)."""

    body: str = "stack"  # a name from rnnlab.train.bodies.BODIES (`rnnlab list bodies`)
    hidden_size: int = 128  # units per layer (per direction)
    num_layers: int = 1  # stacked layers (grid bodies: blocks along depth)
    embedding_size: int | None = None  # size of the embedding / input projection; None: hidden
    dropout: float = 0.0  # dropout on the embedding, between layers and before the head
    init_all: str | None = None  # every parameter (embedding, cells, head): uniform:A = U(-A, A)
    #                              or scaled:S = U(-S/sqrt(fan_in), ..); then b_f += forget_bias
    #                              (rnnlab/train/init.py); None: each part's own default
    input_projection: bool = True  # Features/Binary inputs pass a learned Linear; false: the
    #                                cell reads the features directly (Chung et al. 2014)

    def __new__(cls, *args, **kwargs):
        if cls is ModelConfig:
            cls = _settings_class(kwargs.get("body", args[0] if args else "stack"))
        return super().__new__(cls)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "body" and value != type(self).body:
            self._become(_settings_class(value))
        elif typing.get_origin(kind := settings_fields().get(name, (None,))[0]) is tuple and (
                not isinstance(value, tuple)):  # a list setting as older configs wrote it
            from rnnlab.train.config import convert  # (text, a JSON list, None)

            value = tuple(value) if isinstance(value, list) else convert(
                "none" if value is None else str(value), kind, f"model.{name}")
        object.__setattr__(self, name, value)

    def _become(self, cls: type) -> None:
        """Turn into body class ``cls``, keeping each setting away from its default (one that
        ``cls`` does not have stays, for :func:`check_settings` to refuse)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        kept = {k: v for k, v in vars(self).items() if k not in defaults or v != defaults[k]}
        object.__setattr__(self, "__class__", cls)
        object.__setattr__(self, "__dict__",
                           {f.name: f.default for f in dataclasses.fields(cls)} | kept)


def _settings_class(body: str) -> type:
    if body not in BODIES:
        raise BodyError(f"model.body must be one of {', '.join(BODIES)}; got {body!r}")
    return BODIES[body].settings


@dataclass
class Regularised:
    """The regularisers of a body's cells, transformations of each cell graph
    (rnnlab/lang/regularise.py, docs/regularisers.md), shared by the stack and the Grid LSTM
    bodies: on a stack every layer's cell, on a grid every LSTM and zoo-cell dimension's cell
    (rnnlab/grid/regularise.py), input and output dropout then acting on the grid's input and
    output. 0 and false leave the body as it is. In evaluation every mask is its expectation,
    so with the dropouts alone the network computes the unregularised one, deterministically.
    Checked by :func:`_regularisers`."""

    input_dropout: float = 0.0  # locked dropout of the input x (stack: every layer's; grids:
    #                             the grid's), one mask per sequence (Gal & Ghahramani 2016)
    recurrent_dropout: float = 0.0  # locked dropout of the state where it feeds the recurrent
    #                                 products (grids: each dimension's h_k, its own product),
    #                                 one mask per sequence and layer (Gal & Ghahramani 2016)
    output_dropout: float = 0.0  # locked dropout of the output (stack: every layer's; grids:
    #                              the grid's), one mask per sequence
    weight_drop: float = 0.0  # DropConnect of every recurrent matrix, one mask per batch
    #                           (Merity et al. 2018)
    zoneout: float | dict[str, float] = 0.0  # each state unit keeps its previous value with
    #                                          probability p, a new mask every step (Krueger et
    #                                          al. 2016): p for every state field, or field:p
    #                                          pairs (stack: h:0.05,c:0.5; grids: h, m)
    layer_norm: bool | str = False  # layer-normalise the input and recurrent parts of every
    #                                 pre-activation apart, and the memory cell (Ba et al.
    #                                 2016): true or gate (each gate's own statistics), joint
    #                                 (all gates' together, as Ba et al.'s LN-LSTM and haste)


@dataclass
class _StackSettings(ModelConfig):
    """The stack's own settings (its class, :class:`StackConfig`, adds the regularisers)."""

    cell: str = "lstm"  # a name from rnnlab.cells.names() (stack: or a cell file *.json)
    bidirectional: bool = False  # a second pass backwards in time (reads the future)
    skip: bool = False  # the head reads every layer's output, concatenated
    forget_bias: float | None = None  # initial forget-gate bias; None: the cell's default
    init: str | None = None  # weight initialisation scheme of the cell; None: its default
    dilations: tuple[int, ...] = ()  # per-layer recurrence distance, one per layer (1,2,4:
    #                                  layer l reads the state of step t - d_l; Chang et al.
    #                                  2017); none: every layer 1


@dataclass
class StackConfig(Regularised, _StackSettings):
    """body=stack: layers of one cell of the zoo (rnnlab.RNN).

    ``input_dropout`` … ``layer_norm`` (:class:`Regularised`) transform every layer's cell
    graph."""

    body: str = "stack"


@dataclass
class GridBase(ModelConfig):
    """What every Grid LSTM body reads (Kalchbrenner et al. 2016)."""

    transforms: tuple[str, ...] = ("lstm",)  # one transform for every dimension, or one per
    #                                          dimension (grid: time,depth; grid_image:
    #                                          rows,columns,depth): lstm, lstm_standard, tanh,
    #                                          relu, identity, cell:<cell>
    tied: bool = False  # one block's weights at every layer


@dataclass
class GridNDBase(GridBase):
    """Grids of two or more dimensions: which dimensions go last, and how the grid is swept."""

    priority: tuple[str, ...] = ()  # dimensions computed last, reading the others' new hidden
    #                                 vectors (grid: time or depth; grid_image: rows, columns,
    #                                 depth); none: none
    schedule: str | None = None  # layerwise, wavefront or naive (same results); None: the
    #                              fastest the body supports


@dataclass
class GridConfig(Regularised, GridNDBase):
    """body=grid: the 2-D Grid LSTM (time × depth), with the regularisers of its LSTM (and
    zoo-cell) dimensions (:class:`Regularised`, rnnlab/grid/regularise.py)."""

    body: str = "grid"


@dataclass
class DeepGridConfig(Regularised, GridBase):
    """body=grid_deep: the 1-D Grid LSTM at every step, with the regularisers of its LSTM
    transform along depth (rnnlab/grid/regularise.py)."""

    body: str = "grid_deep"


@dataclass
class InputGridBase(GridNDBase):
    """3-D grids over the whole input (image, spectrogram), scanned from one or more corners."""

    corners: tuple[str, ...] = ("top_left",)  # corners scanned from (top_left, top_right,
    #                                           bottom_left, bottom_right) or all
    combine: str = "sum"  # sum or concat the scans' outputs


@dataclass
class ImageGridConfig(Regularised, InputGridBase):
    """body=grid_image: the 3-D Grid LSTM over the whole input read as an image."""

    body: str = "grid_image"
    patch: int = 4  # the (T × F) input is cut into patch × patch tiles (zero-padded)


@dataclass
class SpectrogramGridConfig(Regularised, InputGridBase):
    """body=grid_spectrogram: the 3-D Grid LSTM over time × frequency bands."""

    body: str = "grid_spectrogram"
    band_size: int = 10  # features per frequency band
    band_stride: int | None = None  # features between band starts; None: band_size


@dataclass
class HighwayConfig(ModelConfig):
    """body=highway: a Highway network at every step (Srivastava et al. 2015)."""

    body: str = "highway"
    activation: str = "relu"  # H's nonlinearity, relu or tanh
    transform_bias: float = -2.0  # initial transform-gate bias (negative: carry)


@dataclass
class FreqTimeConfig(ModelConfig):
    """body=freq_time: Li et al.'s F-T-LSTM (frequency LSTM per frame -> time LSTM)."""

    body: str = "freq_time"
    cell: str = "lstm"  # the cell of both LSTMs
    bidirectional: bool = False  # the LSTM over time runs both ways (reads the future)
    band_size: int = 10  # features per frequency band
    band_stride: int | None = None  # features between band starts; None: band_size
    frequency_size: int = 16  # units of the LSTM scanning the frequency bands


@dataclass
class Seq2SeqConfig(ModelConfig):
    """body=seq2seq: Bahdanau et al.'s attention encoder-decoder (translation tasks)."""

    body: str = "seq2seq"
    cell: str = "lstm"  # the cell of the encoder and the decoder
    attention_size: int | None = None  # width of the attention MLP; None: hidden_size


@dataclass
class ReencoderConfig(GridBase):
    """body=reencoder: the 3-D Grid LSTM translator (target × source × depth)."""

    body: str = "reencoder"


# --- the registry -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Body:
    """One entry of :data:`BODIES`.

    Attributes:
        summary: one line for ``rnnlab list bodies``.
        settings: the body's settings class, a :class:`ModelConfig` subclass.
        build: ``(config, input_size) -> module``.
        reads_future: ``config -> bool``: does the output at t depend on inputs after t?
        layer_dropout: ``model.dropout`` also acts between the body's layers.
        raw_input: the body reads the task's features as they are (no embedding/projection).
        per_sequence: the body returns one vector per sequence (needs a Classes output).
        token_input: the body reads the task's token ids itself, as ``source=target`` pairs
            (an encoder-decoder of a translation task; see rnnlab.models.layout).
        label: ``config -> str``, a short name for run directories and tables.
        noun: what the body is called in a model description (``Grid LSTM``).
        check: ``config -> None``: raises :class:`BodyError` for a bad value, before building.
    """

    summary: str
    settings: type
    build: Callable[[Any, int], nn.Module]
    reads_future: Callable[[Any], bool] = lambda config: False
    layer_dropout: bool = False
    raw_input: bool = False
    per_sequence: bool = False
    token_input: bool = False
    label: Callable[[Any], str] | None = None
    noun: str = ""
    check: Callable[[Any], None] = lambda config: None


def _text(values: tuple | dict) -> str:
    """A list or mapping setting as the command line writes it: ``1,2,4``, ``h:0.05,c:0.5``."""
    if isinstance(values, dict):
        return ",".join(f"{key}:{value}" for key, value in values.items())
    return ",".join(map(str, values))


def _transforms(config: GridBase, dimensions: tuple[str, ...], body: str):
    """The transform of every dimension (a name), or one per dimension (a tuple), checked."""
    from rnnlab.grid.block import resolve_transform

    names = config.transforms
    if len(names) not in (1, len(dimensions)):
        raise BodyError(
            f"model.transforms for body={body} is one transform or {len(dimensions)} "
            f"comma-separated ({', '.join(dimensions)}), got {_text(names)!r}"
        )
    for name in names:
        try:
            resolve_transform(name)
        except (ValueError, KeyError) as error:
            raise BodyError(f"body={body}: {error}") from None
    return names[0] if len(names) == 1 else names


def _priority(config: GridNDBase, dimensions: tuple[str, ...], body: str) -> tuple[int, ...]:
    unknown = [n for n in config.priority if n not in dimensions]
    if unknown:
        raise BodyError(
            f"model.priority for body={body} names dimensions among {', '.join(dimensions)} "
            f"(comma-separated), got {_text(config.priority)!r}"
        )
    return tuple(dimensions.index(n) for n in config.priority)


_CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def _corners(config: InputGridBase, body: str) -> tuple[str, ...]:
    names = config.corners
    if names == ("all",):
        return _CORNERS
    if not names or any(n not in _CORNERS for n in names) or len(set(names)) != len(names):
        raise BodyError(
            f"model.corners for body={body} is 'all' or distinct corners among "
            f"{', '.join(_CORNERS)}, comma-separated; got {_text(names)!r}"
        )
    return names


def _schedule(config: GridNDBase, allowed: tuple[str, ...], body: str) -> str:
    if config.schedule is None:
        return allowed[0]
    if config.schedule not in allowed:
        raise BodyError(
            f"model.schedule for body={body} must be one of {', '.join(allowed)}, "
            f"got {config.schedule!r}"
        )
    return config.schedule


class StackBody(nn.Module):
    """``rnnlab.RNN`` with PackedSequence for padded batches when it runs backwards too."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn
        self.output_size = rnn.output_size
        self.bidirectional = rnn.bidirectional  # the head reads the backward half at step 0

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        steps = x.shape[0]
        if lengths is not None and self.rnn.bidirectional:
            # Padding must not enter the backward direction.
            x = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        output, state = self.rnn(x, state)
        if isinstance(output, PackedSequence):
            output, _ = pad_packed_sequence(output, total_length=steps)
        return output, state


def _check_cell_name(cell: str) -> None:
    import rnnlab.cells

    if cell not in rnnlab.cells.names():
        raise BodyError(
            f"model.cell must be one of {', '.join(sorted(rnnlab.cells.names()))}; got {cell!r}"
        )


def _check_stack(config: StackConfig) -> None:
    import rnnlab.cells

    if rnnlab.cells.is_cell_file(config.cell):  # a JSON cell (rnnlab search export)
        try:
            rnnlab.cells.load(config.cell)
        except (OSError, ValueError) as error:
            raise BodyError(f"model.cell: {error}") from None
    else:
        _check_cell_name(config.cell)
    _dilations(config)
    _stack_regularisers(config)


REGULARISERS = tuple(f.name for f in dataclasses.fields(Regularised))  # the settings passed
#                               to rnnlab.RNN (stack) and to the Grid LSTM modules (grid bodies)


def _stack_regularisers(config: StackConfig) -> dict[str, Any]:
    """The stack's regularisers that are on (``rnnlab.RNN``'s options), checked on its cell."""
    import rnnlab.cells

    cell = config.cell
    graph = (rnnlab.cells.load(cell) if rnnlab.cells.is_cell_file(cell)
             else rnnlab.cells.graph(cell, 4, 4))
    return _regularisers(config, {f"cell {cell}": graph}, REGULARISERS)


def _regularisers(config: Regularised, cells: dict, acting: tuple[str, ...]) -> dict[str, Any]:
    """The regularisers that are on, checked: each a probability in [0, 1), and the options
    ``acting`` on the cells (``cells``: what each is, e.g. ``cell lstm`` -> its graph) valid
    for every one of them (zoneout's fields among its state fields, …), before any training."""
    from rnnlab.lang.regularise import regularise

    values = {name: getattr(config, name) for name in REGULARISERS}
    zoneout = values["zoneout"]
    rates = {f"model.{name}": values[name] for name in REGULARISERS[:4]}
    if isinstance(zoneout, dict):
        if not zoneout:
            raise BodyError("model.zoneout is p or field:p pairs (e.g. h:0.05,c:0.5); got no "
                            "pairs")
        rates |= {f"model.zoneout[{key}]": p for key, p in zoneout.items()}
    else:
        rates["model.zoneout"] = zoneout
    for where, p in rates.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise BodyError(f"{where} must be a probability in [0, 1), got {p!r}")
    on = {name: value for name, value in values.items() if value}
    on_cells = {name: value for name, value in on.items() if name in acting}
    if on_cells and not cells:
        raise BodyError(
            f"model.{', model.'.join(on_cells)} act{'s' if len(on_cells) == 1 else ''} on the "
            f"cells of body={config.body}'s LSTM and zoo-cell dimensions; its transforms "
            f"({_text(config.transforms)}) have none: use an lstm, lstm_standard or cell:<cell> "
            "transform")
    for what, graph in cells.items():  # what a cell cannot take (zoneout of a field it lacks)
        try:
            regularise(graph, **on_cells)
        except ValueError as error:
            raise BodyError(f"model.{', model.'.join(on_cells)} on {what}: {error}") from None
    return on


def _grid_regularisers(config: Regularised, dimensions: tuple[str, ...], body: str) -> dict:
    """A grid body's regularisers that are on (the grid module's options), checked on the cell
    of every LSTM and zoo-cell dimension (rnnlab/grid/regularise.py)."""
    import rnnlab.cells
    from rnnlab.grid.block import resolve_transform
    from rnnlab.grid.regularise import CELL_OPTIONS, dimension_graph
    from rnnlab.grid.transform import LSTM

    names = config.transforms * (len(dimensions) if len(config.transforms) == 1 else 1)
    cells = {}
    if any(getattr(config, option) for option in CELL_OPTIONS):
        N = len(dimensions)
        for dimension, name in zip(dimensions, names, strict=True):
            transform = resolve_transform(name)
            what = f"the {dimension} dimension of body={body} ({name})"
            if isinstance(transform, LSTM):
                cells[what] = dimension_graph(transform.cell, N, 4)
            elif name.startswith("cell:") and N > 1 and transform.name in rnnlab.cells.names():
                cells[what] = rnnlab.cells.graph(transform.name, (N - 1) * 4, 4)
    return _regularisers(config, cells, CELL_OPTIONS)


def _dilations(config: StackConfig) -> tuple[int, ...] | None:
    values = config.dilations
    if not values:
        return None
    if len(values) != config.num_layers or min(values) < 1:
        raise BodyError(
            f"model.dilations for body=stack is {config.num_layers} positive integer(s), one per "
            f"layer, comma-separated (e.g. 1,2,4); got {_text(values)!r}"
        )
    return values


def _build_stack(config: StackConfig, input_size: int) -> nn.Module:
    import rnnlab

    options = {}
    if config.forget_bias is not None:
        options["forget_bias"] = config.forget_bias
    if config.init is not None:
        options["init"] = config.init
    rnn = rnnlab.RNN(
        config.cell,
        input_size,
        config.hidden_size,
        num_layers=config.num_layers,
        bidirectional=config.bidirectional,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
        skip=config.skip,
        dilations=_dilations(config),
        **_stack_regularisers(config),
        **options,
    )
    return StackBody(rnn)


class GridBody(nn.Module):
    """``rnnlab.GridLSTM`` (time × depth); padded batches enter as a PackedSequence."""

    def __init__(self, grid: nn.Module):
        super().__init__()
        self.grid = grid
        self.output_size = grid.output_size

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        return self.grid(x, state)


def _grid_options(config: GridConfig) -> dict:
    dimensions = ("time", "depth")
    transforms = _transforms(config, dimensions, "grid")
    if isinstance(transforms, str):
        transforms = (transforms, transforms)
    priority = _priority(config, dimensions, "grid")
    if len(priority) > 1:
        raise BodyError(f"model.priority for body=grid is time or depth, got "
                        f"{_text(config.priority)!r}")
    return {
        "tied": config.tied,
        "time_transform": transforms[0],
        "depth_transform": transforms[1],
        "priority": dimensions[priority[0]] if priority else None,
        "schedule": _schedule(config, ("layerwise", "wavefront", "naive"), "grid"),
        **_grid_regularisers(config, dimensions, "grid"),
    }


def _build_grid(config: GridConfig, input_size: int) -> nn.Module:
    from rnnlab.grid import GridLSTM

    return GridBody(GridLSTM(input_size, config.hidden_size, config.num_layers,
                             **_grid_options(config)))


class DeepGridBody(nn.Module):
    """A feed-forward network (``DeepGridLSTM``, ``HighwayNetwork``) applied to every step on
    its own (no state across time)."""

    def __init__(self, grid: nn.Module):
        super().__init__()
        self.grid = grid
        self.output_size = grid.output_size

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        return self.grid(x), None  # (T, B, E) -> (T, B, H)


def _deep_options(config: DeepGridConfig) -> dict:
    return {"tied": config.tied, "transform": _transforms(config, ("depth",), "grid_deep"),
            **_grid_regularisers(config, ("depth",), "grid_deep")}


def _build_deep(config: DeepGridConfig, input_size: int) -> nn.Module:
    from rnnlab.grid import DeepGridLSTM

    grid = DeepGridLSTM(input_size, config.hidden_size, config.num_layers, **_deep_options(config))
    return DeepGridBody(grid)


class ImageGridBody(nn.Module):
    """The input ``(T, B, F)`` as a one-channel T × F image cut into ``patch`` × ``patch``
    tiles (zero-padded to a multiple), an ``ImageGridLSTM`` over the tiles, and the mean of its
    outputs over all positions: ``(B, output_size)``. Padded batches (``lengths``) enter as
    they are: the padding is part of the image."""

    def __init__(self, grid: nn.Module, patch: int):
        super().__init__()
        self.grid = grid
        self.patch = patch
        self.output_size = grid.output_size

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        p = self.patch
        image = x.permute(1, 0, 2)  # (B, T, F)
        pad_rows, pad_columns = -image.shape[1] % p, -image.shape[2] % p
        image = nn.functional.pad(image, (0, pad_columns, 0, pad_rows))
        tiles = image.unfold(1, p, p).unfold(2, p, p).flatten(-2)  # (B, T/p, F/p, p·p)
        features = self.grid(tiles)  # (B, T/p, F/p, D)
        return features.mean(dim=(1, 2)), None


def _nd_options(config: InputGridBase, dimensions: tuple[str, ...], body: str) -> dict:
    """The options of a 3-D grid body (image, spectrogram), checked."""
    transforms = _transforms(config, dimensions, body)
    if config.combine not in ("sum", "concat"):
        raise BodyError(f"model.combine for body={body} is sum or concat, got {config.combine!r}")
    corners = _corners(config, body)
    if config.combine != "sum" and len(corners) == 1:
        raise BodyError(
            f"model.combine={config.combine!r} has no effect on body={body} with one corner "
            f"({corners[0]}); scan from several corners (model.corners=all) or leave it at sum"
        )
    return {
        "tied": config.tied,
        "transforms": transforms,
        "priority": _priority(config, dimensions, body),
        "corners": corners,
        "combine": config.combine,
        "schedule": _schedule(config, ("wavefront", "naive"), body),
        **_grid_regularisers(config, dimensions, body),
    }


def _image_options(config: ImageGridConfig) -> dict:
    if config.patch < 1:
        raise BodyError(f"model.patch for body=grid_image must be >= 1, got {config.patch}")
    return _nd_options(config, ("rows", "columns", "depth"), "grid_image")


def _build_image(config: ImageGridConfig, input_size: int) -> nn.Module:
    from rnnlab.grid import ImageGridLSTM

    options = _image_options(config)
    grid = ImageGridLSTM(
        config.patch * config.patch, config.hidden_size, config.num_layers, **options
    )
    return ImageGridBody(grid, config.patch)


class SpectrogramGridBody(nn.Module):
    """``SpectrogramGridLSTM`` over ``(T, B, F)`` features: ``(T, B, bands · D)``, the outputs
    of every frequency band at each frame, concatenated. From the top corners the output at
    frame t reads frames up to t only, so padding after a sequence's end does not reach it.

    A bottom corner scans time backwards: its scan would start in the padding of a shorter
    sequence, and a classifier reading the last valid frame would read a scan that has seen one
    frame. Both are refused (one line each) rather than computed wrong."""

    def __init__(self, grid: nn.Module, bands: int, corners: tuple[str, ...] = ("top_left",)):
        super().__init__()
        self.grid = grid
        self.output_size = bands * grid.output_size
        self.backward_in_time = tuple(c for c in corners if c.startswith("bottom"))

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        if self.backward_in_time and lengths is not None and int(lengths.min()) < x.shape[0]:
            raise ValueError(
                f"body=grid_spectrogram with corners {', '.join(self.backward_in_time)} scans "
                "time backwards and would start in the padding of the shorter sequences of this "
                "batch; use model.corners=top_left or top_right, or batches of equal length"
            )
        features = self.grid(x.transpose(0, 1))  # (B, T, bands · D)
        return features.flatten(2).transpose(0, 1), None  # (T, B, bands · D)


def _spectrogram_options(config: SpectrogramGridConfig) -> dict:
    if config.band_size < 1 or (config.band_stride is not None and config.band_stride < 1):
        raise BodyError(
            "model.band_size and model.band_stride of body=grid_spectrogram must be >= 1, got "
            f"{config.band_size} and {config.band_stride}"
        )
    return _nd_options(config, ("time", "bands", "depth"), "grid_spectrogram")


def _build_spectrogram(config: SpectrogramGridConfig, input_size: int) -> nn.Module:
    from rnnlab.grid import SpectrogramGridLSTM

    options = _spectrogram_options(config)
    stride = config.band_stride or config.band_size
    if config.band_size > input_size:
        raise BodyError(
            f"body=grid_spectrogram needs 1 <= model.band_size <= the task's {input_size} "
            f"features and model.band_stride >= 1; got band_size={config.band_size}, "
            f"band_stride={config.band_stride}"
        )
    grid = SpectrogramGridLSTM(
        config.band_size, config.hidden_size, config.num_layers, band_stride=stride, **options
    )
    bands = (input_size - config.band_size) // stride + 1
    return SpectrogramGridBody(grid, bands, options["corners"])


def _check_highway(config: HighwayConfig) -> None:
    from rnnlab.grid.highway import ACTIVATIONS

    if config.activation not in ACTIVATIONS:
        raise BodyError(f"model.activation for body=highway is one of {', '.join(ACTIVATIONS)}; "
                        f"got {config.activation!r}")


def _build_highway(config: HighwayConfig, input_size: int) -> nn.Module:
    from rnnlab.grid import HighwayNetwork

    return DeepGridBody(HighwayNetwork(input_size, config.hidden_size, config.num_layers,
                                       config.activation, config.transform_bias))


def _check_freq_time(config: FreqTimeConfig) -> None:
    _check_cell_name(config.cell)
    if config.band_size < 1 or (config.band_stride or 1) < 1 or config.frequency_size < 1:
        raise BodyError(
            "model.band_size, model.band_stride and model.frequency_size of body=freq_time must "
            f"be >= 1, got {config.band_size}, {config.band_stride}, {config.frequency_size}"
        )


def _build_freq_time(config: FreqTimeConfig, input_size: int) -> nn.Module:
    from rnnlab.models import FreqTimeLSTM

    if config.band_size > input_size:
        raise BodyError(f"model.band_size={config.band_size} of body=freq_time exceeds the "
                        f"task's {input_size} features")
    return FreqTimeLSTM(
        input_size, config.hidden_size, config.num_layers, band_size=config.band_size,
        band_stride=config.band_stride, frequency_size=config.frequency_size,
        bidirectional=config.bidirectional, cell=config.cell,
    )


def _check_seq2seq(config: Seq2SeqConfig) -> None:
    _check_cell_name(config.cell)
    if config.attention_size is not None and config.attention_size < 1:
        raise BodyError(f"model.attention_size must be >= 1, got {config.attention_size}")


def _build_seq2seq(config: Seq2SeqConfig, input_size: int) -> nn.Module:
    from rnnlab.models import AttentionSeq2Seq
    from rnnlab.tasks.translation import PAD_ID, SEP_ID

    return AttentionSeq2Seq(
        input_size, config.embedding_size or config.hidden_size, config.hidden_size,
        config.num_layers, separator=SEP_ID, pad=PAD_ID, cell=config.cell,
        attention_size=config.attention_size,
    )


def _build_reencoder(config: ReencoderConfig, input_size: int) -> nn.Module:
    from rnnlab.models import Reencoder
    from rnnlab.tasks.translation import PAD_ID, SEP_ID

    transforms = _transforms(config, ("target", "source", "depth"), "reencoder")
    return Reencoder(
        input_size, config.embedding_size or config.hidden_size, config.hidden_size,
        config.num_layers, separator=SEP_ID, pad=PAD_ID, tied=config.tied,
        transforms=transforms,
    )


BODIES: dict[str, Body] = {
    "stack": Body(
        "layers of one cell (rnnlab.RNN); --model.cell=NAME",
        StackConfig,
        _build_stack,
        reads_future=lambda c: c.bidirectional,
        layer_dropout=True,
        label=lambda c: Path(c.cell).stem,  # cells/x.json: x
        check=_check_stack,
        noun="stack",
    ),
    "grid": Body(
        "2-D Grid LSTM, time x depth (rnnlab.GridLSTM, Kalchbrenner et al. 2016)",
        GridConfig,
        _build_grid,
        check=_grid_options,
        noun="Grid LSTM",
    ),
    "grid_deep": Body(
        "1-D Grid LSTM along depth at every step, no recurrence in time (rnnlab.grid."
        "DeepGridLSTM)",
        DeepGridConfig,
        _build_deep,
        check=_deep_options,
        noun="1-D Grid LSTM",
    ),
    "grid_image": Body(
        "3-D Grid LSTM over the whole (T x F) input as an image of patches, pooled; classifies "
        "(rnnlab.grid.ImageGridLSTM)",
        ImageGridConfig,
        _build_image,
        reads_future=lambda c: True,
        raw_input=True,
        per_sequence=True,
        check=_image_options,
        noun="3-D image Grid LSTM",
    ),
    "grid_spectrogram": Body(
        "3-D Grid LSTM over time x frequency bands of the input features (rnnlab.grid."
        "SpectrogramGridLSTM)",
        SpectrogramGridConfig,
        _build_spectrogram,
        reads_future=lambda c: any(n.startswith("bottom") for n in _corners(c, "grid_spectrogram")),
        raw_input=True,
        check=_spectrogram_options,
        noun="3-D spectrogram Grid LSTM",
    ),
    "highway": Body(
        "Highway network at every step, no recurrence in time (rnnlab.grid.HighwayNetwork, "
        "Srivastava et al. 2015), the 1-D grid's feed-forward relative",
        HighwayConfig,
        _build_highway,
        check=_check_highway,
        noun="Highway network",
    ),
    "freq_time": Body(
        "F-T-LSTM: an LSTM over the frequency bands of each frame feeds an LSTM over time "
        "(rnnlab.models.FreqTimeLSTM, Li et al. 2015); speech",
        FreqTimeConfig,
        _build_freq_time,
        reads_future=lambda c: c.bidirectional,
        raw_input=True,
        check=_check_freq_time,
        noun="F-T-LSTM",
    ),
    "seq2seq": Body(
        "encoder-decoder with additive attention (rnnlab.models.AttentionSeq2Seq, Bahdanau "
        "et al. 2015); translation tasks",
        Seq2SeqConfig,
        _build_seq2seq,
        token_input=True,
        check=_check_seq2seq,
        noun="attention encoder-decoder",
    ),
    "reencoder": Body(
        "3-D Grid LSTM over target x source x depth instead of an encoder-decoder "
        "(rnnlab.models.Reencoder, Kalchbrenner et al. 2016); translation tasks",
        ReencoderConfig,
        _build_reencoder,
        token_input=True,
        check=lambda c: _transforms(c, ("target", "source", "depth"), "reencoder"),
        noun="Reencoder (3-D Grid LSTM)",
    ),
}


# --- the settings of every body -----------------------------------------------------------------
SHARED = tuple(f.name for f in dataclasses.fields(ModelConfig))  # what every body has


def body_settings(body: str) -> list[str]:
    """The settings body ``body`` has besides the shared ones, in its class's order."""
    return [f.name for f in dataclasses.fields(BODIES[body].settings) if f.name not in SHARED]


def bodies_with(setting: str) -> list[str]:
    """The bodies that have ``setting`` (every body for a shared one)."""
    return [name for name in BODIES if setting in SHARED or setting in body_settings(name)]


@functools.cache
def settings_fields() -> dict[str, tuple[Any, Any]]:
    """Every model setting: name -> (type, default), the shared ones first, then each body's in
    registry order. A setting several bodies have must have one type and one default (checked
    here), so that ``--model.<setting>`` is one option."""
    out: dict[str, tuple[Any, Any]] = {}
    for name, body in BODIES.items():  # (a class's fields: the shared ones first)
        hints = typing.get_type_hints(body.settings)
        for f in dataclasses.fields(body.settings):
            entry = (hints[f.name], f.default)
            if out.setdefault(f.name, entry) != entry and f.name != "body":
                raise TypeError(
                    f"body {name!r} declares setting {f.name!r} as {entry}, another body as "
                    f"{out[f.name]}; a shared setting needs one type and one default"
                )
    return out


def check_settings(config: ModelConfig) -> None:
    """Refuse a setting the chosen body does not have, and a ``model.dropout`` the body cannot
    apply between its layers; then the body's own checks."""
    name = config.body
    body = BODIES[name]
    own = {f.name for f in dataclasses.fields(config)}
    for setting, value in vars(config).items():
        if setting not in own:
            owners = ", ".join(bodies_with(setting)) or "no body"
            raise BodyError(
                f"model.{setting}={value!r} is not a setting of body={name} (body={name} "
                f"has: {', '.join(body_settings(name)) or 'only the shared settings'}; "
                f"{setting}: {owners}); drop it or choose a body that has it"
            )
    if config.dropout > 0 and config.num_layers > 1 and not body.layer_dropout:
        raise BodyError(
            f"model.dropout={config.dropout} cannot act between the layers of body={name} "
            "(its layers are joined inside the grid); set model.dropout=0 or use body=stack"
        )
    body.check(config)
    if body.raw_input and config.embedding_size is not None:
        raise BodyError(
            f"model.embedding_size has no effect on body={name}, which reads the task's features "
            "directly; leave it unset"
        )


def check_task(config: ModelConfig, task_input, task_output, causal: bool, task_name: str,
               pairs: bool = False) -> None:
    """Refuse a body that cannot serve the task: one that reads the future on a causal task,
    a per-sequence body on a per-step task, a raw-input body on token input, an
    encoder-decoder on a task without ``source=target`` pairs."""
    from rnnlab.tasks.base import Classes, Tokens

    name = config.body
    body = BODIES[name]
    if causal and body.reads_future(config):
        raise BodyError(
            f"body={name} as configured ({describe(config)}) reads inputs after step t, "
            f"but task {task_name!r} predicts what comes next (its target at t may depend only "
            "on inputs up to t): the model would see the answer. Use a one-directional body "
            "(stack without bidirectional, grid, grid_deep, grid_spectrogram from top corners)"
        )
    if body.per_sequence and not isinstance(task_output, Classes):
        raise BodyError(
            f"body={name} gives one vector per sequence; task {task_name!r} needs an output at "
            "every step. Use it on a classification task (mnist, digits, fsdd, parity)"
        )
    if body.token_input and not pairs:
        raise BodyError(
            f"body={name} is an encoder-decoder: it reads 'source=target' sequences; task "
            f"{task_name!r} has none. Use it on a translation task (numbers, parallel)"
        )
    if body.raw_input and isinstance(task_input, Tokens):
        raise BodyError(
            f"body={name} reads feature vectors; task {task_name!r} gives token ids. Use it on a "
            "task with Features input (mnist, digits, fsdd, parity) or music"
        )


def label(config: ModelConfig) -> str:
    """A short name of the body: the cell for a stack, else the body's name."""
    body = BODIES[config.body]
    return body.label(config) if body.label else config.body


def describe(config: ModelConfig) -> str:
    """The body in words with its settings that differ from their defaults, e.g. ``lstm stack
    (bidirectional)`` or ``grid (priority=time, tied)``."""
    body = BODIES[config.body]
    defaults = body.settings()
    changed = [
        name if value is True else
        f"{name}={_text(value) if isinstance(value, (tuple, dict)) else value}"
        for name in body_settings(config.body)
        if name != "cell" and (value := getattr(config, name)) != getattr(defaults, name)
    ]
    what = f"{label(config)} {body.noun}" if body.label else body.noun
    return what + (f" ({', '.join(changed)})" if changed else "")


def build(config: ModelConfig, input_size: int) -> nn.Module:
    """The body module for ``config`` (checked), reading ``input_size`` features."""
    check_settings(config)
    try:
        return BODIES[config.body].build(config, input_size)
    except BodyError:
        raise
    except (ValueError, TypeError, KeyError) as error:  # a module's own checks
        raise BodyError(f"body={config.body}: {error}") from None


__all__ = ["BODIES", "Body", "BodyError", "ConfigError", "ModelConfig", "body_settings",
           "bodies_with", "build", "check_settings", "check_task", "describe", "label",
           "settings_fields"]
