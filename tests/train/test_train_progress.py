"""Progress display: a bar on a terminal only; TensorBoard refused with the install line when
missing."""

import io
import json

import pytest
from train_helpers import tiny_config

from rnnlab.train.progress import Progress, TensorBoard
from rnnlab.train.trainer import train


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_with_loss_metric_and_speed_on_a_terminal():
    stream = Terminal()
    progress = Progress(10, stream=stream)
    progress.update(1, loss=2.5, bits_per_char=3.6, tok_s=12345.0)
    progress.update(1)
    progress.note("a line")
    progress.close()
    text = stream.getvalue()
    assert "loss=2.5" in text and "bits_per_char=3.6" in text and "tok_s=12345" in text
    assert "a line" in text


def test_plain_lines_without_a_terminal_and_nothing_when_quiet():
    stream = io.StringIO()
    progress = Progress(10, stream=stream)
    progress.update(1, loss=2.5)
    progress.note("step 1: valid")
    assert stream.getvalue() == "step 1: valid\n"  # no bar drawing characters
    quiet = io.StringIO()
    progress = Progress(10, stream=quiet, quiet=True)
    progress.update(1, loss=2.5)
    progress.note("hidden")
    assert quiet.getvalue() == ""


def test_training_shows_progress_on_a_terminal(tmp_path):
    stream = Terminal()
    config = tiny_config("train.max_steps=4", "train.eval_every=2", "train.log_every=1",
                         "run.quiet=false", f"run.dir={tmp_path / 'r'}")
    train(config, stream=stream)
    text = stream.getvalue()
    assert "tok_s=" in text and "4/4" in text and "valid" in text


def test_tensorboard_flag(tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        board = TensorBoard(None)
        assert not board.available
        board.scalars("train", {"loss": 1.0}, 1)  # no directory asked for: a no-op
        with pytest.raises(ImportError, match=r"pip install -e '\.\[tensorboard\]'"):
            TensorBoard(tmp_path / "tb")
        config = tiny_config("train.max_steps=2", "run.tensorboard=true",
                             f"run.dir={tmp_path / 'r'}")
        with pytest.raises(ImportError, match="tensorboard"):
            train(config)
        return
    config = tiny_config("train.max_steps=2", "train.eval_every=1", "run.tensorboard=true",
                         f"run.dir={tmp_path / 'r'}")
    train(config)
    assert any((tmp_path / "r" / "tensorboard").iterdir())


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_runs_still_record_metrics(tmp_path, quiet, capsys):
    config = tiny_config("train.max_steps=2", "train.eval_every=1",
                         f"run.quiet={str(quiet).lower()}", f"run.dir={tmp_path / 'r'}")
    train(config)
    err = capsys.readouterr().err
    assert ("valid" in err) is (not quiet)
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert any(json.loads(line)["split"] == "valid" for line in lines)
