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

Each entry of :data:`BODIES` is a :class:`Body`: a one-line summary, its own settings dataclass
(every field with a commented default), a builder, and what the body needs of a task. The
settings of every body are fields of :class:`~rnnlab.train.config.ModelConfig` (set as
``--model.priority=time``); a setting the chosen body does not read must keep its default, or
the config is refused with a message naming the body — so that nothing is silently ignored and a
comparison between bodies is like for like. Adding a body is one entry here.

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
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


class BodyError(ValueError):
    """A body setting that is not valid for the chosen body (the message names the body)."""


# --- settings, one dataclass per body ----------------------------------------------------------
@dataclass
class StackSettings:
    """body=stack: layers of one cell of the zoo (rnnlab.RNN)."""

    cell: str = "lstm"  # stack: a name from rnnlab.cells.names() or a cell file *.json
    bidirectional: bool = False  # stack: a second stack backwards in time (reads the future)
    skip: bool = False  # stack: the head reads every layer's output, concatenated
    forget_bias: float | None = None  # stack: initial forget-gate bias; None: the cell's default
    init: str | None = None  # stack: weight initialisation scheme of the cell; None: its default
    dilations: str | None = None  # stack: per-layer recurrence distance, comma-separated (1,2,4:
    #                               layer l reads the state of step t - d_l; Chang et al. 2017);
    #                               None: every layer 1


@dataclass
class GridSettings:
    """body=grid: the 2-D Grid LSTM (time × depth)."""

    transforms: str = "lstm"  # grid bodies: one transform for every dimension, or one per
    #                           dimension comma-separated (grid: time,depth; image: rows,columns,
    #                           depth): lstm, lstm_standard, tanh, relu, identity, cell:<cell>
    priority: str | None = None  # grid bodies: dimensions computed last, reading the others' new
    #                              hidden vectors (grid: time or depth; image: rows, columns,
    #                              depth, comma-separated); None: none
    tied: bool = False  # grid bodies: one block's weights at every layer
    schedule: str | None = None  # grid bodies: layerwise, wavefront or naive (same results);
    #                              None: the fastest the body supports


@dataclass
class DeepGridSettings:
    """body=grid_deep: the 1-D Grid LSTM at every step."""

    transforms: str = "lstm"
    tied: bool = False


@dataclass
class ImageGridSettings:
    """body=grid_image: the 3-D Grid LSTM over the whole input read as an image."""

    transforms: str = "lstm"
    priority: str | None = None
    tied: bool = False
    schedule: str | None = None
    patch: int = 4  # grid_image: the (T × F) input is cut into patch × patch tiles (zero-padded)
    corners: str = "top_left"  # grid_image, grid_spectrogram: corners scanned from,
    #                            comma-separated (top_left, top_right, bottom_left, bottom_right)
    #                            or all
    combine: str = "sum"  # grid_image, grid_spectrogram: sum or concat the scans' outputs


@dataclass
class SpectrogramGridSettings:
    """body=grid_spectrogram: the 3-D Grid LSTM over time × frequency bands."""

    transforms: str = "lstm"
    priority: str | None = None
    tied: bool = False
    schedule: str | None = None
    corners: str = "top_left"
    combine: str = "sum"
    band_size: int = 10  # grid_spectrogram: features per frequency band
    band_stride: int | None = None  # grid_spectrogram: features between band starts; None: size


@dataclass
class HighwaySettings:
    """body=highway: a Highway network at every step (Srivastava et al. 2015)."""

    activation: str = "relu"  # highway: H's nonlinearity, relu or tanh
    transform_bias: float = -2.0  # highway: initial transform-gate bias (negative: carry)


@dataclass
class FreqTimeSettings:
    """body=freq_time: Li et al.'s F-T-LSTM (frequency LSTM per frame -> time LSTM)."""

    cell: str = "lstm"
    bidirectional: bool = False
    band_size: int = 10
    band_stride: int | None = None
    frequency_size: int = 16  # freq_time: units of the LSTM scanning the frequency bands


@dataclass
class Seq2SeqSettings:
    """body=seq2seq: Bahdanau et al.'s attention encoder-decoder (translation tasks)."""

    cell: str = "lstm"
    attention_size: int | None = None  # seq2seq: width of the attention MLP; None: hidden_size


