"""One module per command of ``python -m vssl_core``; each exposes ``main(argv) -> int``.

The error contract every command shares (:func:`run_cli`)
--------------------------------------------------------
- A bad argument, a bad input file or an unusable output path prints ONE message on stderr,
  ``<command>: error: <file>: field '<field>': <problem>. Fix: <fix>``, and exits with status
  2; never a traceback. ``--debug`` (any command) shows the traceback as well.
- Ranges are checked while the arguments are parsed, before any work, with the ``type=``
  helpers below (:func:`probability`, :func:`non_negative_int`, ...); :class:`ArgumentParser`
  then prints one line, ``<prog>: error: argument --at: ...``, and exits with status 2.
- Ctrl-C (SIGINT) and SIGTERM raise :class:`Interrupted` in the main thread, so ``finally``
  blocks and atomic writers clean up their temporary files; the command then exits with
  ``128 + signal number`` (130, 143) after one line saying so.

A new command adopts the contract in two lines::

    from vssl_core.cli import run_cli

    def main(argv):
        return run_cli("train", _main, argv)

where ``_main(argv) -> int`` parses its arguments (``add_debug_flag`` is added for it) and may
raise :class:`~vssl_core.errors.DataError`.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from vssl_core.errors import DataError, data_error

__all__ = ["run_cli", "ArgumentParser", "add_debug_flag", "Interrupted", "signals_interrupt", "non_negative_int", "positive_int",
           "probability", "finite_float", "positive_float", "non_negative_float", "even_positive_int",
           "check_output_path", "DEBUG_FLAG"]

#: The flag every command accepts to show tracebacks.
DEBUG_FLAG = "--debug"
#: Exit status of a bad argument, input file or output path.
EXIT_USAGE = 2


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which. A KeyboardInterrupt, so every
    ``except BaseException`` / ``finally`` cleanup on the way up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_interrupt(signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, the signals ``signums`` raise :class:`Interrupted` in the main thread.

    Outside the main thread (where Python cannot install handlers) this does nothing. The
    previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_interrupted) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _message(prog: str, exc: BaseException) -> str:
    if isinstance(exc, DataError):
        return f"{prog}: error: {exc}"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return (f"{prog}: error: {where}{exc.strerror or exc}. Fix: check that the path exists "
                "and that you may read (inputs) or write (outputs) there")
    return f"{prog}: error: {exc}"


def run_cli(prog: str, main: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """Run ``main(argv)`` under the error contract of this module.

    Parameters
    ----------
    prog : str
        Command name for the messages (``"evaluate"``).
    main : callable(list of str) -> int
        The command; may raise :class:`DataError` (bad input) or ``OSError`` (a path that
        cannot be read or written), which become one message and exit status 2.
    argv : sequence of str or None
        The arguments (``sys.argv[1:]`` when None); ``--debug`` anywhere shows tracebacks.

    Returns
    -------
    int
        ``main``'s status, 2 for a bad argument or file, ``128 + signum`` when interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        with signals_interrupt():
            return int(main(args) or 0)
    except (DataError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print(_message(prog, exc), file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:
        if debug:
            traceback.print_exc()
        print(f"{prog}: interrupted by {signal.Signals(exc.signum).name}; temporary files were "
              "removed and finished outputs left as they were", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: ``<prog>: error: <message> (see <prog> --help)``, exit 2
    (instead of the whole usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Document ``--debug`` in a command's ``--help`` (:func:`run_cli` strips it before parsing)."""
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show tracebacks of errors")
    return parser


# ------------------------------------------------------------------ argparse ``type=`` helpers
def _number(text: str, kind: type) -> float | int:
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, counts that may be zero)."""
    v = _number(text, int)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is negative; give an integer >= 0")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (clip counts, worker counts)."""
    v = _number(text, int)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not positive; give an integer >= 1")
    return v


def even_positive_int(text: str) -> int:
    """A positive even integer (frame rates, so 2-fps boxes fall on frames)."""
    v = positive_int(text)
    if v % 2:
        raise argparse.ArgumentTypeError(f"{v} is odd; give an even integer (e.g. 24)")
    return v


def finite_float(text: str) -> float:
    """A finite float (no nan, no inf)."""
    v = _number(text, float)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def positive_float(text: str) -> float:
    """A finite float > 0 (durations, sizes)."""
    v = finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{v} is not positive; give a number > 0")
    return v


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is negative; give a number >= 0")
    return v


def probability(text: str) -> float:
    """A finite float in [0, 1] (probabilities, cIoU cut-offs)."""
    v = finite_float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v} is outside [0, 1]")
    return v


# ------------------------------------------------------------------ output paths
def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output_path(out: str | os.PathLike, inputs: Sequence[str | os.PathLike], field: str,
                      is_dir: bool = False) -> Path:
    """Refuse an output path that equals or lies inside an input, or cannot be written.

    Parameters
    ----------
    out : path
        The file (or folder, ``is_dir=True``) the command will write.
    inputs : sequence of path
        Files or folders the command reads.
    field : str
        The option, for the message (``"--per-sample"``).

    Returns
    -------
    Path
        ``out`` resolved.

    Raises
    ------
    DataError
        When ``out`` is an input or inside one, an input is inside ``out`` (for folders),
        ``out`` is an existing folder where a file is expected, or no existing ancestor of
        ``out`` is writable.
    """
    target = Path(out).expanduser().resolve()
    for src in inputs:
        s = Path(src).expanduser().resolve()
        if _inside(target, s) or (is_dir and _inside(s, target)):
            raise data_error(out, field, f"the output path overlaps the input {src}",
                             "write the output somewhere else; inputs are never overwritten")
    if not is_dir and target.is_dir():
        raise data_error(out, field, "is a folder", "give a file name")
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise data_error(out, field, f"cannot write under {ancestor}",
                         "choose a folder you may write to")
    if target.exists() and not os.access(target, os.W_OK) and not is_dir:
        raise data_error(out, field, "the existing file is not writable",
                         "choose another name or change its permissions")
    return target
