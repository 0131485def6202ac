"""The `streamlsm` command: a thin dispatcher over one module per command group."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from ..errors import StreamLSMError

__all__ = ["main", "build_parser", "COMMAND_MODULES", "HelpFormatter", "Parser"]

#: modules of this package (every public module, found by name); each defines
#: ``add_parser(subparsers)``, which adds its command(s) and sets ``func`` (called with the parsed
#: args, returns the exit status) by ``set_defaults``. Heavy imports go inside ``func``.
COMMAND_MODULES: tuple[str, ...] = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (unless its help already names one or it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) \
                or action.default == []:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose help lists defaults (sub-commands inherit the class)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _plugins_epilog() -> str:
    from ..plugins import PLUGIN_GROUPS, available

    lines = ["installed plug-ins (entry-point groups):"]
    for group in PLUGIN_GROUPS:
        lines.append(f"  {group}: {', '.join(sorted(available(group))) or '(none)'}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="streamlsm", description=__doc__, epilog=_plugins_epilog())
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
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
