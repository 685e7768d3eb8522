"""The explorer notebook in a real browser: JupyterLab + headless Chromium (Playwright).

A JupyterLab server (random free port, a token) serves a temporary folder holding a copy of
``notebooks/05_explorer.ipynb`` parameterised with the smoke profile (papermill injects the
parameters without executing) and a temporary ``VSSL_DATA_DIR``. Headless Chromium
(``/usr/bin/chromium``, Debian's package; Playwright never downloads a browser here) opens it,
runs all cells, changes the method and the post-processing dropdowns, and checks that the
heatmap image changes and that the score shown is the one :mod:`vssl_core.viz.explorer` computes
for the new state. A screenshot is saved to ``build/test-artifacts/`` (also on failure).

Without ``/usr/bin/chromium`` the test is skipped with the reason, except under ``CI=true``,
where it fails: ``.ci/install-browser`` (run by ``make setup``) installs it as root.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vssl_core.repro.paths import repo_root

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = repo_root() / "build" / "test-artifacts"
NOTEBOOK = "05_explorer.ipynb"
START_METHOD, NEW_METHOD = "Centred box", "Optical flow only"  # no model to train in the browser
RUN_TIMEOUT_S = 420  # the whole notebook on a fresh data folder (synthetic clips generated)
UPDATE_TIMEOUT_S = 120


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _missing(reason: str) -> None:
    fix = "run `.ci/install-browser` as root (apt-get install chromium chromium-driver)"
    if _in_ci():
        pytest.fail(f"CI is set but {reason}: {fix}", pytrace=False)
    pytest.skip(f"{reason}: {fix} to run the browser test")


@pytest.fixture(scope="module")
def playwright_api():
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing")
    try:
        from playwright import sync_api
    except ImportError:
        _missing("the Python package playwright is not installed (pip install -r requirements.txt)")
    return sync_api


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smoke_parameters(output_dir: Path) -> dict:
    from vssl_core.repro.profiles import load_profile, profile_path, resolve_parameters

    nbdir = repo_root() / "notebooks"
    params = resolve_parameters(nbdir / NOTEBOOK, load_profile(nbdir, "smoke"), "smoke",
                                profile_path(nbdir, "smoke"))
    params.update(output_dir=str(output_dir), method=START_METHOD, postprocess="auto",
                  urbansas_root="", audio_from=-1)
    params.setdefault("sample_index", 0)
    params.setdefault("threshold", 0.5)
    return params


def _write_notebook(dest: Path, params: dict) -> None:
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(repo_root() / "notebooks" / NOTEBOOK))  # as papermill reads it
    nbformat.write(parameterize_notebook(nb, params), dest)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer {url} in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, playwright_api):
    """(url, token, params, data_dir) of a JupyterLab serving the parameterised notebook."""
    root = tmp_path_factory.mktemp("browser")
    work, data = root / "work", root / "data"
    work.mkdir()
    params = _smoke_parameters(root / "out")
    _write_notebook(work / NOTEBOOK, params)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, VSSL_DATA_DIR=str(data), OMP_NUM_THREADS="1",
               JUPYTER_CONFIG_DIR=str(root / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"))
    log = root / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.root_dir={work}", f"--IdentityProvider.token={token}",
           f"--LabApp.user_settings_dir={root / 'lab-settings'}",
           f"--LabApp.workspaces_dir={root / 'lab-workspaces'}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI run as root
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        yield f"http://127.0.0.1:{port}", token, params, data
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTIFACTS / "browser_jupyterlab.log")


def _expected_ciou(data: Path, params: dict, method: str, postprocess: str) -> float:
    """The score the package computes for this state (the same cached evaluation pairs)."""
    from vssl_core.viz import explorer as ex
    from vssl_core.viz import explorer_methods as em

    old = os.environ.get("VSSL_DATA_DIR")
    os.environ["VSSL_DATA_DIR"] = str(data)
    try:
        src = em.flowgrad_source("smoke", {k: params[k] for k in ("seed", "synth_clips", "synth_seed")},
                                 progress=False)
        ev, _ = em.evaluation_data(src, params["urbansas_root"])
        e = ex.Explorer(ev, em.method_registry(src), audio_sr=src.setup.audio_sr)
        return e.view(method, params["sample_index"], params["audio_from"], postprocess,
                      params["threshold"]).ciou
    finally:
        if old is None:
            os.environ.pop("VSSL_DATA_DIR")
        else:
            os.environ["VSSL_DATA_DIR"] = old


def _score(page) -> tuple[str, float]:
    text = page.locator(".widget-html-content b").filter(has_text="cIoU").first.inner_text()
    m = re.match(r"cIoU (nan|[0-9.]+) \|", text)
    assert m, f"unexpected score line {text!r}"
    return text, float(m.group(1))


def _image_src(page) -> str:
    return page.locator("img.widget-image").first.get_attribute("src") or ""


def _wait_update(page, old_src: str, must_contain: str) -> tuple[str, float]:
    page.wait_for_function(
        """([oldSrc, needle]) => {
            const img = document.querySelector('img.widget-image');
            const score = [...document.querySelectorAll('.widget-html-content b')]
                .map(b => b.textContent).find(t => t.startsWith('cIoU'));
            return img && img.src && img.src !== oldSrc && score && score.includes(needle);
        }""", arg=[old_src, must_contain], timeout=UPDATE_TIMEOUT_S * 1000)
    return _score(page)


def _select(page, label: str, option: str) -> None:
    name = page.locator("label.widget-label", has_text=re.compile(f"^{re.escape(label)}$"))
    box = page.locator(".widget-dropdown").filter(has=name)
    box.locator("select").select_option(label=option)


def test_missing_browser_skips_here_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install-browser"):
        _missing("no chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _missing("no chromium")


@pytest.mark.browser
@pytest.mark.slow
def test_explorer_runs_and_updates_in_chromium(lab, playwright_api, tmp_path):
    url, token, params, data = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "browser_explorer.png"
    for old in (shot, ARTIFACTS / "browser_explorer_failure.png"):
        old.unlink(missing_ok=True)
    t0 = time.monotonic()
    with playwright_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1800})
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}", timeout=120_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext",
                                   timeout=120_000)
            page.evaluate("""async () => {
                const app = window.jupyterapp;
                const panel = app.shell.currentWidget;
                await panel.sessionContext.ready;
                await app.commands.execute('notebook:run-all-cells');
            }""")
            page.wait_for_selector("img.widget-image[src^='blob:']", timeout=RUN_TIMEOUT_S * 1000)
            text0, score0 = _score(page)
            src0 = _image_src(page)
            assert START_METHOD in text0
            assert score0 == pytest.approx(_expected_ciou(data, params, START_METHOD, "auto"), abs=5e-4)

            _select(page, "method", NEW_METHOD)
            text1, score1 = _wait_update(page, src0, NEW_METHOD)
            assert score1 == pytest.approx(_expected_ciou(data, params, NEW_METHOD, "auto"), abs=5e-4)
            src1 = _image_src(page)

            _select(page, "post-proc.", "clean")
            text2, score2 = _wait_update(page, src1, "post-processing clean")
            assert score2 == pytest.approx(_expected_ciou(data, params, NEW_METHOD, "clean"), abs=5e-4)
            assert NEW_METHOD in text2
            page.locator("img.widget-image").first.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            if not shot.exists():
                page.screenshot(path=str(ARTIFACTS / "browser_explorer_failure.png"), full_page=True)
            ctx.close()
    (ARTIFACTS / "browser_explorer.json").write_text(json.dumps(
        {"scores": [text0, text1, text2], "seconds": round(time.monotonic() - t0, 1)}, indent=2) + "\n")
