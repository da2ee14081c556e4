"""Opening storages: the embedded journal default, URLs, and one-line errors."""

from __future__ import annotations

import socket

import optuna
import pytest

from rnnlab.trials import StorageError, describe_storage, open_storage


def test_default_is_a_journal_file_in_the_directory(tmp_path):
    storage = open_storage(None, tmp_path / "study")
    assert isinstance(storage, optuna.storages.JournalStorage)
    optuna.create_study(storage=storage, study_name="x")
    assert (tmp_path / "study" / "trials.journal").exists()
    assert describe_storage(None, tmp_path / "study").endswith("study/trials.journal")


@pytest.mark.parametrize("form", ["journal:{}", "journal://{}", "{}"])
def test_journal_urls(tmp_path, form):
    path = tmp_path / "a.journal"
    storage = open_storage(form.format(path))
    optuna.create_study(storage=storage, study_name="x")
    assert path.exists()


def test_password_is_hidden():
    text = describe_storage("postgresql://me:secret@db.example:5432/x")
    assert "secret" not in text and text == "postgresql+psycopg://me:***@db.example:5432/x"


def test_unknown_scheme_is_one_line():
    with pytest.raises(StorageError, match="unknown storage 'redis://x'") as error:
        open_storage("redis://x")
    assert "\n" not in str(error.value)


def test_unreachable_postgres_is_one_line_without_password():
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StorageError) as error:
        open_storage(f"postgresql://u:hunter2@127.0.0.1:{port}/db")
    message = str(error.value)
    assert message.startswith(f"cannot reach storage postgresql+psycopg://u:***@127.0.0.1:{port}")
    assert "hunter2" not in message and "\n" not in message


def test_missing_directory_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot open journal file"):
        open_storage(None, blocker / "sub")


def test_postgres_storage_opens(postgres_url):
    storage = open_storage(postgres_url)
    study = optuna.create_study(storage=storage, study_name="open-test")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="open-test", storage=postgres_url).trials) == 2
