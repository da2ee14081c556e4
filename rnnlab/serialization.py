"""Saving rnnlab modules whole: ``torch.save(model)`` that ``torch.load`` reads with
``weights_only=True``.

torch's safe loader (``torch.load``'s default since torch 2.6) builds only tensors, plain
containers and the classes and functions one allowlists. So an rnnlab module pickles as

    rebuild(its class, its options as plain data, its parameters and buffers, its modes)

— options are ints, floats, bools, strings and tuples, lists and dicts of those, a cell is its
cell JSON (``rnnlab.lang.serialize``), a Grid LSTM transform its name — and loading calls
:func:`rebuild`, which constructs the module again from its options and puts the saved tensors
in (the same Parameter objects: ``requires_grad``, dtype, device and sharing kept; training or
eval mode kept per submodule). Allowlist what :func:`safe_globals` lists::

    torch.save(model, "model.pt")
    with torch.serialization.safe_globals(rnnlab.serialization.safe_globals()):
        model = torch.load("model.pt")                      # weights_only=True, the default

A model class of your own saved whole needs its class and the torch modules it holds too, as
torch asks of any module: ``safe_globals([MyModel, nn.Embedding, nn.Linear,
*rnnlab.serialization.safe_globals()])``. Saving the ``state_dict()`` needs no allowlist.

The classes: ``rnnlab.RNN``, ``rnnlab.cells.Cell``, and the grid networks ``GridLSTM``,
``DeepGridLSTM``, ``HighwayNetwork``, ``ImageGridLSTM``, ``SpectrogramGridLSTM`` and
``GridLSTMNd``. A module with hooks or parametrizations, or a subclass of these, pickles the
ordinary way (its internals then need allowlisting, or ``weights_only=False``), since its
options alone would not rebuild it.
"""

from __future__ import annotations

from torch import nn

_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
          "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
          "_load_state_dict_post_hooks")


def _classes() -> tuple[type, ...]:
    from .cells import Cell
    from .engine import RNN
    from .grid import (
        DeepGridLSTM,
        GridLSTM,
        GridLSTMNd,
        HighwayNetwork,
        ImageGridLSTM,
        SpectrogramGridLSTM,
    )

    return (RNN, Cell, GridLSTM, DeepGridLSTM, HighwayNetwork, ImageGridLSTM,
            SpectrogramGridLSTM, GridLSTMNd)


def safe_globals() -> list:
    """What to pass to ``torch.serialization.safe_globals(...)`` (or ``add_safe_globals``) to
    ``torch.load`` saved rnnlab modules with ``weights_only=True``: :func:`rebuild` and the
    classes it rebuilds."""
    return [rebuild, *_classes()]


def _plain(module: nn.Module) -> bool:
    """True when options and tensors say all there is: no hooks, no parametrizations."""
    from torch.nn.utils import parametrize

    return not any(getattr(m, hooks, None) for m in module.modules() for hooks in _HOOKS) \
        and not any(parametrize.is_parametrized(m) for m in module.modules())


def reduce(module: nn.Module, protocol: int):
    """``module.__reduce_ex__``: ``rebuild`` and its plain arguments (see the module
    docstring), or the ordinary pickling of a subclass or a module with hooks."""
    if type(module) not in _classes() or not _plain(module):
        return object.__reduce_ex__(module, protocol)
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(module.named_buffers(remove_duplicate=False))
    modes = {name: m.training for name, m in module.named_modules(remove_duplicate=False)}
    return rebuild, (type(module), module._pickle_config(), tensors, modes)


def rebuild(cls: type, config: dict, tensors: dict, modes: dict) -> nn.Module:
    """The module of class ``cls`` that ``reduce`` described: built from ``config`` (its
    ``_from_config``, else its constructor), then given the saved ``tensors`` (parameters and
    buffers by name) and training ``modes`` (by submodule name)."""
    if cls not in _classes():
        raise TypeError(f"rnnlab.serialization.rebuild makes rnnlab modules "
                        f"({', '.join(c.__name__ for c in _classes())}), got {cls!r}")
    from_config = getattr(cls, "_from_config", None)
    module = from_config(config) if from_config is not None else cls(**_restore(config))
    built = dict(module.named_parameters(remove_duplicate=False))
    built.update(module.named_buffers(remove_duplicate=False))
    if built.keys() != tensors.keys() or any(
            tuple(built[k].shape) != tuple(t.shape) for k, t in tensors.items()):
        differ = sorted(k for k in built.keys() | tensors.keys()
                        if k not in built or k not in tensors
                        or tuple(built[k].shape) != tuple(tensors[k].shape))
        raise ValueError(
            f"the saved {cls.__name__} does not match what this rnnlab builds from its options "
            f"(tensors {', '.join(differ[:4])}{' …' if len(differ) > 4 else ''} differ); load "
            "it with the rnnlab version that saved it, or save and load its state_dict()"
        )
    for name, tensor in tensors.items():
        prefix, _, leaf = name.rpartition(".")
        owner = module.get_submodule(prefix)
        slots = owner._parameters if leaf in owner._parameters else owner._buffers
        slots[leaf] = tensor
    for name, submodule in module.named_modules(remove_duplicate=False):
        submodule.training = modes.get(name, submodule.training)
    return module


# ---- Grid LSTM transforms as plain data --------------------------------------------------------
def transform_data(transform):
    """A Grid LSTM transform as plain data: its name in ``TRANSFORMS``, ``"cell:<name>"`` or
    ``{"cell": name, "options": {...}}`` for a zoo cell; a Transform of your own stays itself
    (pickled as its class: allowlist it)."""
    from .grid.cell_transform import CellTransform
    from .grid.transform import TRANSFORMS

    for name, known in TRANSFORMS.items():
        if transform == known:
            return name
    if isinstance(transform, CellTransform):
        if not transform.options:
            return f"cell:{transform.name}"
        return {"cell": transform.name, "options": dict(transform.options)}
    return transform


def _transform(data):
    from .grid.cell_transform import CellTransform

    if isinstance(data, dict):
        return CellTransform(data["cell"], **data["options"])
    return data


def _restore(config: dict) -> dict:
    """Constructor arguments from ``config``: transforms given as data become transforms."""
    restored = dict(config)
    for key, value in config.items():
        if key.endswith("transform"):
            restored[key] = _transform(value)
        elif key == "transforms":
            restored[key] = (tuple(_transform(v) for v in value)
                             if isinstance(value, (tuple, list)) else _transform(value))
    return restored
