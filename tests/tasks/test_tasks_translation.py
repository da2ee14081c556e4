"""Translation tasks: numbers (generated, held-out numbers) and parallel (own files)."""

from __future__ import annotations

import pytest
import torch

import rnnlab.tasks as tasks
from rnnlab.tasks.translation import END, SEP, split_of


def pairs(task, batch):
    out = []
    for b in range(batch.inputs.shape[1]):
        text = task.decode(torch.cat([batch.inputs[:1, b], batch.targets[:, b]]))
        source, target = text.split(SEP, 1)
        out.append((source, target.split(END)[0]))
    return out


def test_layout_mask_and_determinism():
    task = tasks.make("numbers", valid_size=20, test_size=20)
    batch = next(task.batches("train", 4, start=3, seed=1))
    again = next(task.batches("train", 4, start=3, seed=1))
    assert torch.equal(batch.inputs, again.inputs)
    for b, (source, target) in enumerate(pairs(task, batch)):
        counted = task.decode(batch.targets[batch.mask[:, b], b])
        assert counted == target + END  # only the target and the end mark count
        assert source and target and source != target


def test_test_numbers_are_never_trained_on():
    from num2words import num2words

    task = tasks.make("numbers", max_value=99, valid_size=30, test_size=30)
    test_sources = {s for s, _ in (t.split(SEP)[0:2] for t, _ in task.examples("test"))}
    assert all(split_of(f"cardinal:{n}") == "test" for n in range(100)
               if num2words(n, lang="en") in test_sources)
    seen = set()
    for batch in zip(range(40), task.batches("train", 32)):
        seen.update(source for source, _ in pairs(task, batch[1]))
    assert seen and not seen & test_sources
    assert len(seen) > 50  # train covers most of its 80-odd numbers


def test_kinds_and_languages():
    task = tasks.make("numbers", source="en", target="de", kinds="year", valid_size=5,
                      test_size=5)
    text, start = task.examples("valid")[0]
    source, target = text.rstrip(END).split(SEP)
    assert start == len(source) + 1 and " " in source and " " not in target


@pytest.mark.parametrize("options, message", [
    (dict(kinds="fraction"), "kinds must be a comma-separated subset"),
    (dict(source="fr", target="fr"), "source and target languages must differ"),
    (dict(target="xx"), "num2words has no language 'xx'"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        tasks.make("numbers", **options)


def test_parallel_files(tmp_path):
    source, target = tmp_path / "en.txt", tmp_path / "fr.txt"
    words = [f"w{i} x{i % 7}" for i in range(200)]
    source.write_text("\n".join(words), encoding="utf-8")
    target.write_text("\n".join(w.upper() for w in words), encoding="utf-8")
    task = tasks.make("parallel", path=str(source), target_path=str(target))
    sizes = {split: len(task.by_split[split]) for split in ("train", "valid", "test")}
    assert sum(sizes.values()) == 200 and min(sizes.values()) > 5
    held = {t.split(SEP)[0] for split in ("valid", "test") for t, _ in task.examples(split)}
    trained = {t.split(SEP)[0] for t, _ in task.by_split["train"]}
    assert not held & trained
    batch = next(task.batches("train", 4))
    assert batch.mask is not None and batch.inputs.shape[1] == 4
    target.write_text("one line", encoding="utf-8")
    with pytest.raises(ValueError, match="must be aligned line by line"):
        tasks.make("parallel", path=str(source), target_path=str(target))
    with pytest.raises(ValueError, match="needs path=SOURCE_FILE and target_path"):
        tasks.make("parallel", path=str(source))


def test_numbers_say_which_sources_lie_outside_what_they_draw(monkeypatch):
    import rnnlab.tasks.translation as translation

    task = tasks.make("numbers", kinds="cardinal,year", max_value=999, valid_size=4,
                      test_size=4)
    assert task.ranges() == {"cardinal": (0, 999), "year": (1000, 2100)}
    assert task.out_of_domain("three hundred and twelve") is None
    assert task.out_of_domain("nineteen eighty-four") is None  # a year
    assert task.out_of_domain("one million") == (
        "'one million' is none of the numbers the model was trained on (en cardinals 0–999, "
        "years 1,000–2,100, as num2words writes them); its translation is a guess")
    assert task.out_of_domain("two thousand and five hundred")  # no year is written so
    assert task.out_of_domain("three hundred twelve")  # num2words writes "and"
    from num2words import num2words

    longest = max(len(num2words(v, lang="fr", to=kind)) for kind, values in
                  (("cardinal", range(1000)), ("year", range(1000, 2101))) for v in values)
    assert task.longest_target() == longest
    # a range too large to write out is checked word by word, and its longest target unknown
    monkeypatch.setattr(translation, "CHECKED_VALUES", 100)
    translation.written.cache_clear()
    try:
        assert task.out_of_domain("one million") is not None  # "million": no number says it
        assert task.out_of_domain("three hundred twelve") is None  # its words are all used
        assert task.longest_target() is None
    finally:
        translation.written.cache_clear()
