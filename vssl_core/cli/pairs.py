"""``python -m vssl_core pairs``: summarise the evaluation pairs of an Urbansas-layout folder.

Prints a JSON object: protocol, clips, pairs, boxes, dropped (reason -> count) and skipped
(reason -> clips with unreadable media or audio shorter than their annotations). Exit status 0
on success, 2 on a bad root or bad data (a message naming the file, the column and the row of a
bad CSV cell; :func:`vssl_core.cli.run_cli`).
"""
from __future__ import annotations

import argparse
import json
import sys

from vssl_core.cli import ArgumentParser, add_debug_flag, run_cli


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m vssl_core pairs",
        description="Summarise the evaluation pairs of an Urbansas-layout folder as JSON.")
    parser.add_argument("--root", required=True,
                        help="dataset folder holding annotations/, audio/ and video/")
    parser.add_argument("--protocol", choices=("flowgrad", "how_to_listen"), default="flowgrad",
                        help="pair-selection protocol (default: flowgrad)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="clips with unreadable or truncated media: fail (default) or skip "
                             "and list them")
    return add_debug_flag(parser)


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from vssl_core.data.urbansas import UrbansasDataset  # imported late: --help stays fast

    ds = UrbansasDataset(args.root, on_error=args.on_error)
    summary = ds.pairs(args.protocol).summary()
    summary["root"] = str(ds.root)
    summary["skipped"] = {k: sorted(v) for k, v in sorted(ds.skipped.items())}
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("pairs", _main, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
