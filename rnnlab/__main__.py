"""``python -m rnnlab`` (and ``torchrun -m rnnlab``): the rnnlab command line."""

import os
import sys

from rnnlab.cli.main import main

if __name__ == "__main__":
    status = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, everything is written and the process group is gone by now; skip the
        # interpreter's teardown, where gloo's and OpenMP's worker threads can race and abort a
        # rank at exit ("terminate called without an active exception") after a good run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
