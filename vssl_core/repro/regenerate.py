"""Regenerate every figure and table by executing the notebooks with papermill.

The run is all-or-nothing per invocation:

1. every selected notebook executes (kernel ``python3``, working directory ``notebooks/``)
   with the parameters of the chosen profile and ``output_dir`` pointing at a staging folder
   ``figures/.staging-<pid>/<notebook>/``; the executed copies go to ``build/notebooks/``;
2. only when all of them succeed is each staged folder promoted into ``figures/<notebook>/``
   (a rename per notebook) and ``figures/MANIFEST.json`` rewritten;
3. a failure stops the run, names the notebook, the cell and the error, removes the staging
   folder and leaves every previous figure in place.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from vssl_core import __version__
from vssl_core.repro import atomic
from vssl_core.errors import DataError
from vssl_core.repro.paths import figures_dir as default_figures_dir
from vssl_core.repro.paths import repo_root
from vssl_core.repro.memory import PeakMemory
from vssl_core.repro.profiles import load_profile, profile_path, resolve_parameters

#: Packages whose versions go into the manifest.
MANIFEST_PACKAGES = ("numpy", "scipy", "pandas", "matplotlib", "seaborn", "opencv-python-headless",
                     "torch", "torchvision", "datasets", "papermill", "soundfile")


class NotebookFailed(RuntimeError):
    """A notebook raised: carries the notebook, the cell and the error for the message."""

    def __init__(self, notebook: str, cell: str, error: str, executed: Path):
        self.notebook, self.cell, self.error, self.executed = notebook, cell, error, executed
        super().__init__(f"notebook {notebook} failed in {cell}: {error}\n"
                         f"  executed copy with the traceback: {executed}\n"
                         f"  previous figures were left untouched")


@dataclass
class NotebookRun:
    name: str
    seconds: float
    outputs: list[str]
    parameters: dict[str, Any]
    peak_mib: float = 0.0
    peak_anon_mib: float = 0.0


@dataclass
class RunSummary:
    profile: str
    runs: list[NotebookRun] = field(default_factory=list)
    manifest: Path | None = None

    def table(self) -> str:
        """A plain-text summary table: notebook, seconds, peak kernel memory (PSS and its
        anonymous part, MiB), outputs."""
        rows = [("notebook", "seconds", "peak MiB", "anon MiB", "outputs")]
        rows += [(r.name, f"{r.seconds:.1f}", f"{r.peak_mib:.0f}", f"{r.peak_anon_mib:.0f}",
                  str(len(r.outputs))) for r in self.runs]
        rows.append(("total", f"{sum(r.seconds for r in self.runs):.1f}",
                     f"{max((r.peak_mib for r in self.runs), default=0):.0f}",
                     f"{max((r.peak_anon_mib for r in self.runs), default=0):.0f}",
                     str(sum(len(r.outputs) for r in self.runs))))
        w = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {e:>{w[3]}}  {d:>{w[4]}}"
                 for a, b, c, e, d in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)


def list_notebooks(notebooks_dir: Path, only: list[str] | None = None) -> list[Path]:
    """The notebooks to run, in file-name order; ``only`` selects by stem or unique prefix."""
    books = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if not p.name.startswith("."))
    if not only:
        return books
    chosen = []
    for key in only:
        hits = [b for b in books if b.stem == key] or [b for b in books if b.stem.startswith(key)
                                                       or b.stem.split("_", 1)[-1] == key]
        if len(hits) != 1:
            names = ", ".join(b.stem for b in books)
            raise DataError(f"--only {key!r} matches {len(hits)} notebooks. Fix: use one of: {names}")
        chosen.append(hits[0])
    return chosen


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "vssl-core": __version__}
    for name in MANIFEST_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _execute(notebook: Path, params: dict[str, Any], executed: Path, progress: bool) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(notebook), str(executed), parameters=params, kernel_name="python3",
            language="python", cwd=str(notebook.parent), progress_bar=progress,
            log_output=False, report_mode=False)
    except PapermillExecutionError as exc:
        cell = f"cell {_source_cell_number(executed, exc.cell_index)} of {notebook.name}"
        first = (exc.source or "").strip().splitlines()[:1]
        if first:
            cell += f", starting {first[0][:80]!r}"
        raise NotebookFailed(notebook.stem, cell, f"{exc.ename}: {exc.evalue}", executed) from None


def _source_cell_number(executed: Path, index: int) -> int:
    """1-based number of the failing cell in the source notebook (papermill's injected
    parameters cell is not counted)."""
    import nbformat

    try:
        cells = nbformat.read(executed, as_version=4).cells
    except (OSError, ValueError):
        return index + 1
    cells = [c for c in cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    injected = sum(1 for c in cells[:index] if "injected-parameters" in c.metadata.get("tags", []))
    return index - injected + 1


def _promote(staging: Path, figures: Path, names: list[str]) -> None:
    """Swap each staged notebook folder into ``figures/`` (old copy kept until all moved)."""
    previous = figures / f".previous-{os.getpid()}"
    previous.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            target = figures / name
            if target.exists():
                os.replace(target, previous / name)
            os.replace(staging / name, target)
    except BaseException:
        for name in names:  # roll back what was moved
            if (previous / name).exists():
                if (figures / name).exists():
                    shutil.rmtree(figures / name)
                os.replace(previous / name, figures / name)
        raise
    finally:
        shutil.rmtree(previous, ignore_errors=True)


def _update_manifest(figures: Path, profile: str, runs: list[NotebookRun]) -> Path:
    path = figures / "MANIFEST.json"
    manifest: dict[str, Any] = {}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            manifest = {}
    notebooks = manifest.get("notebooks", {})
    files = {k: v for k, v in manifest.get("files", {}).items()
             if v.get("notebook") not in {r.name for r in runs}}
    for run in runs:
        notebooks[run.name] = {"profile": profile, "parameters": run.parameters,
                               "seconds": round(run.seconds, 1),
                               "peak_memory_mib": round(run.peak_mib),
                               "peak_anon_memory_mib": round(run.peak_anon_mib), "outputs": run.outputs}
        for rel in run.outputs:
            files[rel] = {"sha256": _sha256(figures / rel), "notebook": run.name, "profile": profile}
    manifest = {
        "generated_by": "python -m vssl_core regenerate",
        "packages": package_versions(),
        "notebooks": dict(sorted(notebooks.items())),
        "files": dict(sorted(files.items())),
    }
    atomic.write_text(path, json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
    return path


def regenerate(profile: str = "quick", only: list[str] | None = None,
               notebooks_dir: Path | None = None, figures_dir: Path | None = None,
               build_dir: Path | None = None, overrides: dict[str, Any] | None = None,
               progress: bool = True) -> RunSummary:
    """Execute the notebooks and promote their outputs; see the module docstring.

    Parameters
    ----------
    profile : str
        Name of ``notebooks/profiles/<profile>.toml``.
    only : list of str, optional
        Notebook stems (or unique prefixes like ``"02"``) to run; default all.
    overrides : dict, optional
        Extra parameters (from ``--param``), checked against each selected notebook.

    Raises
    ------
    DataError
        Unknown profile, notebook or parameter (before anything runs).
    NotebookFailed
        A notebook raised; nothing was promoted.
    """
    from tqdm.auto import tqdm

    notebooks_dir = Path(notebooks_dir or repo_root() / "notebooks").resolve()
    figures = Path(figures_dir or default_figures_dir()).resolve()
    build = Path(build_dir or repo_root() / "build" / "notebooks").resolve() / profile
    books = list_notebooks(notebooks_dir, only)
    if not books:
        raise DataError(f"{notebooks_dir}: no notebooks found. Fix: run from the repository root")
    profile_data = load_profile(notebooks_dir, profile)
    source = profile_path(notebooks_dir, profile)
    unknown = set(profile_data) - {b.stem for b in list_notebooks(notebooks_dir)} - {"all"}
    if unknown:
        raise DataError(f"{source}: tables {sorted(unknown)} name no notebook. "
                        f"Fix: rename them to a notebook's file stem")
    # Validate every notebook's parameters before running anything.
    plans = [(b, resolve_parameters(b, profile_data, profile, source, overrides)) for b in books]

    figures.mkdir(parents=True, exist_ok=True)
    staging = figures / f".staging-{os.getpid()}"
    summary = RunSummary(profile=profile)
    try:
        bar = tqdm(plans, desc=f"regenerate [{profile}]", unit="notebook", disable=not progress,
                   file=sys.stderr)
        for notebook, params in bar:
            bar.set_postfix_str(notebook.stem)
            out = staging / notebook.stem
            out.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            with PeakMemory() as memory:
                _execute(notebook, {**params, "output_dir": str(out)}, build / notebook.name, progress)
            seconds = time.perf_counter() - start
            outputs = sorted(str(p.relative_to(staging)) for p in out.rglob("*") if p.is_file())
            summary.runs.append(NotebookRun(notebook.stem, seconds, outputs, params, memory.peak_mib,
                                            memory.peak_anon_mib))
        _promote(staging, figures, [r.name for r in summary.runs])
        summary.manifest = _update_manifest(figures, profile, summary.runs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
