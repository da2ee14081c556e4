"""Opening a study on a storage: created once, named once, and checked to be the one asked for.

Both ``rnnlab study`` and ``rnnlab search`` keep, in a user attribute of each Optuna study, what
defines its trials (the study's search space and settings under ``space``, the search's options
under ``search``): the study's **identity**. A later run under the same name must ask for the
same identity, or it would mix trials of two distributions. :func:`open_study` is the one place
that creates a study or loads it and checks it::

    study = open_study(storage, "greff.jsb.cifg", direction="minimize",
                       metric_name="valid nll", attrs={"space": fingerprint, ...},
                       identity="space")

:func:`check_study` is the read-only half: a caller opening several studies checks all of them
first, so that a refused run leaves the storage exactly as it was.
"""

from __future__ import annotations

import warnings

import optuna


class StudyMismatch(ValueError):
    """An existing study is not the one asked for; the caller says what to do.

    ``stored_direction`` / ``direction``: the study's optimisation direction and the one asked
    for, when they differ (else None). ``differences``: ``(path, stored, asked)`` of each
    differing entry of the identity (``"budget.hidden"``, nested dicts joined by dots).
    """

    def __init__(self, name: str, *, stored_direction: str | None = None,
                 direction: str | None = None, differences=()):
        self.name = name
        self.stored_direction, self.direction = stored_direction, direction
        self.differences = list(differences)
        if stored_direction is not None:
            text = f"study {name} exists with direction {stored_direction}, not {direction}"
        else:
            text = f"study {name} exists with another identity: " + ", ".join(
                f"{path}: {old!r} -> {new!r}" for path, old, new in self.differences)
        super().__init__(text)


def differences(stored, asked, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(path, stored value, asked value)`` of every entry in which two nested dicts differ,
    in ``asked``'s key order (keys only ``stored`` has come last)."""
    if not (isinstance(stored, dict) and isinstance(asked, dict)):
        return [] if stored == asked else [(prefix.rstrip(".") or "value", stored, asked)]
    found = []
    for key in [*asked, *(k for k in stored if k not in asked)]:
        a, b = stored.get(key), asked.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append((f"{prefix}{key}", a, b))
    return found


def check_study(
    storage, study_name: str, *, direction: str, identity: str, attrs: dict
) -> optuna.Study | None:
    """The existing study ``study_name`` if it is the one asked for, None if there is none;
    writes nothing.

    Raises :class:`StudyMismatch` when the study's direction is not ``direction``, or when its
    stored ``identity`` attribute differs from ``attrs[identity]`` (compared as stored: JSON
    types, so give tuples as lists). A study without the attribute (made outside rnnlab)
    passes; :func:`open_study` gives it ``attrs``.
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None
    _check(study, direction, identity, attrs)
    return study


def _check(study: optuna.Study, direction: str, identity: str, attrs: dict) -> None:
    stored_direction = study.direction.name.lower()
    if stored_direction != direction:
        raise StudyMismatch(study.study_name, stored_direction=stored_direction,
                            direction=direction)
    stored = study.user_attrs.get(identity)
    if stored is not None and stored != attrs[identity]:
        raise StudyMismatch(study.study_name, differences=differences(stored, attrs[identity]))


def open_study(
    storage,
    study_name: str,
    *,
    direction: str = "minimize",
    sampler: optuna.samplers.BaseSampler | None = None,
    metric_name: str | None = None,
    attrs: dict | None = None,
    identity: str | None = None,
) -> optuna.Study:
    """The study ``study_name``, created (``direction``) if it does not exist yet.

    An existing study is loaded, not re-created: Optuna's ``create_study(load_if_exists=True)``
    appends a create record to a journal file on every call, even for a study that exists.
    Only a study created here is given ``metric_name``, the name of its objective (what
    optuna-dashboard labels the value with, instead of "Objective 0"), and the user attributes
    ``attrs`` (what a reader of the storage needs to know what the study is).

    ``identity``: the key of ``attrs`` that defines the study's trials. An existing study is
    then checked first (:func:`check_study`: its direction and its stored identity, raising
    :class:`StudyMismatch` before anything is written), and one that has no identity yet is
    given ``attrs``.
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    except KeyError:
        study = None
    if study is not None:
        if identity is not None:
            _check(study, direction, identity, attrs)
            if identity not in study.user_attrs:  # made outside rnnlab: adopt it
                for key, value in attrs.items():
                    study.set_user_attr(key, value)
        return study
    # two workers may both get here: create_study then loads the other's study, and both write
    # the same names and attributes
    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                sampler=sampler, load_if_exists=True)
    if metric_name is not None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric_name])
    for key, value in (attrs or {}).items():
        study.set_user_attr(key, value)
    return study
