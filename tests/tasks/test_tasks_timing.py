"""The timing tasks (Gers et al. 2002): targets from the spike times, and held-out examples."""

import numpy as np
import pytest

from rnnlab.tasks.timing import SpikeDelays, TimedSpikes


def test_msd_targets_are_the_delays_at_spike_steps():
    task = SpikeDelays(min_delay=3, max_delay=6, spikes=4, valid_size=20, test_size=20)
    batch = next(task.batches("train", 8, seed=1))
    for column in range(8):
        spikes = np.flatnonzero(batch.inputs[:, column, 0].numpy())
        assert len(spikes) == 4
        counted = np.flatnonzero(batch.mask[:, column].numpy())
        assert list(counted) == list(spikes[1:])
        delays = batch.targets[counted, column].numpy() + task.min_delay
        assert list(delays) == list(np.diff(spikes))


def test_msd_holds_out_valid_and_test_when_the_space_allows():
    task = SpikeDelays(valid_size=50, test_size=50)  # 11 ** 4 distinct sequences
    assert task.exclude_heldout and task.info["heldout"]
    held = task.heldout_keys()
    for _, batch in zip(range(5), task.batches("train", 64, seed=0)):
        times = [tuple(np.flatnonzero(batch.inputs[:, b, 0].numpy())) for b in range(64)]
        assert all(np.asarray(t, dtype=np.int64).tobytes() not in held for t in times)


def test_msd_long_trains_on_its_sixteen_sequences():
    """49 vs 50 steps with 4 spikes has 16 distinct sequences: nothing can be held out, and
    training must still draw batches (it raised 'almost every example drawn ...')."""
    task = SpikeDelays(min_delay=49, max_delay=50)
    assert not task.exclude_heldout and task.info["heldout"] is False
    batch = next(task.batches("train", 32, seed=0))
    assert batch.inputs.shape == (200, 32, 1)
    assert set(batch.targets[batch.mask].tolist()) <= {0, 1}


def test_gts_spikes_every_period_after_the_cue():
    task = TimedSpikes(period=5, length=30, valid_size=10, test_size=10)
    batch = next(task.batches("train", 6, seed=2))
    for column in range(6):
        cue = int(np.flatnonzero(batch.inputs[:, column, 0].numpy())[0])
        spikes = np.flatnonzero(batch.targets[:, column, 0].numpy())
        assert list(spikes) == list(range(cue + 5, 30, 5))


@pytest.mark.parametrize("bad", [{"max_delay": 5, "min_delay": 6}, {"spikes": 1}])
def test_msd_refuses_bad_settings(bad):
    with pytest.raises(ValueError):
        SpikeDelays(**bad)
