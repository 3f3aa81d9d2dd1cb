"""See the credit: per-token heatmaps of the advantage, gate, ratio and teacher entropy of logged rollouts.

    egrsd-inspect outputs/run --step 10

Renders a saved step of a training run (default: the latest) as its page and curves, beside its records.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from egrsd.cli import ArgumentParser, UserError, run_cli
from egrsd.credit_pages.records import NoCreditRecordsError
from egrsd.credit_pages.render import render_step


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="egrsd-inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a training output_dir (or its credit/ folder)")
    parser.add_argument("--step", type=int, default=None, help="the logging step to render (default: latest saved)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    if not Path(args.run_dir).is_dir():
        raise UserError(f"no such folder {args.run_dir}", "pass a training output_dir (or its credit/ folder)")
    try:
        html_path, png_path = render_step(args.run_dir, args.step)
    except NoCreditRecordsError as error:
        what, _, fix = str(error).partition(" — ")
        raise UserError(what, fix or None) from None
    print(f"html: {html_path}\npng: {png_path}")


if __name__ == "__main__":
    sys.exit(main())
