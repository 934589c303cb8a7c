"""``python -m mlejax`` (and the console script ``mlejax``): the command line of ``docs/cli.md``."""

import sys

from mlejax._src.cli import main

if __name__ == "__main__":
    sys.exit(main())