@dataclass
class ReencoderSettings:
    """body=reencoder: the 3-D Grid LSTM translator (target x source x depth)."""

    transforms: str = "lstm"
    tied: bool = False


# --- the registry -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Body:
    """One entry of :data:`BODIES`.

    Attributes:
        summary: one line for ``rnnlab list bodies``.
        settings: the body's settings dataclass.
        build: ``(settings, model_config, input_size) -> module``.
        reads_future: ``settings -> bool``: does the output at t depend on inputs after t?
        layer_dropout: ``model.dropout`` also acts between the body's layers.
        raw_input: the body reads the task's features as they are (no embedding/projection).
        per_sequence: the body returns one vector per sequence (needs a Classes output).
        token_input: the body reads the task's token ids itself, as ``source=target`` pairs
            (an encoder-decoder of a translation task; see rnnlab.models.layout).
        label: ``settings -> str``, a short name for run directories and tables.
        noun: what the body is called in a model description (``Grid LSTM``).
        check: ``settings -> None``: raises :class:`BodyError` for a bad value, before building.
    """

    summary: str
    settings: type
    build: Callable[[Any, Any, int], nn.Module]
    reads_future: Callable[[Any], bool] = lambda settings: False
    layer_dropout: bool = False
    raw_input: bool = False
    per_sequence: bool = False
    token_input: bool = False
    label: Callable[[Any], str] | None = None
    noun: str = ""
    check: Callable[[Any], None] = lambda settings: None


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _transforms(settings, dimensions: tuple[str, ...], body: str):
    names = _names(settings.transforms)
    if len(names) == 1:
        return names[0]
    if len(names) != len(dimensions):
        raise BodyError(
            f"model.transforms for body={body} is one transform or {len(dimensions)} "
            f"comma-separated ({', '.join(dimensions)}), got {settings.transforms!r}"
        )
    return tuple(names)


def _priority(settings, dimensions: tuple[str, ...], body: str) -> tuple[int, ...]:
    if settings.priority is None:
        return ()
    names = _names(settings.priority)
    unknown = [n for n in names if n not in dimensions]
    if unknown or not names:
        raise BodyError(
            f"model.priority for body={body} names dimensions among {', '.join(dimensions)} "
            f"(comma-separated), got {settings.priority!r}"
        )
    return tuple(dimensions.index(n) for n in names)


_CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def _corners(settings, body: str) -> tuple[str, ...]:
    names = _names(settings.corners)
    if names == ["all"]:
        return _CORNERS
    if not names or any(n not in _CORNERS for n in names) or len(set(names)) != len(names):
        raise BodyError(
            f"model.corners for body={body} is 'all' or distinct corners among "
            f"{', '.join(_CORNERS)}, comma-separated; got {settings.corners!r}"
        )
    return tuple(names)


def _schedule(settings, allowed: tuple[str, ...], body: str) -> str:
    if settings.schedule is None:
        return allowed[0]
    if settings.schedule not in allowed:
        raise BodyError(
            f"model.schedule for body={body} must be one of {', '.join(allowed)}, "
            f"got {settings.schedule!r}"
        )
    return settings.schedule


def _grid_error(body: str, error: Exception) -> BodyError:
    return BodyError(f"body={body}: {error}")


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


def _check_stack(settings: StackSettings) -> None:
    import rnnlab.cells

    if rnnlab.cells.is_cell_file(settings.cell):  # a JSON cell (rnnlab search export)
        try:
            rnnlab.cells.load(settings.cell)
        except (OSError, ValueError) as error:
            raise BodyError(f"model.cell: {error}") from None
    else:
        _check_cell_name(settings.cell)


def _dilations(settings: StackSettings, num_layers: int) -> tuple[int, ...] | None:
    if settings.dilations is None:
        return None
    try:
        values = tuple(int(part) for part in _names(settings.dilations))
    except ValueError:
        values = ()
    if len(values) != num_layers or min(values, default=0) < 1:
        raise BodyError(
            f"model.dilations for body=stack is {num_layers} positive integer(s), one per layer, "
            f"comma-separated (e.g. 1,2,4); got {settings.dilations!r}"
        )
    return values


