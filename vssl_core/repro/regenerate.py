"""Regenerate every figure and table by executing the notebooks with papermill.

The run is all-or-nothing per invocation:

1. under a lock per checkout (``figures/.regenerate.lock``; a second run refuses with a message,
   or waits with ``wait=True``), a promotion that a killed run left half done is rolled back and
   stale staging folders of dead runs are removed (:mod:`vssl_core.repro.promote`);
2. every selected notebook executes (kernel ``python3``, working directory ``notebooks/``) with
   the parameters of the chosen profile and ``output_dir`` pointing at a fresh staging folder
   ``figures/.staging-<pid>-<random>/<notebook>/``; the executed copies go to
   ``build/notebooks/``. With ``progress=True`` the kernel's stdout and stderr (the notebook's
   own progress: data generation, flow, evaluation, training) are echoed to this process's
   stderr as they arrive; the files a notebook writes do not change;
3. files that a notebook wrote in an earlier run but not in this one (typically outputs that
   need real data this checkout lacks) are **kept** as they were, listed in the manifest with the
   run and data they came from, and printed; ``prune=True`` removes them instead. Files the
   manifest does not list (not written by this runner) are never removed;
4. only when every notebook succeeded are the staged folders and the new ``MANIFEST.json``
   promoted together (:func:`vssl_core.repro.promote.commit`: journaled, recoverable if killed);
5. a failure stops the run, names the notebook, the cell and the error, removes the staging
   folder and leaves every previous figure in place.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from vssl_core import __version__
from vssl_core.errors import DataError
from vssl_core.repro import atomic, promote
from vssl_core.repro.paths import figures_dir as default_figures_dir
from vssl_core.repro.paths import repo_root
from vssl_core.repro.memory import PeakMemory
from vssl_core.repro.profiles import check_profile_name, load_profile, profile_path, resolve_parameters

#: Parameter names (suffixes) that point at data; recorded with every file as its provenance.
DATA_PARAMETER_SUFFIXES = ("_root", "_json", "_xml_dir", "_weights", "_rcgrad")
#: Environment variables that select data; recorded with every file as its provenance.
DATA_ENVIRONMENT = ("VSSL_SHARED_DATA", "VSSL_DATA_DIR")

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
    kept: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    profile: str
    runs: list[NotebookRun] = field(default_factory=list)
    manifest: Path | None = None
    run_id: str = ""
    recovered: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        """A plain-text summary table: notebook, seconds, peak kernel memory (PSS and its
        anonymous part, MiB), outputs written and kept."""
        rows = [("notebook", "seconds", "peak MiB", "anon MiB", "outputs", "kept")]
        rows += [(r.name, f"{r.seconds:.1f}", f"{r.peak_mib:.0f}", f"{r.peak_anon_mib:.0f}",
                  str(len(r.outputs)), str(len(r.kept))) for r in self.runs]
        rows.append(("total", f"{sum(r.seconds for r in self.runs):.1f}",
                     f"{max((r.peak_mib for r in self.runs), default=0):.0f}",
                     f"{max((r.peak_anon_mib for r in self.runs), default=0):.0f}",
                     str(sum(len(r.outputs) for r in self.runs)),
                     str(sum(len(r.kept) for r in self.runs))))
        w = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {e:>{w[3]}}  {d:>{w[4]}}  {k:>{w[5]}}"
                 for a, b, c, e, d, k in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def notes(self) -> str:
        """What the run kept from earlier runs, pruned and recovered (empty when nothing)."""
        lines = [f"recovered: {r}" for r in self.recovered]
        if self.kept:
            lines.append("kept as committed (this run did not remake them, e.g. their real data is "
                         "missing here; give the data to remake them, or pass --prune to remove "
                         "files a notebook no longer writes):")
            lines += [f"  {rel}  (from {origin})" for rel, origin in sorted(self.kept.items())]
        pruned = [f for r in self.runs for f in r.pruned]
        if pruned:
            lines.append("pruned (written by an earlier run, not by this one):")
            lines += [f"  {rel}" for rel in pruned]
        return "\n".join(lines)


def list_notebooks(notebooks_dir: Path, only: list[str] | None = None) -> list[Path]:
    """The notebooks to run, in file-name order; ``only`` selects by stem or unique prefix."""
    books = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if not p.name.startswith("."))
    if not only:
        return books
    chosen: list[Path] = []
    for key in only:
        hits = [b for b in books if b.stem == key] or [b for b in books if b.stem.startswith(key)
                                                       or b.stem.split("_", 1)[-1] == key]
        if len(hits) != 1:
            names = ", ".join(b.stem for b in books)
            raise DataError(f"--only {key!r} matches {len(hits)} notebooks. Fix: use one of: {names}")
        if hits[0] not in chosen:          # "01 01_dataset_bias" runs 01 once
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


class _Echo:
    """A file-like sink for papermill's ``stdout_file``/``stderr_file``: the kernel's streams go
    to this process's stderr as they arrive (progress bars included), never into figures."""

    def write(self, text: str) -> int:
        sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _execute(notebook: Path, params: dict[str, Any], executed: Path, progress: bool) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed.parent.mkdir(parents=True, exist_ok=True)
    echo = _Echo() if progress else None
    try:
        papermill.execute_notebook(
            str(notebook), str(executed), parameters=params, kernel_name="python3",
            language="python", cwd=str(notebook.parent), progress_bar=False,
            log_output=False, report_mode=False, stdout_file=echo, stderr_file=echo)
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


