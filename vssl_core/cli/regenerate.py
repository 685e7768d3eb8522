"""``python -m vssl_core regenerate [--profile quick|paper] [--only NAME ...] [--param K=V ...]``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vssl_core.errors import DataError
from vssl_core.repro.regenerate import NotebookFailed, regenerate


def _parse_param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param expects NAME=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string
    return name.strip(), value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vssl_core regenerate",
        description="Execute the notebooks with papermill and rebuild figures/ and MANIFEST.json.")
    parser.add_argument("--profile", default="quick",
                        help="parameter profile: notebooks/profiles/<profile>.toml (default: quick)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="notebook stems or prefixes to run, e.g. 01_dataset_bias or 01")
    parser.add_argument("--param", "-p", action="append", type=_parse_param, default=[],
                        metavar="NAME=VALUE", help="override one parameter (JSON value)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        summary = regenerate(profile=args.profile, only=args.only, overrides=dict(args.param),
                             progress=not args.no_progress)
    except NotebookFailed as exc:
        print(f"regenerate: {exc}", file=sys.stderr)
        return 1
    except DataError as exc:
        print(f"regenerate: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    print(f"manifest: {summary.manifest}")
    return 0