def _build_stack(settings: StackSettings, model, input_size: int) -> nn.Module:
    import rnnlab

    _check_stack(settings)
    options = {}
    if settings.forget_bias is not None:
        options["forget_bias"] = settings.forget_bias
    if settings.init is not None:
        options["init"] = settings.init
    rnn = rnnlab.RNN(
        settings.cell,
        input_size,
        model.hidden_size,
        num_layers=model.num_layers,
        bidirectional=settings.bidirectional,
        dropout=model.dropout if model.num_layers > 1 else 0.0,
        skip=settings.skip,
        dilations=_dilations(settings, model.num_layers),
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


def _grid_options(settings: GridSettings) -> dict:
    dimensions = ("time", "depth")
    transforms = _transforms(settings, dimensions, "grid")
    if isinstance(transforms, str):
        transforms = (transforms, transforms)
    priority = _priority(settings, dimensions, "grid")
    if len(priority) > 1:
        raise BodyError(f"model.priority for body=grid is time or depth, got {settings.priority!r}")
    for transform in transforms:
        _check_transform(transform, "grid")
    return {
        "tied": settings.tied,
        "time_transform": transforms[0],
        "depth_transform": transforms[1],
        "priority": dimensions[priority[0]] if priority else None,
        "schedule": _schedule(settings, ("layerwise", "wavefront", "naive"), "grid"),
    }


def _check_transform(name: str, body: str) -> None:
    from rnnlab.grid.block import resolve_transform

    try:
        resolve_transform(name)
    except (ValueError, KeyError) as error:
        raise _grid_error(body, error) from None


def _build_grid(settings: GridSettings, model, input_size: int) -> nn.Module:
    from rnnlab.grid import GridLSTM

    try:
        grid = GridLSTM(input_size, model.hidden_size, model.num_layers, **_grid_options(settings))
    except (ValueError, TypeError, KeyError) as error:
        raise _grid_error("grid", error) from None
    return GridBody(grid)


class DeepGridBody(nn.Module):
    """A feed-forward network (``DeepGridLSTM``, ``HighwayNetwork``) applied to every step on
    its own (no state across time)."""

    def __init__(self, grid: nn.Module):
        super().__init__()
        self.grid = grid
        self.output_size = grid.output_size

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        return self.grid(x), None  # (T, B, E) -> (T, B, H)


def _deep_transform(settings: DeepGridSettings) -> str:
    transform = _transforms(settings, ("depth",), "grid_deep")
    _check_transform(transform, "grid_deep")
    return transform


def _build_deep(settings: DeepGridSettings, model, input_size: int) -> nn.Module:
    from rnnlab.grid import DeepGridLSTM

    transform = _deep_transform(settings)
    try:
        grid = DeepGridLSTM(
            input_size, model.hidden_size, model.num_layers, tied=settings.tied, transform=transform
        )
    except (ValueError, TypeError, KeyError) as error:
        raise _grid_error("grid_deep", error) from None
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


def _nd_options(settings, dimensions: tuple[str, ...], body: str) -> dict:
    """The options of a 3-D grid body (image, spectrogram), checked."""
    transforms = _transforms(settings, dimensions, body)
    for transform in (transforms,) if isinstance(transforms, str) else transforms:
        _check_transform(transform, body)
    if settings.combine not in ("sum", "concat"):
        raise BodyError(f"model.combine for body={body} is sum or concat, got {settings.combine!r}")
    corners = _corners(settings, body)
    if settings.combine != "sum" and len(corners) == 1:
        raise BodyError(
            f"model.combine={settings.combine!r} has no effect on body={body} with one corner "
            f"({corners[0]}); scan from several corners (model.corners=all) or leave it at sum"
        )
    return {
        "tied": settings.tied,
        "transforms": transforms,
        "priority": _priority(settings, dimensions, body),
        "corners": corners,
        "combine": settings.combine,
        "schedule": _schedule(settings, ("wavefront", "naive"), body),
    }


def _image_options(settings: ImageGridSettings) -> dict:
    if settings.patch < 1:
        raise BodyError(f"model.patch for body=grid_image must be >= 1, got {settings.patch}")
    return _nd_options(settings, ("rows", "columns", "depth"), "grid_image")


def _build_image(settings: ImageGridSettings, model, input_size: int) -> nn.Module:
    from rnnlab.grid import ImageGridLSTM

    options = _image_options(settings)
    try:
        grid = ImageGridLSTM(
            settings.patch * settings.patch, model.hidden_size, model.num_layers, **options
        )
    except (ValueError, TypeError, KeyError) as error:
        raise _grid_error("grid_image", error) from None
    return ImageGridBody(grid, settings.patch)


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


def _spectrogram_options(settings: SpectrogramGridSettings) -> dict:
    if settings.band_size < 1 or (settings.band_stride is not None and settings.band_stride < 1):
        raise BodyError(
            "model.band_size and model.band_stride of body=grid_spectrogram must be >= 1, got "
            f"{settings.band_size} and {settings.band_stride}"
        )
    return _nd_options(settings, ("time", "bands", "depth"), "grid_spectrogram")


def _build_spectrogram(settings: SpectrogramGridSettings, model, input_size: int) -> nn.Module:
    from rnnlab.grid import SpectrogramGridLSTM

    options = _spectrogram_options(settings)
    stride = settings.band_stride or settings.band_size
    if settings.band_size > input_size:
        raise BodyError(
            f"body=grid_spectrogram needs 1 <= model.band_size <= the task's {input_size} "
            f"features and model.band_stride >= 1; got band_size={settings.band_size}, "
            f"band_stride={settings.band_stride}"
        )
    try:
        grid = SpectrogramGridLSTM(
            settings.band_size, model.hidden_size, model.num_layers, band_stride=stride, **options
        )
    except (ValueError, TypeError, KeyError) as error:
        raise _grid_error("grid_spectrogram", error) from None
    bands = (input_size - settings.band_size) // stride + 1
    return SpectrogramGridBody(grid, bands, options["corners"])


def _check_highway(settings: HighwaySettings) -> None:
    from rnnlab.grid.highway import ACTIVATIONS

    if settings.activation not in ACTIVATIONS:
        raise BodyError(f"model.activation for body=highway is one of {', '.join(ACTIVATIONS)}; "
                        f"got {settings.activation!r}")


def _build_highway(settings: HighwaySettings, model, input_size: int) -> nn.Module:
    from rnnlab.grid import HighwayNetwork

    _check_highway(settings)
    return DeepGridBody(HighwayNetwork(input_size, model.hidden_size, model.num_layers,
                                       settings.activation, settings.transform_bias))


def _check_freq_time(settings: FreqTimeSettings) -> None:
    _check_cell_name(settings.cell)
    if settings.band_size < 1 or (settings.band_stride or 1) < 1 or settings.frequency_size < 1:
        raise BodyError(
            "model.band_size, model.band_stride and model.frequency_size of body=freq_time must "
            f"be >= 1, got {settings.band_size}, {settings.band_stride}, {settings.frequency_size}"
        )


def _build_freq_time(settings: FreqTimeSettings, model, input_size: int) -> nn.Module:
    from rnnlab.models import FreqTimeLSTM

    _check_freq_time(settings)
    if settings.band_size > input_size:
        raise BodyError(f"model.band_size={settings.band_size} of body=freq_time exceeds the "
                        f"task's {input_size} features")
    return FreqTimeLSTM(
        input_size, model.hidden_size, model.num_layers, band_size=settings.band_size,
        band_stride=settings.band_stride, frequency_size=settings.frequency_size,
        bidirectional=settings.bidirectional, cell=settings.cell,
    )


def _check_seq2seq(settings: Seq2SeqSettings) -> None:
    _check_cell_name(settings.cell)
    if settings.attention_size is not None and settings.attention_size < 1:
        raise BodyError(f"model.attention_size must be >= 1, got {settings.attention_size}")


def _build_seq2seq(settings: Seq2SeqSettings, model, input_size: int) -> nn.Module:
    from rnnlab.models import AttentionSeq2Seq
    from rnnlab.tasks.translation import PAD_ID, SEP_ID

    _check_seq2seq(settings)
    return AttentionSeq2Seq(
        input_size, model.embedding_size or model.hidden_size, model.hidden_size,
        model.num_layers, separator=SEP_ID, pad=PAD_ID, cell=settings.cell,
        attention_size=settings.attention_size,
    )


def _reencoder_transforms(settings: ReencoderSettings):
    transforms = _transforms(settings, ("target", "source", "depth"), "reencoder")
    for transform in (transforms,) if isinstance(transforms, str) else transforms:
        _check_transform(transform, "reencoder")
    return transforms


def _build_reencoder(settings: ReencoderSettings, model, input_size: int) -> nn.Module:
    from rnnlab.models import Reencoder
    from rnnlab.tasks.translation import PAD_ID, SEP_ID

    transforms = _reencoder_transforms(settings)
    try:
        return Reencoder(
            input_size, model.embedding_size or model.hidden_size, model.hidden_size,
            model.num_layers, separator=SEP_ID, pad=PAD_ID, tied=settings.tied,
            transforms=transforms,
        )
    except (ValueError, TypeError, KeyError) as error:
        raise _grid_error("reencoder", error) from None


BODIES: dict[str, Body] = {
    "stack": Body(
        "layers of one cell (rnnlab.RNN); --model.cell=NAME",
        StackSettings,
        _build_stack,
        reads_future=lambda s: s.bidirectional,
        layer_dropout=True,
        label=lambda s: Path(s.cell).stem,  # cells/x.json: x
        check=_check_stack,
        noun="stack",
    ),
    "grid": Body(
        "2-D Grid LSTM, time x depth (rnnlab.GridLSTM, Kalchbrenner et al. 2016)",
        GridSettings,
        _build_grid,
        check=_grid_options,
        noun="Grid LSTM",
    ),
    "grid_deep": Body(
        "1-D Grid LSTM along depth at every step, no recurrence in time (rnnlab.grid."
        "DeepGridLSTM)",
        DeepGridSettings,
        _build_deep,
        check=_deep_transform,
        noun="1-D Grid LSTM",
    ),
    "grid_image": Body(
        "3-D Grid LSTM over the whole (T x F) input as an image of patches, pooled; classifies "
        "(rnnlab.grid.ImageGridLSTM)",
        ImageGridSettings,
        _build_image,
        reads_future=lambda s: True,
        raw_input=True,
        per_sequence=True,
        check=_image_options,
        noun="3-D image Grid LSTM",
    ),
    "grid_spectrogram": Body(
        "3-D Grid LSTM over time x frequency bands of the input features (rnnlab.grid."
        "SpectrogramGridLSTM)",
        SpectrogramGridSettings,
        _build_spectrogram,
        reads_future=lambda s: any(c.startswith("bottom") for c in _corners(s, "grid_spectrogram")),
        raw_input=True,
        check=_spectrogram_options,
        noun="3-D spectrogram Grid LSTM",
    ),
    "highway": Body(
        "Highway network at every step, no recurrence in time (rnnlab.grid.HighwayNetwork, "
        "Srivastava et al. 2015), the 1-D grid's feed-forward relative",
        HighwaySettings,
        _build_highway,
        check=_check_highway,
        noun="Highway network",
    ),
    "freq_time": Body(
        "F-T-LSTM: an LSTM over the frequency bands of each frame feeds an LSTM over time "
        "(rnnlab.models.FreqTimeLSTM, Li et al. 2015); speech",
        FreqTimeSettings,
        _build_freq_time,
        reads_future=lambda s: s.bidirectional,
        raw_input=True,
        check=_check_freq_time,
        noun="F-T-LSTM",
    ),
    "seq2seq": Body(
        "encoder-decoder with additive attention (rnnlab.models.AttentionSeq2Seq, Bahdanau "
        "et al. 2015); translation tasks",
        Seq2SeqSettings,
        _build_seq2seq,
        token_input=True,
        check=_check_seq2seq,
        noun="attention encoder-decoder",
    ),
    "reencoder": Body(
        "3-D Grid LSTM over target x source x depth instead of an encoder-decoder "
        "(rnnlab.models.Reencoder, Kalchbrenner et al. 2016); translation tasks",
        ReencoderSettings,
        _build_reencoder,
        token_input=True,
        check=_reencoder_transforms,
        noun="Reencoder (3-D Grid LSTM)",
    ),
}


# --- settings as ModelConfig fields -------------------------------------------------------------
def settings_fields() -> dict[str, tuple[Any, Any]]:
    """Every body setting: name -> (type, default), in registry order. A name shared by several
    bodies must have one type and one default (checked here)."""
    out: dict[str, tuple[Any, Any]] = {}
    for name, body in BODIES.items():
        hints = typing.get_type_hints(body.settings)
        for f in dataclasses.fields(body.settings):
            entry = (hints[f.name], f.default)
            if f.name in out and out[f.name] != entry:
                raise TypeError(
                    f"body {name!r} declares setting {f.name!r} as {entry}, another body as "
                    f"{out[f.name]}; a shared setting needs one type and one default"
                )
            out.setdefault(f.name, entry)
    return out


def body_settings(body: str) -> list[str]:
    """The setting names body ``body`` reads."""
    return [f.name for f in dataclasses.fields(BODIES[body].settings)]


def settings_of(model_config) -> Any:
    """The chosen body's settings dataclass, filled from ``model_config``'s fields."""
    body = BODIES[model_config.body]
    return body.settings(**{n: getattr(model_config, n) for n in body_settings(model_config.body)})


def check_settings(model_config) -> None:
    """Refuse settings the chosen body does not read (unless left at their default), and a
    ``model.dropout`` the body cannot apply between its layers."""
    name = model_config.body
    if name not in BODIES:
        raise BodyError(f"model.body must be one of {', '.join(BODIES)}; got {name!r}")
    body, reads = BODIES[name], set(body_settings(name))
    for setting, (_, default) in settings_fields().items():
        value = getattr(model_config, setting)
        if setting not in reads and value != default:
            raise BodyError(
                f"model.{setting}={value!r} has no effect on body={name}; leave it at its default "
                f"({default!r}) or choose a body that reads it (body={name} reads: "
                f"{', '.join(sorted(reads)) or 'nothing'})"
            )
    if model_config.dropout > 0 and model_config.num_layers > 1 and not body.layer_dropout:
        raise BodyError(
            f"model.dropout={model_config.dropout} cannot act between the layers of body={name} "
            "(its layers are joined inside the grid); set model.dropout=0 or use body=stack"
        )
    body.check(settings_of(model_config))
    if body.raw_input and model_config.embedding_size is not None:
        raise BodyError(
            f"model.embedding_size has no effect on body={name}, which reads the task's features "
            "directly; leave it unset"
        )


def check_task(model_config, task_input, task_output, causal: bool, task_name: str,
               pairs: bool = False) -> None:
    """Refuse a body that cannot serve the task: one that reads the future on a causal task,
    a per-sequence body on a per-step task, a raw-input body on token input, an
    encoder-decoder on a task without ``source=target`` pairs."""
    from rnnlab.tasks.base import Classes, Tokens

    name = model_config.body
    body = BODIES[name]
    settings = settings_of(model_config)
    if causal and body.reads_future(settings):
        raise BodyError(
            f"body={name} as configured ({describe(model_config)}) reads inputs after step t, "
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


def label(model_config) -> str:
    """A short name of the body: the cell for a stack, else the body's name."""
    body = BODIES[model_config.body]
    return body.label(settings_of(model_config)) if body.label else model_config.body


def describe(model_config) -> str:
    """The body in words with its settings that differ from their defaults, e.g. ``lstm stack
    (bidirectional)`` or ``grid (priority=time, tied)``."""
    name = model_config.body
    settings = settings_of(model_config)
    defaults = BODIES[name].settings()
    changed = [
        f.name if getattr(settings, f.name) is True else f"{f.name}={getattr(settings, f.name)}"
        for f in dataclasses.fields(settings)
        if f.name != "cell" and getattr(settings, f.name) != getattr(defaults, f.name)
    ]
    body = BODIES[name]
    what = f"{label(model_config)} {body.noun}" if body.label else body.noun
    return what + (f" ({', '.join(changed)})" if changed else "")


def build(model_config, input_size: int) -> nn.Module:
    """The body module for ``model_config`` (checked), reading ``input_size`` features."""
    check_settings(model_config)
    body = BODIES[model_config.body]
    return body.build(settings_of(model_config), model_config, input_size)


__all__ = ["BODIES", "Body", "BodyError", "body_settings", "build", "check_settings",
           "check_task", "label", "settings_fields", "settings_of"]
