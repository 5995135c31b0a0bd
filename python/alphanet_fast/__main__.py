"""``python -m alphanet_fast``: the ``alphanet-fast`` command line."""

import sys

from alphanet_fast.cli import main

if __name__ == "__main__":
    sys.exit(main())
