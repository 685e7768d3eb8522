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


def _announce_needs(profile: str, only: list[str] | None, overrides: dict[str, Any]) -> None:
    """Print what the run will need (disk, memory, time) before it starts: every profile but
    ``quick`` (whose needs the README gives) can fill a disk or run for days."""
    from vssl_core.cli.catalogue import needs_text, profile_needs
    from vssl_core.repro.paths import repo_root
    from vssl_core.repro.regenerate import list_notebooks

    try:
        chosen = [b.stem for b in list_notebooks(repo_root() / "notebooks", only)]
        text = needs_text(profile_needs(profile, chosen, overrides))
    except (DataError, ValueError, KeyError) as exc:  # the run itself reports bad names and values
        print(f"regenerate: the {profile!r} profile's needs could not be estimated ({exc})", file=sys.stderr)
        return
    print(f"The {profile!r} profile, notebooks {', '.join(chosen)}, needs (rough estimates; README, "
          f"'The paper profile: protocol, disk, memory, time'):\n{text}", flush=True)


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
    if args.profile != "quick":
        _announce_needs(args.profile, args.only, dict(args.param))
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
