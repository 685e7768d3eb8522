"""What a learner sees in a real browser: JupyterLab + headless Chromium (Playwright).

A temporary *fresh clone* (the project's tracked and untracked-but-not-ignored files, committed
into a new git repository, with the git filter of ``make setup``) holds ``01_dataset_bias`` and
``05_explorer`` parameterised with the smoke profile (papermill injects the parameters cell and
the clone commits it; ``output_dir`` keeps the notebook's own default, as by hand). A JupyterLab
server (random free port, a token) serves the clone with a temporary ``VSSL_DATA_DIR`` and the
clone's package on ``PYTHONPATH``. Headless Chromium (``/usr/bin/chromium``, Debian's package;
Playwright never downloads a browser here) then does what a learner does:

- opens ``01``, runs all cells and saves: the page shows rendered figures, the saved notebook
  holds them as ``image/png`` outputs with no error, and the files went to
  ``build/interactive/01_dataset_bias/``;
- opens ``05``, runs all cells: the default view is an inline figure; changing the method and
  the post-processing dropdowns changes the picture and shows the score that
  :mod:`vssl_core.viz.explorer` computes for the new state;
- after both, nothing committed changed: ``git diff`` of the clone is empty (the saved outputs
  are filtered out) and nothing new appeared under ``figures/`` or ``notebooks/``.

Screenshots go to ``build/test-artifacts/`` (also on failure).

Without ``/usr/bin/chromium`` the test is skipped with the reason, except under ``CI=true``,
where it fails: ``.ci/install-browser`` (run by ``make test``) installs it as root.
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
BIAS, EXPLORER = "01_dataset_bias", "05_explorer"
START_METHOD, NEW_METHOD = "Centred box", "Optical flow only"  # no model to train in the browser
RUN_TIMEOUT_S = 420  # a whole notebook on a fresh data folder (synthetic clips generated)
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


def _smoke_parameters(stem: str) -> dict:
    """The smoke profile's values for notebook ``stem``, without ``output_dir`` (the notebook's
    own default stays, as when a learner runs it)."""
    from vssl_core.repro.profiles import load_profile, profile_path, resolve_parameters

    nbdir = repo_root() / "notebooks"
    params = resolve_parameters(nbdir / f"{stem}.ipynb", load_profile(nbdir, "smoke"), "smoke",
                                profile_path(nbdir, "smoke"))
    params.pop("output_dir", None)
    params["urbansas_root"] = ""
    if stem == EXPLORER:
        params.update(method=START_METHOD, postprocess="auto", audio_from=-1)
        params.setdefault("sample_index", 0)
        params.setdefault("threshold", 0.5)
    return params


def _git(clone: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args],
                         cwd=clone, capture_output=True, text=True)
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout


def _nbstrip(clone: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("nbstrip", clone / ".ci" / "nbstrip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fresh_clone(dest: Path) -> dict[str, dict]:
    """Copy the project's files (tracked, and untracked but not ignored) into ``dest``, inject the
    smoke parameters into 01 and 05, commit, and install the git filter as ``make setup`` does.
    Returns the injected parameters per notebook."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    root = repo_root()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=root, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (root / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, dest / rel)
    nbstrip = _nbstrip(dest)
    params = {}
    for stem in (BIAS, EXPLORER):
        params[stem] = _smoke_parameters(stem)
        nb = parameterize_notebook(load_notebook_node(str(root / "notebooks" / f"{stem}.ipynb")), params[stem])
        (dest / "notebooks" / f"{stem}.ipynb").write_text(nbstrip.dumps(nbstrip.strip(json.loads(json.dumps(nb)))))
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "a fresh clone, smoke parameters injected")
    subprocess.run([sys.executable, ".ci/nbstrip.py", "--install"], cwd=dest, check=True, capture_output=True)
    return params


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
    """(url, token, params per notebook, data_dir, clone) of a JupyterLab serving a fresh clone."""
    root = tmp_path_factory.mktemp("browser")
    clone, data = root / "clone", root / "data"
    clone.mkdir()
    params = _fresh_clone(clone)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, VSSL_DATA_DIR=str(data), OMP_NUM_THREADS="1", PYTHONPATH=str(clone),
               JUPYTER_CONFIG_DIR=str(root / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"))
    env.pop("MPLBACKEND", None)
    env.pop("VSSL_SHARED_DATA", None)  # a learner's fresh clone: no real data
    log = root / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.root_dir={clone}", f"--IdentityProvider.token={token}",
           f"--LabApp.user_settings_dir={root / 'lab-settings'}",
           f"--LabApp.workspaces_dir={root / 'lab-workspaces'}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI run as root
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=clone, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        yield f"http://127.0.0.1:{port}", token, params, data, clone
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTIFACTS / "browser_jupyterlab.log")


@pytest.fixture
def page(lab, playwright_api, tmp_path):
    """A Chromium page of the lab (closed afterwards)."""
    with playwright_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1800})
        try:
            yield ctx.pages[0] if ctx.pages else ctx.new_page()
        finally:
            ctx.close()


