#!/usr/bin/env python3
"""Git clean filter: committed notebooks never carry outputs, whatever JupyterLab saved.

``make setup`` runs ``python .ci/nbstrip.py --install``, which configures the filter ``nbstrip``
of this clone (``git config filter.nbstrip.*``); ``.gitattributes`` applies it to
``notebooks/*.ipynb``. From then on git sees every notebook through :func:`strip`: a notebook run
and saved in JupyterLab keeps its outputs on disk (you still see them), while ``git status``,
``git diff`` and ``git add`` see it without them, so it only shows as modified when its code or
text changed. The filter is ``required``: if it cannot run, ``git add`` fails instead of
committing outputs.

What is removed or normalised (everything a run or JupyterLab writes on its own):

- outputs and execution counts of code cells;
- cell metadata other than ``tags``;
- notebook metadata other than ``kernelspec`` (always ``python3``, the kernel the
  regeneration runner uses) and ``language_info`` (only its ``name``), e.g. widget state;
- formatting: sorted keys, one-space indent, sources as lists of lines, a final newline (as
  nbformat and JupyterLab write, and as the committed notebooks are).

Standard library only, so that the base interpreter runs it even when ``.venv`` is gone.

Usage: ``nbstrip.py < in.ipynb > out.ipynb`` (the filter), ``nbstrip.py --install [REPO]``.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Name of the filter in git's configuration and in ``.gitattributes``.
FILTER = "nbstrip"
#: The kernel every committed notebook declares.
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
CELL_METADATA = ("tags",)


def _lines(source: Any) -> list[str]:
    return source.splitlines(keepends=True) if isinstance(source, str) else list(source)


def strip(nb: dict[str, Any]) -> dict[str, Any]:
    """``nb`` (a notebook as JSON) without outputs, counts and run metadata (module docstring)."""
    cells = []
    for cell in nb.get("cells", []):
        cell = dict(cell)
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in CELL_METADATA}
        if "source" in cell:
            cell["source"] = _lines(cell["source"])
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cells.append(cell)
    metadata = {"kernelspec": dict(KERNELSPEC)}
    language = nb.get("metadata", {}).get("language_info", {}).get("name")
    if language:
        metadata["language_info"] = {"name": language}
    return {**nb, "cells": cells, "metadata": metadata}


def dumps(nb: dict[str, Any]) -> str:
    """The committed text of a notebook (as nbformat writes it)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def clean(text: str) -> str:
    """The filter: notebook text in, stripped notebook text out (unparsable text is kept as
    it is, so git shows the file as it is rather than failing on a half-written notebook)."""
    try:
        nb = json.loads(text)
    except json.JSONDecodeError:
        return text
    return dumps(strip(nb)) if isinstance(nb, dict) else text


def install(repo: str | Path = ".") -> str:
    """Configure the filter in the git repository holding ``repo``; returns the clean command."""
    python = getattr(sys, "_base_executable", None) or sys.executable
    command = f"{shlex.quote(str(Path(python).resolve()))} .ci/nbstrip.py"
    for key, value in (("clean", command), ("smudge", "cat"), ("required", "true")):
        subprocess.run(["git", "-C", str(repo), "config", "--local", f"filter.{FILTER}.{key}", value],
                       check=True)
    return command


def main(argv: list[str]) -> int:
    if argv[:1] == ["--install"]:
        command = install(argv[1] if len(argv) > 1 else ".")
        print(f"nbstrip: git now commits notebooks without outputs (filter.{FILTER}.clean = {command})")
        return 0
    if argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    data = sys.stdin.buffer.read().decode("utf-8")
    sys.stdout.buffer.write(clean(data).encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
