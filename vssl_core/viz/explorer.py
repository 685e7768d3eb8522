"""The interactive explorer's state: samples, lazily loaded methods, and what a view shows.

Everything the explorer notebook draws is computed here without widgets, so it is testable:
:meth:`Explorer.view` returns a :class:`View` (the sample, the method's map, the post-processed
map, the binary mask, the cIoU, the spectrogram) and :mod:`vssl_core.viz.explorer_view` draws it.

Conventions
-----------
- A :class:`Sample` is one evaluation pair of :func:`vssl_core.studies.flowgrad.load_evaluation`:
  the frame nearest to ``t`` (``uint8 (H, W, 3)``, the native frame when a frame reader is
  given, else the model input), the GT boxes ``(K, 4)`` ``[x, y, w, h]`` in 1280x720 annotation
  units, the GT map and the flow magnitude on the 224x224 metric grid (px per 8-fps step), and
  1 s of audio ``(C, T)`` from ``t - 0.5`` s at ``audio_sr`` Hz.
- **Swap audio**: a sample may carry the sound of another sample (``audio_index != index``).
  Audio-dependent methods are then run again with that sound; the GT stays the frame's.
- Maps are scored exactly as in the studies: ``B = postprocess(map) >= threshold`` and
  :func:`vssl_core.eval.metrics.ciou` (NaN when both ``B`` and the GT are empty). ``"auto"`` picks
  the method's own post-processing (``LocalizationMaps.postprocess``, see
  :data:`vssl_core.models.rcgrad_maps.POSTPROCESS`).

Methods are :class:`LazyMethod` objects: nothing is loaded or trained until a method is first
asked for a map. :mod:`vssl_core.viz.explorer_methods` builds the registry of the companion's
methods and the evaluation pairs.
"""
from __future__ import annotations

import io
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vssl_core.eval import metrics
from vssl_core.data.urbansas import URBANSAS_FRAME, scale_boxes
from vssl_core.data.arrays import EvalArrays
from vssl_core.eval.maps import LocalizationMaps

__all__ = [
    "POSTPROCESS_CHOICES", "Sample", "sample_pairs", "MapFunction", "MethodUnavailable", "LazyMethod",
    "Lazy", "View", "compute_view", "resolve_postprocess", "spectrogram", "wav_bytes", "score_text",
    "Explorer",
]

#: Post-processing choices of the explorer: "auto" is the method's own.
POSTPROCESS_CHOICES = ("auto", "clean", "median", "none")

StatusFn = Callable[[str], None]


@dataclass(frozen=True)
class Sample:
    """One evaluation pair, possibly with another pair's sound (see the module docstring).

    Attributes
    ----------
    index : int
        Position in the evaluation set.
    clip : str
    time : float
        Pair time ``t`` (s).
    frame : ndarray uint8, shape (H, W, 3)
        What is shown (native frame, or the model input).
    image : ndarray uint8, shape (S, S, 3)
        The model input.
    boxes : ndarray float64, shape (K, 4)
        GT boxes ``[x, y, w, h]`` in 1280x720 annotation units.
    gt : ndarray float32, shape (224, 224)
        GT map in [0, 1].
    flow : ndarray float32, shape (224, 224)
        Flow magnitude, px per 8-fps step.
    audio : ndarray float32, shape (C, T)
        The sound used, at ``audio_sr`` Hz.
    audio_sr : int
    audio_index : int
        Index of the sample whose sound this is (``index`` unless swapped).
    audio_label : str
        ``"clip @ t s"`` of that sample.
    """

    index: int
    clip: str
    time: float
    frame: np.ndarray
    image: np.ndarray
    boxes: np.ndarray
    gt: np.ndarray
    flow: np.ndarray
    audio: np.ndarray
    audio_sr: int
    audio_index: int
    audio_label: str

    @property
    def swapped(self) -> bool:
        """True when the sound is another sample's."""
        return self.audio_index != self.index

    def boxes_xyxy(self) -> np.ndarray:
        """GT boxes as ``(K, 4)`` ``[x1, y1, x2, y2]`` in pixels of :attr:`frame`."""
        h, w = self.frame.shape[:2]
        px = scale_boxes(self.boxes, (w, h), URBANSAS_FRAME)
        return np.column_stack([px[:, 0], px[:, 1], px[:, 0] + px[:, 2], px[:, 1] + px[:, 3]])


