"""``python -m vssl_core regenerate [--profile NAME] [--only NAME ...] [--param K=V ...] [--prune]
[--figures-dir DIR]``.

Errors follow :func:`vssl_core.cli.run_cli`: a bad profile name, notebook or parameter, or a
second regeneration of the same checkout, is one message and exit status 2 before anything
runs; a failing notebook is exit status 1 (the message names the notebook, the cell and the
error); Ctrl-C or SIGTERM removes the staging folder and exits 130 / 143 with ``figures/`` and
its manifest as they were.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vssl_core.cli import ArgumentParser, add_debug_flag, run_cli
from vssl_core.errors import DataError


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


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m vssl_core regenerate",
        description="Execute the notebooks with papermill and rebuild figures/ and MANIFEST.json.")
    parser.add_argument("--profile", default="quick",
                        help="parameter profile: notebooks/profiles/<profile>.toml (default: quick)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="notebook stems or prefixes to run, e.g. 01_dataset_bias or 01")
    parser.add_argument("--param", "-p", action="append", type=_parse_param, default=[],
                        metavar="NAME=VALUE", help="override one parameter (JSON value); "
                        "profile and output_dir are set by the runner")
    parser.add_argument("--prune", action="store_true",
                        help="remove files an earlier run of a selected notebook wrote and this "
                             "run did not (default: keep them, e.g. outputs that need real data "
                             "this checkout lacks)")
    parser.add_argument("--figures-dir", type=Path, default=None, metavar="DIR",
                        help="write the figures and MANIFEST.json here instead of figures/ "
                             "(e.g. a retrain to compare against the committed figures)")
    parser.add_argument("--wait", action="store_true",
                        help="wait for another regeneration of this checkout instead of refusing")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar and no echo of the notebooks' own output")
    return add_debug_flag(parser)


def _main(argv: list[str]) -> int:
    from vssl_core.repro.regenerate import NotebookFailed, regenerate

    args = _parser().parse_args(argv)
    if args.profile != "quick":
        _announce_needs(args.profile, args.only, dict(args.param))
    try:
        summary = regenerate(profile=args.profile, only=args.only, overrides=dict(args.param),
                             progress=not args.no_progress, prune=args.prune, wait=args.wait,
                             figures_dir=args.figures_dir)
    except NotebookFailed as exc:
        print(f"regenerate: {exc}", file=sys.stderr)
        return 1
    print(summary.table())
    notes = summary.notes()
    if notes:
        print(notes)
    print(f"manifest: {summary.manifest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("regenerate", _main, argv)
