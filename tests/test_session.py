"""A notebook run by hand says which profile's values it uses, and which data it skipped."""
from __future__ import annotations

import ast

import papermill
import pytest

from vssl_core.data import sources
from vssl_core.errors import DataError
from vssl_core.repro import session
from vssl_core.repro.paths import repo_root
from vssl_core.repro.profiles import profile_values

NOTEBOOK = "02_flowgrad"


def _cell_values(stem: str) -> dict:
    """The values of a notebook's parameters cell (what a run by hand has in globals())."""
    declared = papermill.inspect_notebook(str(repo_root() / "notebooks" / f"{stem}.ipynb"))
    return {k: ast.literal_eval(v["default"]) for k, v in declared.items()}


def test_quick_by_hand_matches_its_profile():
    said = []
    diff = session.check_profile("quick", NOTEBOOK, _cell_values(NOTEBOOK), say=said.append)
    assert diff == {}
    assert said == ["Profile 'quick': every parameter has its value in notebooks/profiles/quick.toml."]


def test_profile_changed_by_hand_warns_and_gives_the_command():
    values = {**_cell_values(NOTEBOOK), "profile": "paper"}
    said = []
    diff = session.check_profile("paper", NOTEBOOK, values, say=said.append)
    paper = profile_values("paper", NOTEBOOK)
    assert diff["image_size"] == (values["image_size"], paper["image_size"])
    text = said[0]
    assert text.startswith("Warning: profile = 'paper'")
    assert f"python -m vssl_core regenerate --profile paper --only {NOTEBOOK}" in text
    assert f"image_size = {paper['image_size']!r}" in text


def test_the_runners_values_match_and_own_changes_are_listed():
    smoke = session.profile_parameters("smoke", NOTEBOOK)
    assert session.check_profile("smoke", NOTEBOOK, smoke, say=lambda _: None) == {}
    said = []
    diff = session.check_profile("smoke", NOTEBOOK, {**smoke, "epochs": 7}, say=said.append)
    assert diff == {"epochs": (7, smoke["epochs"])}
    assert "values of your own: epochs = 7" in said[0]
    with pytest.raises(DataError, match="no profile named"):
        session.check_profile("nope", NOTEBOOK, smoke)


@pytest.mark.parametrize("key, call", [("urbansas", sources.real_urbansas), ("vggss", sources.vggss_json),
                                       ("flickr", sources.flickr_xml_dir)])
def test_a_skipped_source_says_what_and_how(key, call, monkeypatch):
    monkeypatch.delenv("VSSL_SHARED_DATA", raising=False)
    said = []
    assert call("", say=said.append) is None
    assert said == [sources.skip_message(key)]
    text = said[0]
    src = sources.REAL_SOURCES[key]
    assert text.startswith(f"Skipped: {src.title}") and f"set {src.parameter} = " in text
    assert ("VSSL_SHARED_DATA" in text) == bool(src.shared)
    assert call("", say=None) is None  # silent on request


def test_skip_message_says_where_vggss_json_comes_from(tmp_path, monkeypatch):
    monkeypatch.setenv("VSSL_SHARED_DATA", str(tmp_path))
    text = sources.skip_message("vggss")
    assert "hche11/Localizing-Visual-Sounds-the-Hard-Way" in text and "metadata/vggss.json" in text
    assert f"{tmp_path / 'vggss/vggss.json'} does not exist" in text