#: A method once loaded: ``EvalArrays -> LocalizationMaps`` of shape (N, 224, 224).
MapFunction = Callable[[EvalArrays], LocalizationMaps]


def sample_pairs(sample: Sample) -> EvalArrays:
    """The one-pair :class:`~vssl_core.data.arrays.EvalArrays` of ``sample`` (with the sound it
    carries): the input of every map function."""
    return EvalArrays(np.asarray([sample.clip]), np.asarray([float(sample.time)]), sample.image[None],
                      sample.flow[None], sample.audio[None], sample.gt[None], [sample.boxes], None,
                      int(sample.audio_sr))


class MethodUnavailable(RuntimeError):
    """A method of the registry that cannot run here (yet); the message says why and what to do."""


class Lazy:
    """A value computed by ``build()`` on the first :meth:`get` and kept by this object."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._value: Any = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def get(self) -> Any:
        if not self._done:
            self._value = self._build()
            self._done = True
        return self._value


class LazyMethod:
    """One localisation method; its model is loaded (or trained) on the first map asked.

    Parameters
    ----------
    name : str
        Display name (the registry key).
    build : callable () -> MapFunction
        Loads what the method needs and returns its map function; called once.
    uses_audio : bool
        Whether the map depends on the sound (swap audio re-runs it).
    needs_model : bool
        Whether ``build`` loads or trains a model (a status line is shown first).
    note : str
        One line for the reader (what the map is).
    """

    def __init__(self, name: str, build: Callable[[], MapFunction], *, uses_audio: bool,
                 needs_model: bool, note: str = "") -> None:
        self.name, self.uses_audio, self.needs_model, self.note = name, uses_audio, needs_model, note
        self._fn = Lazy(build)

    @property
    def loaded(self) -> bool:
        return self._fn.done

    def maps(self, inputs: EvalArrays, status: StatusFn | None = None) -> LocalizationMaps:
        """The method's maps of ``inputs`` (loading the method first if needed).

        Raises
        ------
        MethodUnavailable
            When the method cannot run here (e.g. its study module is not written yet).
        """
        first = not self._fn.done
        if first and self.needs_model and status is not None:
            status(f"{self.name}: loading its model (first use; trained and cached if the "
                   "model cache lacks it)...")
        fn = self._fn.get()
        if first and self.needs_model and status is not None:
            status(f"{self.name}: ready.")
        out = fn(inputs)
        if len(out.maps) != len(inputs.images):
            raise ValueError(f"{self.name} returned {len(out.maps)} maps for "
                             f"{len(inputs.images)} samples")
        return out

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"LazyMethod({self.name!r}, {state}, uses_audio={self.uses_audio})"


# -- one view: everything the figure shows --------------------------------------------------------
@dataclass(frozen=True)
class View:
    """What the explorer shows for one (sample, method, post-processing, threshold).

    Attributes
    ----------
    sample : Sample
    method : str
    raw_map : ndarray float32, shape (224, 224)
        The method's map (metric space).
    method_postprocess : str
        The method's own post-processing.
    postprocess : {"clean", "median", "none"}
        The one applied.
    threshold : float
    processed : ndarray, shape (224, 224)
        ``postprocess(raw_map)``.
    mask : ndarray bool, shape (224, 224)
        ``processed >= threshold``.
    ciou : float
        The sample's cIoU (NaN when mask and GT are both empty).
    spectrogram : ndarray float32, shape (F, S)
        Log power (dB) of the sound used.
    spec_extent : tuple of 4 float
        ``(t0, t1, f0, f1)`` in s and Hz for ``imshow(extent=...)``.
    """

    sample: Sample
    method: str
    raw_map: np.ndarray
    method_postprocess: str
    postprocess: str
    threshold: float
    processed: np.ndarray
    mask: np.ndarray
    ciou: float
    spectrogram: np.ndarray
    spec_extent: tuple[float, float, float, float]


def resolve_postprocess(choice: str, method_postprocess: str) -> str:
    """``"auto"`` -> the method's own post-processing; otherwise ``choice`` (checked)."""
    if choice not in POSTPROCESS_CHOICES:
        raise ValueError(f"postprocess must be one of {POSTPROCESS_CHOICES}, got {choice!r}")
    return method_postprocess if choice == "auto" else choice


