"""Deterministic figure and table files.

Every figure is saved as PNG and PDF with one fixed style and no timestamps, software
versions or random ids inside the files; every table as CSV and Markdown with fixed float
formatting. Two runs that draw the same data therefore write byte-identical files.

Notebooks write into ``output_dir`` (a parameter the regeneration runner points at a staging
folder); files are written atomically, so a crash never leaves half a PNG behind.
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from vssl_core.repro import atomic  # noqa: E402

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


def _output_dir(output_dir: str | os.PathLike) -> Path:
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig: plt.Figure, name: str, output_dir: str | os.PathLike,
                formats: Sequence[str] = ("png", "pdf"), close: bool = False) -> list[Path]:
    """Save ``fig`` as ``<output_dir>/<name>.png`` and ``.pdf`` without volatile metadata.

    Parameters
    ----------
    fig : matplotlib Figure
    name : str
        File stem, e.g. ``"fig2_box_areas"``.
    output_dir : path
        Folder (created if missing).
    formats : sequence of {"png", "pdf", "svg"}
    close : bool
        Close the figure after saving (keeps memory flat in long notebooks).

    Returns
    -------
    list of Path
        The written files.
    """
    out = _output_dir(output_dir)
    written = []
    for fmt in formats:
        buf = io.BytesIO()
        metadata = {"png": _PNG_METADATA, "pdf": _PDF_METADATA, "svg": {"Date": None}}.get(fmt)
        with matplotlib.rc_context(STYLE):
            fig.savefig(buf, format=fmt, metadata=metadata, bbox_inches="tight", pad_inches=0.05)
        written.append(atomic.write_bytes(out / f"{name}.{fmt}", buf.getvalue()))
    if close:
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
               index: bool = False) -> list[Path]:
    """Save ``df`` as ``<name>.csv`` (``digits`` decimals) and ``<name>.md`` (Markdown).

    Returns the written paths. Floats are formatted with a fixed number of decimals so the
    bytes do not depend on the platform's float printing.
    """
    out = _output_dir(output_dir)
    table = df.reset_index() if index else df
    csv = table.to_csv(index=False, float_format=f"%.{digits}f", lineterminator="\n")
    return [atomic.write_text(out / f"{name}.csv", csv),
            atomic.write_text(out / f"{name}.md", to_markdown(table, digits=min(digits, 3)))]


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
