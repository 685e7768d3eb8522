"""``python -m vssl_core compare OLD NEW``: every estimate of NEW's tables against OLD's 95% intervals.

Prints one line per estimate (table, row, estimate, committed value and interval, new value,
difference, inside or not) and a summary; ``--csv FILE`` also writes the comparison. Exit status 0
(a comparison is a report, not a test); 2 when a folder is missing.
"""
from __future__ import annotations

from pathlib import Path

from vssl_core.cli import ArgumentParser, add_debug_flag, run_cli


def _main(argv: list[str]) -> int:
    p = ArgumentParser(prog="python -m vssl_core compare", description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path, help="the committed figures (e.g. figures/)")
    p.add_argument("new", type=Path, help="a new regeneration's figures")
    p.add_argument("--csv", type=Path, default=None, help="also write the comparison here")
    args = add_debug_flag(p).parse_args(argv)
    from vssl_core.errors import DataError
    from vssl_core.repro.compare import compare_folders, summary

    for folder in (args.old, args.new):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder. Fix: give two figure folders (e.g. figures/ and a "
                            "regeneration's --figures-dir)")
    table = compare_folders(args.old, args.new)
    if not table.empty:
        with __import__("pandas").option_context("display.max_rows", None, "display.width", 200):
            print(table.round(4).to_string(index=False))
    print(summary(table))
    if args.csv is not None and not table.empty:
        from vssl_core.repro.atomic import write_text

        write_text(args.csv, table.to_csv(index=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``compare`` command under the shared error contract (:func:`vssl_core.cli.run_cli`)."""
    return run_cli("compare", _main, argv)
