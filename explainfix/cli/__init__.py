"""``explainfix <command>``: the command-line interface.

Each command lives in its own module of this package and defines ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> int``. Commands are discovered
automatically, so adding one needs no edit here.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def _commands():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield info.name.replace("_", "-"), importlib.import_module(f"{__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    from explainfix import __version__

    parser = argparse.ArgumentParser(
        prog="explainfix",
        description="Fixed spatial filters, ExplainSteer explanations and ChannelPrune pruning for CNNs.",
    )
    parser.add_argument("--version", action="version", version=f"explainfix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _commands():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        # files are written atomically (complete or not at all); a partly replaced output set is rolled back
        print(f"explainfix {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError, RuntimeError) as err:
        print(f"explainfix {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