def _open_and_run_all(page, url: str, token: str, stem: str) -> None:
    """Open notebooks/<stem>.ipynb in a workspace of its own, run all cells and wait until every
    code cell has run (or one failed)."""
    path = f"notebooks/{stem}.ipynb"
    page.goto(f"{url}/lab/workspaces/{stem}/tree/{path}?token={token}", timeout=120_000)
    page.wait_for_function("""(path) => {
        const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === path && w.sessionContext;
    }""", arg=path, timeout=120_000)
    page.evaluate("""async (path) => {
        const app = window.jupyterapp;
        const panel = app.shell.currentWidget;
        if (panel.context.path !== path) throw new Error(`current notebook is ${panel.context.path}`);
        await panel.context.ready;
        await panel.sessionContext.ready;
        await app.commands.execute('notebook:run-all-cells');
    }""", path)
    page.wait_for_function("""(path) => {
        const panel = window.jupyterapp.shell.currentWidget;
        if (!panel || panel.context.path !== path) return false;
        const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
        if (!kernel || kernel.status !== 'idle') return false;
        const code = panel.content.widgets.filter(c => c.model.type === 'code');
        const failed = code.some(c => [...Array(c.model.outputs.length).keys()]
            .some(i => c.model.outputs.get(i).type === 'error'));
        return failed || code.every(c => c.model.executionCount !== null);
    }""", arg=path, timeout=RUN_TIMEOUT_S * 1000)


def _save(page) -> None:
    page.evaluate("""async () => {
        const panel = window.jupyterapp.shell.currentWidget;
        await panel.context.save();
    }""")


def _rendered_figures(page) -> int:
    """Inline figures in the page (matplotlib's image/png outputs, not widget images), loaded."""
    return page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output img')]
        .filter(img => !img.classList.contains('widget-image') && img.naturalWidth > 0).length""")


def _saved_outputs(clone: Path, stem: str) -> tuple[int, list[str]]:
    """(image/png outputs, error names) of the notebook JupyterLab saved."""
    nb = json.loads((clone / "notebooks" / f"{stem}.ipynb").read_text())
    outs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    return (sum("image/png" in o.get("data", {}) for o in outs),
            [f"{o['ename']}: {o['evalue']}" for o in outs if o.get("output_type") == "error"])


def _assert_nothing_committed_changed(clone: Path) -> None:
    changed = _git(clone, "diff", "--name-only", "--", "notebooks", "figures")
    assert changed == "", f"a run in the browser changed committed files: {changed}"
    untracked = [ln for ln in _git(clone, "status", "--porcelain", "--untracked-files=all", "--",
                                   "notebooks", "figures").splitlines() if ln.startswith("??")]
    assert untracked == [], f"a run in the browser left new files in the committed folders: {untracked}"


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


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
                .map(b => b.textContent).find(t => /^cIoU (nan|[0-9.]+) [|]/.test(t));
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
def test_dataset_bias_shows_its_figures_inline_and_changes_nothing_committed(lab, page):
    url, token, _, _, clone = lab
    try:
        _open_and_run_all(page, url, token, BIAS)
        _save(page)
        assert _rendered_figures(page) >= 1, "no figure is rendered in the notebook"
        images, errors = _saved_outputs(clone, BIAS)
        assert errors == [], f"cells failed: {errors}"
        assert images >= 1, "the saved notebook embeds no image/png output"
        scratch = clone / "build" / "interactive" / BIAS
        assert (scratch / "fig2_dataset_bias.png").is_file(), f"nothing written to {scratch}"
        _assert_nothing_committed_changed(clone)
        _screenshot(page, "browser_dataset_bias.png")
    except BaseException:
        _screenshot(page, "browser_dataset_bias_failure.png")
        raise


@pytest.mark.browser
@pytest.mark.slow
def test_explorer_shows_its_view_and_widgets_change_the_picture(lab, page):
    url, token, params, data, clone = lab
    params = params[EXPLORER]
    t0 = time.monotonic()
    try:
        _open_and_run_all(page, url, token, EXPLORER)
        page.wait_for_selector("img.widget-image[src^='blob:']", timeout=RUN_TIMEOUT_S * 1000)
        assert _rendered_figures(page) >= 1, "the default view is not shown inline"
        text0, score0 = _score(page)
        src0 = _image_src(page)
        assert START_METHOD in text0
        assert score0 == pytest.approx(_expected_ciou(data, params, START_METHOD, "auto"), abs=5e-4)

        _select(page, "method", NEW_METHOD)
        text1, score1 = _wait_update(page, src0, NEW_METHOD)
        assert score1 == pytest.approx(_expected_ciou(data, params, NEW_METHOD, "auto"), abs=5e-4)
        src1 = _image_src(page)
        status = page.locator(".widget-html-content i").first.inner_text()
        assert status.startswith(NEW_METHOD), f"status line {status!r}"

        _select(page, "post-proc.", "clean")
        text2, score2 = _wait_update(page, src1, "post-processing clean")
        assert score2 == pytest.approx(_expected_ciou(data, params, NEW_METHOD, "clean"), abs=5e-4)
        assert NEW_METHOD in text2
        _save(page)
        images, errors = _saved_outputs(clone, EXPLORER)
        assert errors == [] and images >= 1, f"saved notebook: {images} images, errors {errors}"
        _assert_nothing_committed_changed(clone)
        page.locator("img.widget-image").first.scroll_into_view_if_needed()
        _screenshot(page, "browser_explorer.png")
    except BaseException:
        _screenshot(page, "browser_explorer_failure.png")
        raise
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "browser_explorer.json").write_text(json.dumps(
        {"scores": [text0, text1, text2], "seconds": round(time.monotonic() - t0, 1)}, indent=2) + "\n")