def _data_sources(params: dict[str, Any]) -> dict[str, Any]:
    """The data a run read: the data environment variables and the data-path parameters."""
    data: dict[str, Any] = {k: os.environ.get(k) or None for k in DATA_ENVIRONMENT}
    data.update({k: v for k, v in sorted(params.items()) if k.endswith(DATA_PARAMETER_SUFFIXES)})
    return data


def _read_manifest(figures: Path) -> dict[str, Any]:
    path = figures / promote.MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _files_of(folder: Path, root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in folder.rglob("*") if p.is_file())


def _carry_over(run: NotebookRun, figures: Path, staging: Path, previous: dict[str, Any],
                prune: bool) -> None:
    """Copy into ``staging`` the files of ``figures/<notebook>`` this run did not write (or list
    them in ``run.pruned`` with ``prune``; files the previous manifest does not list are always
    kept: this runner did not write them)."""
    folder = figures / run.name
    if not folder.is_dir():
        return
    written = set(run.outputs)
    for rel in _files_of(folder, figures):
        name = rel.rsplit("/", 1)[-1]
        if rel in written or (name.startswith(".") and name.endswith(".tmp")):
            continue                     # rewritten, or a temporary file of an atomic write
        if prune and rel in previous:
            run.pruned.append(rel)
            continue
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(figures / rel, staging / rel)
        run.kept.append(rel)


def _kept_entry(rel: str, run: NotebookRun, staging: Path, old: dict[str, Any] | None,
                run_id: str) -> dict[str, Any]:
    if old is None:
        return {"sha256": _sha256(staging / rel), "notebook": run.name, "profile": None,
                "run": None, "kept_from": "not written by regenerate (absent from the previous "
                "manifest)", "kept_in": run_id}
    entry = dict(old)
    entry.update(sha256=_sha256(staging / rel), kept_in=run_id,
                 kept_from=old.get("run") or "an earlier run (the manifest recorded no run id)")
    if old.get("sha256") not in (None, entry["sha256"]):
        entry["note"] = "differs from the sha256 the previous manifest recorded"
    return entry


