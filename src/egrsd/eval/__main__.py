"""`python -m egrsd.eval`: the same as `egrsd-eval`."""

import sys

from egrsd.eval.cli import main


if __name__ == "__main__":
    sys.exit(main())
