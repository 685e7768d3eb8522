"""What a notebook run by hand is told about its parameters: which profile's values it uses.

The regeneration runner is the way to switch profiles: it injects every value of
``notebooks/profiles/<profile>.toml``. A notebook run by hand has its parameters cell, whose
values are the quick profile's; setting ``profile = "paper"`` there changes no other value.
:func:`check_profile`, called in the first code cell after the parameters, says which case
applies, and when ``profile`` names another profile than the values, prints the command that
runs that profile and the values it would set.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vssl_core.repro.profiles import profile_values

__all__ = ["profile_parameters", "profile_differences", "check_profile"]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def profile_parameters(profile: str, notebook: str) -> dict[str, Any]:
    """Every parameter value ``profile`` gives ``notebook`` (a file stem): the quick profile's
    values (the notebook's own defaults), then the profile's ``[all]`` and ``[notebook]`` tables."""
    return {**profile_values("quick", notebook), **profile_values(profile, notebook)}


def profile_differences(values: Mapping[str, Any], profile: str, notebook: str) -> dict[str, tuple[Any, Any]]:
    """``{name: (value here, value of the profile)}`` for the parameters that differ.

    Only names present in ``values`` (e.g. a notebook's ``globals()``) are compared.
    """
    expected = profile_parameters(profile, notebook)
    return {name: (values[name], want) for name, want in expected.items()
            if name in values and _plain(values[name]) != _plain(want)}


def _listing(diff: Mapping[str, tuple[Any, Any]], which: int) -> str:
    return ", ".join(f"{name} = {pair[which]!r}" for name, pair in diff.items())


def check_profile(profile: str, notebook: str, values: Mapping[str, Any],
                  say: Callable[[str], None] = print) -> dict[str, tuple[Any, Any]]:
    """Say which profile's values this notebook runs with (call it after the parameters cell).

    Parameters
    ----------
    profile : str
        The notebook's ``profile`` parameter.
    notebook : str
        The notebook's file stem, e.g. ``"01_dataset_bias"``.
    values : mapping
        The notebook's parameters (``globals()`` in a notebook; only the profile's names are read).
    say : callable
        Where the message goes (default ``print``).

    Returns
    -------
    dict
        ``{name: (value here, value of profile)}`` for every parameter that differs from ``profile``.

    Raises
    ------
    DataError
        When ``profile`` names no file of ``notebooks/profiles/`` (the message lists them).
    """
    diff = profile_differences(values, profile, notebook)
    if not diff:
        say(f"Profile {profile!r}: every parameter has its value in notebooks/profiles/{profile}.toml.")
    elif profile != "quick" and not profile_differences(values, "quick", notebook):
        say(f"Warning: profile = {profile!r}, but the parameters above are the 'quick' profile's: "
            f"changing `profile` by hand does not change them.\n"
            f"  To run the {profile!r} profile, from the repository root:\n"
            f"    python -m vssl_core regenerate --profile {profile} --only {notebook}\n"
            f"  or set these values in the parameters cell: {_listing(diff, 1)}.")
    else:
        say(f"Profile {profile!r} with values of your own: {_listing(diff, 0)} "
            f"(notebooks/profiles/{profile}.toml: {_listing(diff, 1)}).")
    return diff
