"""Profiles: the parameters every notebook runs with, one TOML file per profile.

``notebooks/profiles/<profile>.toml`` holds one table per notebook (by file stem) and an
optional ``[all]`` table applied to every notebook that declares those names::

    [all]
    seed = 0

    [01_dataset_bias]
    n_boot = 200

Every name must be declared in the notebook's ``parameters`` cell: a mistyped or unknown
name is an error (papermill itself would only warn and inject it anyway). The names the runner
sets itself (:data:`RUNNER_PARAMETERS`: ``profile``, ``output_dir``) are refused in a profile
and in ``--param``, so the manifest never records a value that was not used. Profile names are
``[A-Za-z0-9_-]+`` (:data:`PROFILE_NAME`): a profile is always a file of ``notebooks/profiles/``.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from vssl_core.errors import data_error

#: Parameters the runner sets itself; every notebook declares them.
RUNNER_PARAMETERS = ("profile", "output_dir")


#: What a profile name may look like (no path separators, no dots).
PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def check_profile_name(profile: object) -> str:
    """``profile`` when it matches :data:`PROFILE_NAME`, else a :class:`DataError`."""
    if not isinstance(profile, str) or not PROFILE_NAME.fullmatch(profile):
        raise data_error(None, "profile", f"{profile!r} is not a profile name",
                         "use letters, digits, '_' and '-' only, e.g. quick or paper; profiles "
                         "are files notebooks/profiles/<name>.toml")
    return profile


def profile_path(notebooks_dir: Path, profile: str) -> Path:
    return Path(notebooks_dir) / "profiles" / f"{check_profile_name(profile)}.toml"


def available_profiles(notebooks_dir: Path) -> list[str]:
    return sorted(p.stem for p in (Path(notebooks_dir) / "profiles").glob("*.toml"))


def load_profile(notebooks_dir: Path, profile: str) -> dict[str, dict[str, Any]]:
    """Read ``profiles/<profile>.toml`` -> {table name: {parameter: value}}."""
    path = profile_path(notebooks_dir, profile)
    if not path.is_file():
        raise data_error(path, "profile", f"no profile named {profile!r}",
                         f"choose one of {available_profiles(notebooks_dir)} or create {path.name}")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise data_error(path, None, f"not valid TOML ({exc})", "fix the syntax") from exc
    for table, values in data.items():
        if not isinstance(values, dict):
            raise data_error(path, table, "top-level keys must be tables like [01_dataset_bias]",
                             "put parameters under a notebook's table or [all]")
        _refuse_runner_parameters(f"{path}[{table}]", values)
    return data


def _refuse_runner_parameters(origin: str, values: Mapping[str, Any]) -> None:
    for name in RUNNER_PARAMETERS:
        if name in values:
            fix = ("choose the profile with --profile" if name == "profile" else
                   "outputs always go to figures/<notebook>/ through a staging folder; remove it")
            raise data_error(origin, name, "is set by the regeneration runner, not by a profile "
                             "or --param", fix)


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The names (and default source text) declared in a notebook's ``parameters`` cell."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def resolve_parameters(notebook: Path, profile_data: dict[str, dict[str, Any]], profile: str,
                       source: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters for one notebook: ``[all]`` (where declared), its table, then overrides.

    Raises
    ------
    DataError
        When the notebook has no parameters cell, or a name in its table or in ``overrides``
        is not declared there (with the closest declared names as a hint).
    """
    declared = declared_parameters(notebook)
    if not declared:
        raise data_error(notebook, "parameters", "the notebook has no cell tagged 'parameters'",
                         "tag the first code cell 'parameters' (View > Cell Toolbar > Tags)")
    missing = [name for name in RUNNER_PARAMETERS if name not in declared]
    if missing:
        raise data_error(notebook, "parameters", f"does not declare {missing}",
                         "declare profile = 'quick' and output_dir = '...' in the parameters cell")
    params: dict[str, Any] = {k: v for k, v in profile_data.get("all", {}).items() if k in declared}
    for origin, values in ((f"{source}[{notebook.stem}]", profile_data.get(notebook.stem, {})),
                           ("--param", overrides or {})):
        _refuse_runner_parameters(origin, values)
        for name, value in values.items():
            if name not in declared:
                hint = difflib.get_close_matches(name, list(declared), n=3)
                fix = f"did you mean {hint}?" if hint else f"declared names: {sorted(declared)}"
                raise data_error(origin, name, f"unknown parameter for {notebook.name}", fix)
            params[name] = value
    params["profile"] = profile
    return params


def profile_values(profile: str, table: str, notebooks_dir: str | Path | None = None) -> dict[str, Any]:
    """The values profile ``profile`` gives notebook/study ``table``: its ``[all]`` table, then
    ``[table]`` (the TOML only; defaults live in the study Setup dataclasses)."""
    from vssl_core.repro.paths import repo_root

    nbdir = Path(notebooks_dir) if notebooks_dir is not None else repo_root() / "notebooks"
    data = load_profile(nbdir, profile)
    return {**data.get("all", {}), **data.get(table, {})}


class StudySetup:
    """Shared constructors of the studies' frozen ``Setup`` dataclasses.

    A subclass names its profile table in ``PROFILE_TABLE`` (the notebook stem, e.g.
    ``"02_flowgrad"``); its field defaults are the quick profile's values (a test checks that
    ``quick.toml`` and the notebook's parameters cell agree with them).
    """

    PROFILE_TABLE: ClassVar[str] = ""

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_params(cls, **params: Any) -> Any:
        """A Setup from notebook parameters: unknown names are an error, lists become tuples."""
        names = cls.field_names()
        unknown = set(params) - names
        if unknown:
            raise ValueError(f"not {cls.__name__} fields: {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})

    @classmethod
    def for_profile(cls, profile: str = "quick", overrides: Mapping[str, Any] | None = None,
                    notebooks_dir: str | Path | None = None) -> Any:
        """The Setup ``profile`` runs: the field defaults, then the profile's ``[all]`` and
        ``[PROFILE_TABLE]`` values, then ``overrides`` (names that are not fields are ignored:
        profile tables also hold a notebook's other parameters)."""
        values = {**profile_values(profile, cls.PROFILE_TABLE, notebooks_dir), **dict(overrides or {})}
        names = cls.field_names()
        return cls.from_params(**{k: v for k, v in values.items() if k in names})


@dataclasses.dataclass(frozen=True)
class TrainingSetup(StudySetup):
    """A study Setup that trains models: the optimiser fields of every such study.

    Attributes
    ----------
    prior_epochs : int
        Epochs of the object prior, the companion's stand-in for ImageNet weights (0: start
        from random weights, the papers' "de novo").
    epochs : int
        Maximum training epochs (early stopping; the best epoch by validation loss is kept).
    batch_size, lr, seed : int, float, int
        Adam's batch size and learning rate; the seed of initial weights and batch order.
    patience : int
        Early stopping: epochs without a lower validation loss before training stops.
    num_threads : int or None
        torch threads while training (None: torch's default).
    """

    prior_epochs: int = 6
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    patience: int = 3
    num_threads: int | None = None
