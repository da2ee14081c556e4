"""Print the README's set-up commands, one per line: the text CI runs, verbatim.

The README's "## Set up" section holds exactly two fenced ``bash`` blocks of one line each: the
first installs rnnlab and runs the main job, the second installs the test extras and runs the
tests. ``.ci/run`` runs what this prints, and ``tests/test_packaging.py`` checks the section, so
the README cannot drift from what CI runs.

    python .ci/readme_commands.py            # both commands
    python .ci/readme_commands.py main       # the first
    python .ci/readme_commands.py tests      # the second
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def setup_commands(text: str) -> list[str]:
    """The one-line ``bash`` blocks of the README's "## Set up" section, in order."""
    section = re.search(r"^## Set up\n(.*?)(?=^## )", text, re.S | re.M)
    if section is None:
        raise ValueError("README.md has no '## Set up' section")
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1), re.S | re.M)
    commands = [b.strip() for b in blocks]
    if len(commands) != 2 or any("\n" in c or not c for c in commands):
        raise ValueError(
            f"README.md's set-up section must hold exactly two one-line bash blocks, got {blocks!r}"
        )
    return commands


def main(argv: list[str]) -> int:
    commands = setup_commands(README.read_text(encoding="utf-8"))
    which = argv[1] if len(argv) > 1 else "all"
    chosen = {"main": commands[:1], "tests": commands[1:], "all": commands}.get(which)
    if chosen is None:
        print(f"usage: {argv[0]} [main|tests|all]", file=sys.stderr)
        return 2
    print("\n".join(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
