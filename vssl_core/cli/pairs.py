"""``python -m vssl_core pairs``: summarise the evaluation pairs of an Urbansas-layout folder.

Prints a JSON object: protocol, clips, pairs, boxes, dropped (reason -> count) and skipped
(reason -> clips with unreadable media). Exit status 0 on success, 2 on a bad root or bad data.
"""
from __future__ import annotations

import argparse
import json
import sys

from vssl_core.errors import DataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vssl_core pairs",
        description="Summarise the evaluation pairs of an Urbansas-layout folder as JSON.")
    parser.add_argument("--root", required=True,
                        help="dataset folder holding annotations/, audio/ and video/")
    parser.add_argument("--protocol", choices=("flowgrad", "how_to_listen"), default="flowgrad",
                        help="pair-selection protocol (default: flowgrad)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="clips with unreadable media: fail (default) or skip and list them")
    args = parser.parse_args(argv)

    from vssl_core.data.urbansas import UrbansasDataset  # imported late: --help stays fast

    try:
        ds = UrbansasDataset(args.root, on_error=args.on_error)
        summary = ds.pairs(args.protocol).summary()
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary["root"] = str(ds.root)
    summary["skipped"] = {k: sorted(v) for k, v in sorted(ds.skipped.items())}
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
