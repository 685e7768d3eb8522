"""The explorer's widgets: controls, a status line, the score, the picture, the sound and a log.

Nothing is computed here: every view comes from :meth:`vssl_core.viz.explorer.Explorer.view` and
is drawn by :func:`vssl_core.viz.explorer_view.draw`. What this module adds is what a learner sees
while things change:

- text from the package (method notes such as ``Grad-CAM of <image, audio> embeddings``, error
  messages) is HTML-escaped before it goes into an HTML widget, so nothing is swallowed as a tag;
- while a method loads its model (its first use; it may train), or when it cannot run, the
  previous picture is greyed out (:data:`STALE_CLASS`) and the score line says what is happening,
  so the last method's picture and score never stand under the new method's name.
"""
from __future__ import annotations

import html
from typing import Any

from vssl_core.viz.explorer import POSTPROCESS_CHOICES, Explorer, MethodUnavailable, View, score_text, wav_bytes

__all__ = ["STALE_CLASS", "status_html", "score_html", "pending_html", "ExplorerWidgets"]

#: CSS class of the picture while it shows an earlier state.
STALE_CLASS = "vssl-stale"
_STYLE = f"<style>.{STALE_CLASS} {{ opacity: 0.25; filter: grayscale(100%); }}</style>"


def status_html(message: str) -> str:
    """The status line: ``message`` escaped, in italics."""
    return f"<i>{html.escape(message)}</i>"


def score_html(view: View) -> str:
    """The score line of ``view`` (:func:`~vssl_core.viz.explorer.score_text`), escaped, bold."""
    return f"<b>{html.escape(score_text(view))}</b>"


def pending_html(message: str) -> str:
    """The score line while no score is shown: ``message`` escaped, in grey."""
    return f"<span style='color: #888'>{html.escape(message)}</span>"


class ExplorerWidgets:
    """The interactive explorer of the notebook ``05_explorer``: widgets wired to an :class:`Explorer`.

    Parameters
    ----------
    explorer : Explorer
    method : str
        The method shown first (a key of ``explorer.methods``).
    sample_index : int
    audio_from : int
        -1: the frame's own sound; k: the sound of sample k.
    postprocess : {"auto", "clean", "median", "none"}
    threshold : float

    Attributes
    ----------
    method, post, threshold, sample, sound : ipywidgets controls
    swap : ipywidgets.Button
        Pairs the frame with another clip's sound (press again to restore).
    status, score : ipywidgets.HTML
    image : ipywidgets.Image
    audio : ipywidgets.Audio
    log : ipywidgets.Output
        Loading and training progress, and tracebacks.
    box : ipywidgets.VBox
        Everything, to ``display``.
    """

    def __init__(self, explorer: Explorer, method: str, sample_index: int = 0, audio_from: int = -1,
                 postprocess: str = "auto", threshold: float = 0.5) -> None:
        import ipywidgets as W

        self.explorer = explorer
        self.method = W.Dropdown(options=list(explorer.methods), value=method, description="method")
        self.post = W.Dropdown(options=POSTPROCESS_CHOICES, value=postprocess, description="post-proc.")
        self.threshold = W.FloatSlider(value=threshold, min=0.0, max=1.0, step=0.05, description="threshold",
                                       continuous_update=False)
        self.sample = W.IntSlider(value=sample_index, min=0, max=len(explorer) - 1, description="sample",
                                  continuous_update=False)
        self.sound = W.Dropdown(options=explorer.sound_options(), value=audio_from, description="sound of")
        self.swap = W.Button(description="swap audio", tooltip="pair the frame with another sample's sound")
        self.status, self.score = W.HTML(), W.HTML()
        self.image, self.audio = W.Image(format="png"), W.Audio(format="wav", autoplay=False)
        self.log = W.Output()
        self.swap.on_click(self._swap)
        for w in (self.method, self.post, self.threshold, self.sample, self.sound):
            w.observe(self.update, names="value")
        self.box = W.VBox([W.HTML(_STYLE), W.HBox([self.method, self.post, self.threshold]),
                           W.HBox([self.sample, self.sound, self.swap]), self.status, self.score,
                           self.image, self.audio, self.log])
        self.update()

    def say(self, message: str) -> None:
        """Show ``message`` in the status line."""
        self.status.value = status_html(message)

    def _stale(self, message: str) -> None:
        """Grey the picture out and replace the score by ``message``."""
        self.image.add_class(STALE_CLASS)
        self.score.value = pending_html(message)
        self.say(message)

    def _swap(self, _: Any = None) -> None:
        self.sound.value = -1 if self.sound.value >= 0 else self.explorer.swap_partner(self.sample.value)

    def update(self, *_: Any) -> View | None:
        """Recompute and show the view of the controls' values; returns it (None when the
        method cannot run here or failed: the message says why, the log holds the traceback)."""
        name = self.method.value
        lazy = self.explorer.methods[name]
        if lazy.needs_model and not lazy.loaded:
            self._stale(f"{name}: loading its model (first use; trained and cached if the model cache "
                        "lacks it; progress in the log below)...")
        view = None
        with self.log:  # in a kernel the log shows a traceback and swallows the exception
            try:
                view = self.explorer.view(name, self.sample.value, self.sound.value, self.post.value,
                                          self.threshold.value, status=self.say)
            except MethodUnavailable as err:
                self._stale(str(err))
            except Exception as err:
                self._stale(f"{name} failed: {type(err).__name__}: {err} (traceback below)")
                raise
        if view is None:
            return None
        from vssl_core.viz.explorer_view import draw, png_bytes

        self.image.value = png_bytes(draw(view))
        self.audio.value = wav_bytes(view.sample.audio, view.sample.audio_sr)
        self.score.value = score_html(view)
        self.image.remove_class(STALE_CLASS)
        self.say(f"{view.method}: {lazy.note}")
        return view
