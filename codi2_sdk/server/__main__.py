"""``python -m codi2_sdk.server``: the same as ``codi2 serve``."""

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
