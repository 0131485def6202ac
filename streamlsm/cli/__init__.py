"""The `streamlsm` command: a thin dispatcher over one module per command group."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from ..errors import StreamLSMError

__all__ = ["main", "COMMAND_MODULES"]

#: modules of this package (every public module, found by name); each defines
#: ``add_parser(subparsers)``, which adds its command(s) and sets ``func`` (called with the parsed
#: args, returns the exit status) by ``set_defaults``. Heavy imports go inside ``func``.
COMMAND_MODULES: tuple[str, ...] = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlsm", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        mod = importlib.import_module(f"{__name__}.{module}")
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StreamLSMError as exc:
        print(f"streamlsm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError, TypeError, ArithmeticError, MemoryError, RecursionError, LookupError) as exc:
        # bad input the commands did not name themselves: still one line, never a traceback
        # (STREAMLSM_DEBUG=1 shows the traceback for a bug report)
        if os.environ.get("STREAMLSM_DEBUG"):
            raise
        print(f"streamlsm: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
