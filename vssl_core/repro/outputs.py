"""Deterministic figure and table files.

Every figure is saved as PNG and PDF with one fixed style and no timestamps, software
versions or random ids inside the files; every table as CSV and Markdown with fixed float
formatting. Two runs that draw the same data therefore write byte-identical files.

Backends: this module never selects a matplotlib backend. In Jupyter the kernel's inline
backend stays in place, so figures show in the notebook and are embedded in executed copies;
in a script without a display matplotlib falls back to its non-interactive ``agg`` by itself.
Saving does not depend on the backend (``savefig`` renders PNG with Agg and PDF with the PDF
backend whatever the canvas is), so the files are the same bytes either way.

Notebooks write into ``output_dir``: a scratch folder ``build/interactive/<notebook>/`` when
run by hand, a staging folder that the regeneration runner then promotes into ``figures/``
(with ``MANIFEST.json``). Writing into ``figures/`` by hand warns: the manifest would no longer
describe the files. Files are written atomically, so a crash never leaves half a PNG behind.
"""
from __future__ import annotations

import io
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from vssl_core.repro import atomic
from vssl_core.repro.paths import figures_dir

#: The one style of every figure (font sizes in points, dpi of the PNG).
STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.interpolation": "nearest",
    "pdf.fonttype": 42,
    "svg.hashsalt": "vssl-companion",
    "path.simplify": True,
}

_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None}


def use_style() -> None:
    """Apply :data:`STYLE` to matplotlib (call once at the top of a notebook)."""
    matplotlib.rcParams.update(STYLE)


#: Folders inside ``figures/`` already warned about (one warning per folder and process).
_WARNED: set[Path] = set()


class Written(list):
    """The paths a save function wrote (a plain list), shown in a notebook as one short line
    (``wrote fig.png, fig.pdf in build/interactive/01_dataset_bias``) instead of their reprs."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(describe_written(self))


def describe_written(paths: Sequence[Path]) -> str:
    """``"wrote a.png, a.pdf in <folder>"`` for paths sharing one folder (else each path)."""
    if not paths:
        return "wrote nothing"
    folders = {Path(p).parent for p in paths}
    if len(folders) == 1:
        return f"wrote {', '.join(Path(p).name for p in paths)} in {folders.pop()}"
    return "wrote " + ", ".join(str(p) for p in paths)


def writes_committed_figures(path: str | os.PathLike) -> bool:
    """True when ``path`` lies in the repository's ``figures/`` outside a runner's staging
    folder (``figures/.staging-*``): a hand-run notebook overwriting the committed files."""
    resolved = Path(path).resolve()
    committed = figures_dir().resolve()
    if resolved != committed and committed not in resolved.parents:
        return False
    inside = resolved.relative_to(committed).parts
    return not any(part.startswith(".staging-") for part in inside)


def _output_dir(output_dir: str | os.PathLike) -> Path:
    path = Path(output_dir)
    if writes_committed_figures(path) and path.resolve() not in _WARNED:
        _WARNED.add(path.resolve())
        warnings.warn(
            f"output_dir {output_dir} is the committed figures/ folder: these files will no longer "
            "match figures/MANIFEST.json. Run `python -m vssl_core regenerate --only <notebook>` to "
            "regenerate them with the manifest, or keep the default output_dir "
            "(../build/interactive/<notebook>).", UserWarning, stacklevel=3)
    path.mkdir(parents=True, exist_ok=True)
    return path


def in_inline_kernel() -> bool:
    """True inside a Jupyter kernel whose matplotlib backend is the inline one."""
    return "IPython" in sys.modules and "inline" in str(matplotlib.get_backend()).lower()


def save_figure(fig: plt.Figure, name: str, output_dir: str | os.PathLike,
                formats: Sequence[str] = ("png", "pdf"), close: bool = False) -> Written:
    """Save ``fig`` as ``<output_dir>/<name>.png`` and ``.pdf`` without volatile metadata.

    The backend is left as it is: in Jupyter the figure still shows inline (when ``close`` is
    True it is displayed first, then closed), and the files are the same bytes as under
    ``agg``.

    Parameters
    ----------
    fig : matplotlib Figure
    name : str
        File stem, e.g. ``"fig2_box_areas"``.
    output_dir : path
        Folder (created if missing). Inside the committed ``figures/`` (outside the runner's
        staging folder) a warning says that ``MANIFEST.json`` will no longer match.
    formats : sequence of {"png", "pdf", "svg"}
    close : bool
        Close the figure after saving (keeps memory flat in long notebooks); in a Jupyter
        kernel it is displayed before closing, so the notebook still shows it.

    Returns
    -------
    Written
        The written files (a list of Path; a notebook shows it as one line).
    """
    out = _output_dir(output_dir)
    written = Written()
    for fmt in formats:
        buf = io.BytesIO()
        metadata = {"png": _PNG_METADATA, "pdf": _PDF_METADATA, "svg": {"Date": None}}.get(fmt)
        with matplotlib.rc_context(STYLE):
            fig.savefig(buf, format=fmt, metadata=metadata, bbox_inches="tight", pad_inches=0.05)
        written.append(atomic.write_bytes(out / f"{name}.{fmt}", buf.getvalue()))
    if close:
        if in_inline_kernel():
            from IPython.display import display

            display(fig)
        plt.close(fig)
    return written


def _fmt(value: Any, digits: int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def to_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """Render a DataFrame as a GitHub Markdown table with ``digits`` decimals for floats."""
    cols = [str(c) for c in df.columns]
    rows = [[_fmt(v, digits) for v in row] for row in df.itertuples(index=False, name=None)]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out) + "\n"


def save_table(df: pd.DataFrame, name: str, output_dir: str | os.PathLike, digits: int = 4,
               index: bool = False) -> Written:
    """Save ``df`` as ``<name>.csv`` (``digits`` decimals) and ``<name>.md`` (Markdown).

    Returns the written paths. Floats are formatted with a fixed number of decimals so the
    bytes do not depend on the platform's float printing.
    """
    out = _output_dir(output_dir)
    table = df.reset_index() if index else df
    csv = table.to_csv(index=False, float_format=f"%.{digits}f", lineterminator="\n")
    return Written([atomic.write_text(out / f"{name}.csv", csv),
                    atomic.write_text(out / f"{name}.md", to_markdown(table, digits=min(digits, 3)))])


def save_json(obj: Mapping[str, Any], name: str, output_dir: str | os.PathLike) -> Path:
    """Save a small result dict as sorted, indented JSON (``<name>.json``)."""
    import json

    out = _output_dir(output_dir)
    return atomic.write_text(out / f"{name}.json",
                             json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
