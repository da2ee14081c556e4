"""Seconds per training step of each network of a reproduction, for its equal-time view.

A reproduction compares networks at equal steps; this measures what a step of each costs on
this machine, so that the entry's learning curves can be read at equal time
(``rnnlab.reproduce.equal_time``). One seed's run of every network of the entry's equal-time
views is built from the entry's settings exactly as its training run builds it; then, round
after round (the order reversed every other round), each takes ``--steps`` training steps
(forward, backward, clipping, the optimiser's step; no validation), all in this one process.
The median of the rounds is kept in ``RESULTS/ENTRY/step-time.json`` with the CPU model and
the thread count, and the views are drawn from the runs kept there (``equal-time-*.png``, the
curves as .csv, the values at equal time as ``*-at-t.csv``). Run it on an idle machine::

    python benchmarks/equal_time.py seed-char                  # 20 steps x 5 rounds, 1 thread
    python benchmarks/equal_time.py seed-char --steps 10 --rounds 3 --no-write
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from rnnlab import machine
from rnnlab.reproduce import entries, equal_time
from rnnlab.reproduce.runner import budget_settings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("entry", nargs="?", default="seed-char")
    parser.add_argument("--results", default="results",
                        help="where the entry's runs are kept [default: results]")
    parser.add_argument("--steps", type=int, default=20, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true",
                        help="print the step times only; write and draw nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        entry = entries.get(args.entry)
    except ValueError as error:  # an unknown entry: one line naming the known ones
        parser.error(str(error))
    if not entry.equal_time:
        parser.error(f"entry {args.entry!r} has no equal-time view")
    labels = list(dict.fromkeys(labels[0] for view in entry.equal_time
                                for labels in view["networks"].values()))
    print(machine.line(), flush=True)
    print(f"{args.entry}: {len(labels)} networks, {args.rounds} rounds of {args.steps} "
          "training steps each, interleaved", flush=True)
    configs = {}
    for label in labels:
        config = entry.run(label).config(budget_settings(entry, "full"))
        config.run.threads = args.threads
        configs[label] = config

    def report(r, last):
        print(f"round {r + 1}: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in last.items()),
              flush=True)

    times = equal_time.measure(configs, steps=args.steps, rounds=args.rounds, progress=report)
    medians = {label: statistics.median(values) for label, values in times.items()}
    for label, value in medians.items():
        print(f"{label:>20}: {value * 1000:8.1f} ms per step (median of {args.rounds})")
    if args.no_write:
        return
    root = Path(args.results) / args.entry
    record = {"machine": machine.describe(), "threads": args.threads, "steps": args.steps,
              "rounds": args.rounds, "seconds_per_step": medians, "rounds_seconds": times,
              "command": f"python benchmarks/equal_time.py {args.entry} --steps {args.steps} "
                         f"--rounds {args.rounds} --threads {args.threads}"}
    root.mkdir(parents=True, exist_ok=True)
    (root / equal_time.STEP_TIME).write_text(json.dumps(record, indent=2) + "\n")
    for path in equal_time.plot(entry, root, root, record):
        print(f"wrote {path}")
    for view in entry.equal_time:
        read = equal_time.at_equal_time(root, view, medians)
        if not read:
            print(f"{view['title']}: no finished runs yet")
            continue
        print(f"{view['title']} at t* = {read[0]['t_star']:.0f} s:")
        for r in read:
            test = (f", {r['diff']:+.3f} vs the first [{r['low']:+.3f}, {r['high']:+.3f}], "
                    f"p = {r['p']:.3f}" if "p" in r else "")
            print(f"  {r['network']:>24}: {r['steps']:6.0f} steps, {r['mean']:.3f} ± "
                  f"{r['std']:.3f} (n={r['n']}){test}")


if __name__ == "__main__":
    main()
