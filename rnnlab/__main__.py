"""``python -m rnnlab`` (and ``torchrun -m rnnlab``): the rnnlab command line."""

import sys

from rnnlab.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
