"""`python -m streamlsm`: the same as the `streamlsm` command."""

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
