"""A method's input protocol on the VGG-SS / Flickr-SoundNet test samples, and the model-ready arrays.

Each released evaluation prepares the same frame and audio file differently; :class:`Protocol`
names those choices and :func:`eval_arrays` applies them to decoded
:class:`~vssl_core.data.benchmarks.Sample` objects, giving the companion's
:class:`~vssl_core.data.arrays.EvalArrays` (the input of every map function).

Image geometry (to 224 x 224, Pillow bicubic, as torchvision's transforms on PIL images)
--------------------------------------------------------------------------------------
``"squash"``       ``Resize((224, 224))``: the whole frame, aspect ratio not kept (How to Listen's
                   RCGrad, Hear The Flow's test).
``"centre_crop"``  ``Resize(224)`` (shorter side to 224, longer side ``int(224 * long / short)``)
                   then ``CenterCrop(224)`` at ``round((size - 224) / 2)`` (the released LVS test).

The ground-truth maps do not move: every released evaluation paints the annotation's
normalised boxes on the 224 grid whatever the image geometry.

Audio window
------------
The file is averaged to mono and, with ``audio_sr`` set, resampled as a whole first (How to
Listen loads it with librosa at 16 kHz); ``clip`` clamps the samples to [-1, 1] (LVS). Then
``audio_seconds`` of it are cut: from ``sample.clip_start_s`` (anchor ``"start"``) or centred on
``sample.centre_s`` (anchor ``"centre"``, the start clamped at 0); a shorter piece is tiled
(``"tile"``, the released LVS and Hear The Flow code) or zero-padded (``"zero"``).
``audio_seconds=None`` keeps the whole clip from the anchor (the file, or the 10 s of a whole
YouTube video): the samples then differ in length and :func:`eval_arrays` returns one group per
length.

Flow
----
``EvalArrays.flow``: FlowGrad's magnitude (px per 1/8 s) resized bilinearly with the same
geometry (zeros when the sample has none); ``EvalArrays.flow_field``: Hear The Flow's uint8 flow
images resized like the frame (Pillow bicubic) and divided by 255, as its test's ``ToTensor``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vssl_core.data.arrays import EvalArrays
from vssl_core.data.benchmarks import Sample
from vssl_core.errors import data_error
from vssl_core.repro.config import PlainConfig

__all__ = ["SIZE", "Protocol", "resized_shape", "fit_image", "fit_map", "audio_window", "eval_arrays"]

SIZE = 224
_IMAGE = ("squash", "centre_crop")
_ANCHOR = ("start", "centre")
_FILL = ("tile", "zero")
_RESIZE = ("bilinear", "bicubic")


@dataclass(frozen=True)
class Protocol(PlainConfig):
    """How one released evaluation turns a test sample into model input and a map into a score.

    Attributes
    ----------
    image : {"squash", "centre_crop"}
        Frame geometry (module docstring).
    audio_anchor : {"start", "centre"}
    audio_seconds : float or None
        Window length (s); None: the whole file from the anchor.
    audio_fill : {"tile", "zero"}
        How a window longer than the audio left is filled.
    audio_sr : int or None
        Resample to this rate (Hz); None: the model's rate, which the evaluation sets to the
        files' own rate where the released code reads the file at its rate (LVS, Hear The Flow).
    clip : bool
        Clamp the samples to [-1, 1] (the released LVS test).
    map_resize : {"bilinear", "bicubic"}
        How the model's coarse map reaches 224 (Hear The Flow's test: bicubic).
    """

    image: str = "squash"
    audio_anchor: str = "start"
    audio_seconds: float | None = None
    audio_fill: str = "tile"
    audio_sr: int | None = None
    clip: bool = False
    map_resize: str = "bilinear"

    def __post_init__(self) -> None:
        for value, choices, name in ((self.image, _IMAGE, "image"), (self.audio_anchor, _ANCHOR, "audio_anchor"),
                                     (self.audio_fill, _FILL, "audio_fill"), (self.map_resize, _RESIZE, "map_resize")):
            if value not in choices:
                raise data_error(None, name, f"unknown value {value!r}", f"choose one of {choices}")
        if self.audio_seconds is not None and not self.audio_seconds > 0:
            raise data_error(None, "audio_seconds", f"must be > 0 or None, got {self.audio_seconds}", "pass e.g. 10")

    def describe(self) -> str:
        """One line for tables: ``squash; audio whole file @16000 Hz; maps bilinear``."""
        win = "whole file" if self.audio_seconds is None else \
            f"{self.audio_seconds:g} s from the {self.audio_anchor} ({self.audio_fill})"
        rate = f"@{self.audio_sr} Hz" if self.audio_sr else "@file rate"
        return f"{self.image}; audio {win} {rate}{'; clipped' if self.clip else ''}; maps {self.map_resize}"


def resized_shape(h: int, w: int, image: str) -> tuple[int, int, int, int]:
    """``(resized height, resized width, crop top, crop left)`` of the geometry (pixels)."""
    if image == "squash":
        return SIZE, SIZE, 0, 0
    if h <= w:
        rh, rw = SIZE, int(SIZE * w / h)
    else:
        rh, rw = int(SIZE * h / w), SIZE
    return rh, rw, int(round((rh - SIZE) / 2.0)), int(round((rw - SIZE) / 2.0))


def fit_image(frame: np.ndarray, image: str) -> np.ndarray:
    """``uint8 (H, W[, C])`` -> ``uint8 (224, 224[, C])`` with Pillow bicubic (see the module docstring)."""
    from PIL import Image

    arr = np.ascontiguousarray(frame)
    h, w = arr.shape[:2]
    rh, rw, top, left = resized_shape(h, w, image)
    if arr.ndim == 3 and arr.shape[2] != 3:  # e.g. two flow images: each resized alone ("L")
        return np.stack([fit_image(arr[..., c], image) for c in range(arr.shape[2])], axis=-1)
    im = Image.fromarray(arr).resize((rw, rh), Image.BICUBIC)
    return np.asarray(im)[top:top + SIZE, left:left + SIZE]


def fit_map(x: np.ndarray, image: str) -> np.ndarray:
    """A float map ``(H, W)`` on the frame's pixels -> ``float32 (224, 224)``: the crop of the
    geometry (in frame pixels), then a bilinear resize (:func:`vssl_core.eval.metrics.resize_to_grid`)."""
    from vssl_core.eval.metrics import resize_to_grid

    h, w = x.shape[:2]
    rh, rw, top, left = resized_shape(h, w, image)
    t0, l0 = int(round(top * h / rh)), int(round(left * w / rw))
    t1, l1 = int(round((top + SIZE) * h / rh)), int(round((left + SIZE) * w / rw))
    return resize_to_grid(np.asarray(x, np.float32)[None, t0:t1, l0:l1])[0].astype(np.float32)


def audio_window(sample: Sample, protocol: Protocol, sr: int) -> np.ndarray:
    """The protocol's window of ``sample``'s audio as ``float32 (1, T)`` at ``sr`` Hz (mono)."""
    x = sample.audio.mean(axis=0, keepdims=True).astype(np.float32)
    if int(sample.sr) != int(sr):  # polyphase, the whole file at once (as librosa.load(sr=...) does)
        from scipy.signal import resample_poly

        g = math.gcd(int(sample.sr), int(sr))
        x = resample_poly(x, int(sr) // g, int(sample.sr) // g, axis=-1).astype(np.float32)
    if protocol.clip:
        x = np.clip(x, -1.0, 1.0)
    if protocol.audio_anchor == "start":
        start = sample.clip_start_s
    else:
        start = sample.centre_s - (protocol.audio_seconds or 0.0) / 2.0
    s0 = max(int(math.floor(start * sr + 1e-9)), 0)
    if protocol.audio_seconds is None:
        end = None if sample.clip_seconds is None else s0 + int(round(sample.clip_seconds * sr))
        return np.ascontiguousarray(x[:, s0:end])
    n = int(round(protocol.audio_seconds * sr))
    seg = x[:, s0:s0 + n]
    if seg.shape[1] < n:
        if protocol.audio_fill == "tile" and seg.shape[1] > 0:
            seg = np.tile(seg, (1, n // seg.shape[1] + 1))[:, :n]
        else:
            seg = np.pad(seg, ((0, 0), (0, n - seg.shape[1])))
    return np.ascontiguousarray(seg, dtype=np.float32)


def eval_arrays(samples: Sequence[Sample], protocol: Protocol, sr: int, *, flow_field: bool = False
                ) -> list[tuple[list[int], EvalArrays]]:
    """The samples as :class:`EvalArrays` under ``protocol``, audio at ``sr`` Hz.

    Returns
    -------
    list of (positions, EvalArrays)
        One group per audio length (one group whenever ``protocol.audio_seconds`` is set);
        ``positions`` index ``samples``. ``clips`` holds the test ids, ``times`` the frame times
        (NaN for stored frames) and ``boxes`` the benchmark's own box units (VGG-SS normalised
        corners, Flickr 256-pixel corners), not Urbansas's.
    """
    if not samples:
        return []
    waves = [audio_window(s, protocol, sr) for s in samples]
    groups: dict[int, list[int]] = {}
    for k, w in enumerate(waves):
        groups.setdefault(w.shape[1], []).append(k)
    out = []
    for _, pos in sorted(groups.items(), key=lambda kv: kv[1][0]):
        chosen = [samples[k] for k in pos]
        images = np.stack([fit_image(s.frame, protocol.image) for s in chosen])
        flow = np.stack([fit_map(s.flow_mag, protocol.image) if s.flow_mag is not None
                         else np.zeros((SIZE, SIZE), np.float32) for s in chosen])
        field = None
        if flow_field:
            if any(s.htf_flow is None for s in chosen):
                missing = next(s.id for s in chosen if s.htf_flow is None)
                raise data_error(None, "flow_field", f"sample {missing!r} has no Hear The Flow flow",
                                 "give the videos layout or frames/ with flow/flow_x and flow/flow_y")
            field = np.stack([fit_image(s.htf_flow, protocol.image) for s in chosen]).astype(np.float32) / 255.0
        ev = EvalArrays(np.asarray([s.id for s in chosen]), np.asarray([s.frame_time for s in chosen], float),
                        images, flow, np.stack([waves[k] for k in pos]), np.stack([s.gt for s in chosen]),
                        [np.asarray(s.boxes, float).reshape(-1, 4) for s in chosen], field, int(sr))
        out.append((pos, ev))
    return out
