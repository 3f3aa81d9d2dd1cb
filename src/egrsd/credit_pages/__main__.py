"""`python -m egrsd.credit_pages`: the same as `egrsd-inspect`."""

import sys

from egrsd.credit_pages.cli import main


if __name__ == "__main__":
    sys.exit(main())