def spectrogram(audio: np.ndarray, sr: int, start: float = 0.0
                ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Log power spectrogram (dB) of ``audio`` ``(C, T)`` or ``(T,)`` (channels averaged).

    512-sample Hann frames, hop 128 (as the data tour). Returns ``(F, S)`` float32 and the
    ``(t0, t1, f0, f1)`` extent with times from ``start`` seconds.
    """
    from scipy import signal

    x = np.asarray(audio, dtype=np.float64)
    x = x.mean(axis=0) if x.ndim == 2 else x
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"audio must be (C, T) or (T,) with T > 0, got shape {np.shape(audio)}")
    nper = min(512, x.size)
    f, _, sxx = signal.spectrogram(x, fs=sr, nperseg=nper, noverlap=nper // 4 * 3)
    spec = (10 * np.log10(sxx + 1e-10)).astype(np.float32)
    return spec, (float(start), float(start + x.size / sr), float(f[0]), float(f[-1]))


def compute_view(sample: Sample, maps: LocalizationMaps | np.ndarray, method: str = "",
                 postprocess: str = "auto", threshold: float = 0.5) -> View:
    """Score one sample's map and gather what the figure shows (no drawing).

    Parameters
    ----------
    sample : Sample
    maps : LocalizationMaps with one map, or ndarray shape (224, 224)
        A bare array has no own post-processing: ``postprocess`` must then not be "auto".
    method : str
        Display name.
    postprocess : {"auto", "clean", "median", "none"}
    threshold : float
        Pixel threshold on the post-processed map.
    """
    if isinstance(maps, LocalizationMaps):
        if len(maps.maps) != 1:
            raise ValueError(f"expected the maps of one sample, got {len(maps.maps)}")
        raw, own = maps.maps[0], maps.postprocess
    else:
        raw, own = np.asarray(maps), None
        if postprocess == "auto":
            raise ValueError("a bare map has no own post-processing: pass 'clean', 'median' or 'none'")
    raw = np.asarray(raw, dtype=np.float32)
    if raw.shape != (metrics.GRID, metrics.GRID):
        raise ValueError(f"the map must be ({metrics.GRID}, {metrics.GRID}), got {raw.shape}")
    how = resolve_postprocess(postprocess, own or postprocess)
    processed = metrics.postprocess(raw, how)[0]
    mask = processed >= threshold
    score = float(metrics.ciou(raw, sample.gt, postprocess=how, threshold=threshold)[0])
    spec, extent = spectrogram(sample.audio, sample.audio_sr, start=sample.time - 0.5)
    return View(sample, method, raw, own or how, how, float(threshold), processed, mask, score,
                spec, extent)


def score_text(view: View) -> str:
    """One line: ``cIoU 0.123 | method | post-processing | threshold | sound``."""
    own = " (its own)" if view.postprocess == view.method_postprocess else \
        f" (its own: {view.method_postprocess})"
    sound = (f"sound of sample {view.sample.audio_index} ({view.sample.audio_label})"
             if view.sample.swapped else "its own sound")
    return (f"cIoU {view.ciou:.3f} | {view.method} | post-processing {view.postprocess}{own} | "
            f"threshold {view.threshold:.2f} | {sound}")


def wav_bytes(audio: np.ndarray, sr: int) -> bytes:
    """16-bit PCM WAV bytes of ``audio`` ``(C, T)`` or ``(T,)`` in [-1, 1] (for an Audio widget).

    Channels are averaged to mono; values are clipped to [-1, 1].
    """
    x = np.asarray(audio, dtype=np.float64)
    x = x.mean(axis=0) if x.ndim == 2 else x
    if x.ndim != 1:
        raise ValueError(f"audio must be (C, T) or (T,), got shape {np.shape(audio)}")
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sr))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


class Explorer:
    """An evaluation set and its methods: :meth:`sample` and :meth:`view` for the widgets.

    Parameters
    ----------
    ev : EvalArrays
        The evaluation pairs (e.g. :func:`vssl_core.studies.flowgrad.load_pairs`).
    methods : mapping name -> LazyMethod
        Usually :func:`vssl_core.viz.explorer_methods.method_registry`.
    frame_reader : callable (clip, t) -> uint8 (H, W, 3), optional
        The frame to show (e.g. ``UrbansasDataset.frame``); default: the model input.
    audio_sr : int
        Sample rate of ``ev.audio`` (Hz).
    """

    def __init__(self, ev: Any, methods: Mapping[str, LazyMethod],
                 frame_reader: Callable[[str, float], np.ndarray] | None = None,
                 audio_sr: int = 16000) -> None:
        if len(ev) == 0:
            raise ValueError("the evaluation set is empty: nothing to explore")
        self.ev, self.methods, self.frame_reader, self.audio_sr = ev, dict(methods), frame_reader, audio_sr

    def __len__(self) -> int:
        return len(self.ev)

    def _check_index(self, i: int, what: str) -> int:
        if not 0 <= int(i) < len(self):
            raise IndexError(f"{what} {i} out of range 0..{len(self) - 1}")
        return int(i)

    def label(self, i: int) -> str:
        """``"clip @ t s"`` of sample ``i``."""
        return f"{self.ev.clips[i]} @ {float(self.ev.times[i]):.1f} s"

    def sample(self, index: int, audio_from: int | None = None) -> Sample:
        """Sample ``index`` with its own sound, or with the sound of sample ``audio_from``."""
        i = self._check_index(index, "sample")
        j = i if audio_from is None or audio_from < 0 else self._check_index(audio_from, "audio_from")
        clip, t = str(self.ev.clips[i]), float(self.ev.times[i])
        image = np.asarray(self.ev.images[i])
        frame = np.asarray(self.frame_reader(clip, t)) if self.frame_reader is not None else image
        return Sample(i, clip, t, frame, image, np.asarray(self.ev.boxes[i], dtype=float).reshape(-1, 4),
                      np.asarray(self.ev.gt[i], dtype=np.float32),
                      np.asarray(self.ev.flow[i], dtype=np.float32),
                      np.asarray(self.ev.audio[j], dtype=np.float32), self.audio_sr, j, self.label(j))

    def swap_partner(self, index: int) -> int:
        """The next sample (cyclically) from another clip, or the next sample when all share one."""
        i = self._check_index(index, "sample")
        n = len(self)
        for k in range(1, n):
            j = (i + k) % n
            if self.ev.clips[j] != self.ev.clips[i]:
                return j
        return (i + 1) % n

    def sound_options(self) -> list[tuple[str, int]]:
        """``(label, value)`` pairs for a "sound of" dropdown: -1 is the frame's own sound."""
        return [("the frame's own sound", -1)] + [(f"{j}: {self.label(j)}", j) for j in range(len(self))]

    def view(self, method: str, index: int, audio_from: int | None = None, postprocess: str = "auto",
             threshold: float = 0.5, status: StatusFn | None = None) -> View:
        """The :class:`View` of ``method`` on sample ``index`` (sound of ``audio_from`` if given).

        The method's map is computed with the sound the sample carries, so swapping the sound
        changes audio-dependent maps.
        """
        if method not in self.methods:
            raise KeyError(f"unknown method {method!r}; known: {list(self.methods)}")
        s = self.sample(index, audio_from)
        maps = self.methods[method].maps(sample_pairs(s), status=status)
        return compute_view(s, maps, method, postprocess, threshold)
