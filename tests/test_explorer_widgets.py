"""The explorer's widgets (vssl_core.viz.explorer_widgets) without a browser: escaped text, and
no stale picture or score under a method that is loading or cannot run."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vssl_core.data.arrays import EvalArrays  # noqa: E402
from vssl_core.eval.maps import LocalizationMaps  # noqa: E402
from vssl_core.eval.metrics import GRID  # noqa: E402
from vssl_core.viz import explorer as ex  # noqa: E402
from vssl_core.viz import explorer_widgets as ew  # noqa: E402

pytest.importorskip("ipywidgets")


def _eval_set() -> EvalArrays:
    n, sr = 2, 800
    gt = np.zeros((n, GRID, GRID), np.float32)
    gt[:, :112, :112] = 1.0
    return EvalArrays(np.array(["a", "b"]), np.array([1.0, 2.0]), np.zeros((n, 8, 8, 3), np.uint8),
                      np.zeros((n, GRID, GRID), np.float32), np.zeros((n, 1, sr), np.float32), gt,
                      [np.array([[0.0, 0.0, 640.0, 360.0]])] * n, None, sr)


def _constant(value: float):
    return lambda b: LocalizationMaps(np.full((len(b.images), GRID, GRID), value, np.float32), "none", "c")


class Watcher:
    """A model-backed method whose loading records what the widgets show meanwhile."""

    def __init__(self) -> None:
        self.ui: ew.ExplorerWidgets | None = None
        self.during: dict = {}

    def build(self) -> ex.MapFunction:
        ui = self.ui
        self.during = {"stale": ew.STALE_CLASS in ui.image._dom_classes, "score": ui.score.value,
                       "status": ui.status.value}
        return _constant(0.0)


def _ui():
    watcher = Watcher()
    methods = {
        "box": ex.LazyMethod("box", lambda: _constant(1.0), uses_audio=False, needs_model=False,
                             note="a map of ones"),
        "model": ex.LazyMethod("model", watcher.build, uses_audio=True, needs_model=True,
                               note="Grad-CAM of <image, audio> embeddings"),
        "missing": ex.LazyMethod("missing", lambda: (_ for _ in ()).throw(ex.MethodUnavailable("not <here>")),
                                 uses_audio=False, needs_model=True),
    }
    explorer = ex.Explorer(_eval_set(), methods, audio_sr=800)
    ui = ew.ExplorerWidgets(explorer, "box")
    watcher.ui = ui
    return ui, watcher


def test_first_view_shows_a_picture_and_a_score():
    ui, _ = _ui()
    assert ui.image.value[:4] == b"\x89PNG" and ew.STALE_CLASS not in ui.image._dom_classes
    assert ui.score.value.startswith("<b>cIoU ") and "| box |" in ui.score.value


def test_loading_a_method_greys_the_old_picture_and_clears_its_score():
    ui, watcher = _ui()
    old_png, old_score = ui.image.value, ui.score.value
    ui.method.value = "model"
    assert watcher.during["stale"], "the previous picture was not greyed out while the model loaded"
    assert "cIoU" not in watcher.during["score"] and "loading" in watcher.during["score"]
    assert ew.STALE_CLASS not in ui.image._dom_classes
    assert ui.image.value != old_png and ui.score.value != old_score and "| model |" in ui.score.value


def test_text_from_the_package_is_escaped():
    ui, _ = _ui()
    ui.method.value = "model"
    assert "&lt;image, audio&gt;" in ui.status.value and "<image" not in ui.status.value
    assert ew.status_html("a <b> & c") == "<i>a &lt;b&gt; &amp; c</i>"


def test_a_method_that_cannot_run_leaves_no_stale_score():
    ui, _ = _ui()
    ui.method.value = "missing"
    assert ew.STALE_CLASS in ui.image._dom_classes
    assert "cIoU" not in ui.score.value and "not &lt;here&gt;" in ui.score.value


def test_swap_audio_toggles_the_sound():
    ui, _ = _ui()
    ui.swap.click()
    assert ui.sound.value == 1
    ui.swap.click()
    assert ui.sound.value == -1
