"""The live view: optuna-dashboard serving a study's storage on a loopback port.

``rnnlab study dashboard`` opens the same storage ``rnnlab study run`` writes (the journal file
by default, or ``--storage URL``) and serves it with optuna-dashboard (an optional extra:
``pip install -e '.[dashboard]'``), so a study in progress can be watched in a browser at
``http://127.0.0.1:PORT/dashboard``: every (task, cell) study, its trials with their parameters
and user attributes (valid / test metric, parameters, epochs, wall time), and Optuna's plots of
the value under the study's objective name (``valid nll``; rnnlab.study.runner.prepare).
"""

from __future__ import annotations

from rnnlab.study.runner import StudyError


def require():
    """optuna-dashboard's ``run_server``; raises StudyError (with the install command) when the
    package cannot be imported. ``rnnlab study dashboard`` asks before it says it is serving."""
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise StudyError(
            "the dashboard needs optuna-dashboard, which is not installed: pip install -e "
            "'.[dashboard]' in the checkout (or pip install optuna-dashboard)"
        ) from None
    return run_server


def serve(storage, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve ``storage`` until interrupted (blocks). Raises StudyError when optuna-dashboard is
    missing or the port cannot be bound."""
    run_server = require()
    try:
        run_server(storage, host=host, port=port)
    except OSError as error:
        raise StudyError(
            f"cannot serve on {host}:{port}: {error.strerror or error}; choose another --port"
        ) from None