def _manifest_text(previous: dict[str, Any], staging: Path, profile: str, runs: list[NotebookRun],
                   run_id: str) -> tuple[str, dict[str, str]]:
    """The new MANIFEST.json (hashing the staged files) and {kept file: where it came from}."""
    old_files = previous.get("files", {}) if isinstance(previous.get("files"), dict) else {}
    notebooks = previous.get("notebooks", {}) if isinstance(previous.get("notebooks"), dict) else {}
    names = {r.name for r in runs}
    files = {k: v for k, v in old_files.items() if v.get("notebook") not in names}
    kept: dict[str, str] = {}
    for run in runs:
        data = _data_sources(run.parameters)
        notebooks[run.name] = {"profile": profile, "parameters": run.parameters, "run": run_id,
                               "data": data, "seconds": round(run.seconds, 1),
                               "peak_memory_mib": round(run.peak_mib),
                               "peak_anon_memory_mib": round(run.peak_anon_mib),
                               "outputs": run.outputs, "kept": run.kept}
        for rel in run.outputs:
            files[rel] = {"sha256": _sha256(staging / rel), "notebook": run.name, "profile": profile,
                          "run": run_id, "data": data}
        for rel in run.kept:
            files[rel] = _kept_entry(rel, run, staging, old_files.get(rel), run_id)
            kept[rel] = str(files[rel]["kept_from"])
    manifest = {
        "generated_by": "python -m vssl_core regenerate",
        "packages": package_versions(),
        "notebooks": dict(sorted(notebooks.items())),
        "files": dict(sorted(files.items())),
    }
    return json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n", kept


def _run_id() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f"-{os.getpid()}"


def regenerate(profile: str = "quick", only: list[str] | None = None,
               notebooks_dir: Path | None = None, figures_dir: Path | None = None,
               build_dir: Path | None = None, overrides: dict[str, Any] | None = None,
               progress: bool = True, prune: bool = False, wait: bool = False) -> RunSummary:
    """Execute the notebooks and promote their outputs; see the module docstring.

    Parameters
    ----------
    profile : str
        Name of ``notebooks/profiles/<profile>.toml`` (``[A-Za-z0-9_-]+``).
    only : list of str, optional
        Notebook stems (or unique prefixes like ``"02"``) to run; default all. Repeats run once.
    overrides : dict, optional
        Extra parameters (from ``--param``), checked against each selected notebook; the
        runner's own ``profile`` and ``output_dir`` are refused.
    progress : bool
        Progress bar over notebooks, and the kernels' own output echoed to stderr.
    prune : bool
        Remove the files an earlier run of a selected notebook wrote and this run did not,
        instead of keeping them.
    wait : bool
        Wait for another regeneration of this checkout to finish instead of refusing.

    Raises
    ------
    DataError
        Unknown profile, notebook or parameter (before anything runs); another regeneration is
        running (``wait=False``).
    NotebookFailed
        A notebook raised; nothing was promoted.
    """
    notebooks_dir = Path(notebooks_dir or repo_root() / "notebooks").resolve()
    figures = Path(figures_dir or default_figures_dir()).resolve()
    check_profile_name(profile)
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
    with promote.checkout_lock(figures, wait=wait):
        summary = RunSummary(profile=profile, run_id=_run_id(), recovered=promote.recover(figures))
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=figures))
        try:
            _run_all(plans, staging, build, summary, progress)
            previous = _read_manifest(figures)
            old_files = previous.get("files", {}) if isinstance(previous.get("files"), dict) else {}
            for run in summary.runs:
                _carry_over(run, figures, staging, old_files, prune)
            text, summary.kept = _manifest_text(previous, staging, profile, summary.runs,
                                                summary.run_id)
            atomic.write_text(staging / promote.MANIFEST, text)
            promote.commit(figures, staging, [r.name for r in summary.runs],
                           token=staging.name.removeprefix(".staging-"))
            summary.manifest = figures / promote.MANIFEST
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return summary


def _run_all(plans: list, staging: Path, build: Path, summary: RunSummary, progress: bool) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(plans, desc=f"regenerate [{summary.profile}]", unit="notebook",
               disable=not progress, file=sys.stderr)
    for notebook, params in bar:
        bar.set_postfix_str(notebook.stem)
        if progress:
            print(f"\n== {notebook.stem} ==", file=sys.stderr, flush=True)
        out = staging / notebook.stem
        out.mkdir(parents=True)
        start = time.perf_counter()
        with PeakMemory() as memory:
            _execute(notebook, {**params, "output_dir": str(out)}, build / notebook.name, progress)
        seconds = time.perf_counter() - start
        summary.runs.append(NotebookRun(notebook.stem, seconds, _files_of(out, staging), params,
                                        memory.peak_mib, memory.peak_anon_mib))
