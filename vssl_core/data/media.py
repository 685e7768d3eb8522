"""Video and audio decoding: frames by timestamp, audio windows resampled to a target rate.

Conventions
-----------
- Frames are returned as ``np.uint8`` arrays ``(H, W, 3)`` in **RGB** order (OpenCV decodes BGR;
  the conversion happens here, once).
- A timestamp ``t`` (seconds) maps to the nearest frame index ``round(t * fps)`` (half up),
  clamped to ``[0, n_frames - 1]``: times past the end give the last frame.
- Audio is ``np.float32`` ``(channels, samples)`` in [-1, 1]. A window ``[start, start + duration)``
  that leaves the clip (negative start, or past the end) is **zero-padded** there, so the output
  always holds exactly ``round(duration * sr)`` samples. Resampling uses
  :func:`scipy.signal.resample_poly` on the window plus a margin of real samples on both sides
  (so the filter sees the true signal, not an artificial edge, wherever the clip has one).

Decoding uses ``cv2.VideoCapture`` (any container/codec the OpenCV FFmpeg backend reads:
.mp4, .avi, .mkv) and ``soundfile`` for .wav. Undecodable files raise
:class:`vssl_core.errors.DataError` naming the file.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from vssl_core.errors import data_error

#: Frames a container may announce but not deliver (header frame counts of .avi/.mkv are
#: estimates): a shortfall up to this many frames clamps to the last decoded frame; a larger one
#: is a decoding error.
FRAME_COUNT_SLACK = 2


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about a video.

    Attributes
    ----------
    fps : float
        Frames per second.
    n_frames : int
        Number of frames.
    width, height : int
        Frame size in pixels.
    """

    fps: float
    n_frames: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Length in seconds (``n_frames / fps``)."""
        return self.n_frames / self.fps

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return (self.width, self.height)


@dataclass(frozen=True)
class AudioInfo:
    """What the .wav header says: sample rate (Hz), frames (samples per channel), channels."""

    sr: int
    n_samples: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sr


def frame_index(t: float, fps: float, n_frames: int) -> int:
    """Nearest frame index of timestamp ``t`` (seconds): ``round(t * fps)`` half up, clamped.

    A tiny tolerance absorbs float noise (``0.125 * 24 = 3.0000000000000004`` -> 3).
    """
    i = math.floor(t * fps + 0.5 + 1e-9)
    return int(min(max(i, 0), n_frames - 1))


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise data_error(path, "video", "OpenCV cannot open this video (corrupt, truncated or an "
                         "unsupported codec)", "replace the file with a readable .mp4/.avi/.mkv")
    return cap


def probe_video(path: str | Path) -> VideoInfo:
    """Read the header of a video and decode its first frame (a cheap integrity check).

    Raises
    ------
    DataError
        When the file cannot be opened, announces no frames or a non-positive fps, or its first
        frame cannot be decoded.
    """
    path = Path(path)
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        n = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        ok = cap.grab()
    finally:
        cap.release()
    if not ok or fps <= 0 or n <= 0 or w <= 0 or h <= 0:
        raise data_error(path, "video", f"undecodable video (first frame read: {ok}, fps={fps}, "
                         f"frames={n}, size={w}x{h})", "replace the file with a readable video")
    return VideoInfo(fps=fps, n_frames=n, width=w, height=h)


def read_frames(path: str | Path, indices: Iterable[int], n_frames: int | None = None,
                gray: bool = False) -> dict[int, np.ndarray]:
    """Decode the frames at ``indices`` in one sequential pass.

    Frames that are not wanted are skipped with ``grab()`` (demuxed and decoded but not
    converted); the pass stops after the largest wanted index.

    Parameters
    ----------
    path : path
        The video file.
    indices : iterable of int
        Frame indices (any order, duplicates allowed), ``>= 0``.
    n_frames : int, optional
        The header frame count. Wanted indices the stream does not deliver are clamped to the last
        decoded frame when they lie within :data:`FRAME_COUNT_SLACK` of it; otherwise (or without
        ``n_frames``) a short stream is an error.
    gray : bool
        Return ``(H, W)`` uint8 grayscale instead of ``(H, W, 3)`` RGB.

    Returns
    -------
    dict int -> ndarray
        One array per distinct wanted index.
    """
    path = Path(path)
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return {}
    if wanted[0] < 0:
        raise data_error(path, "frame index", f"negative index {wanted[0]}", "pass indices >= 0")
    code = cv2.COLOR_BGR2GRAY if gray else cv2.COLOR_BGR2RGB
    out: dict[int, np.ndarray] = {}
    cap = _open(path)
    try:
        pos, k, last = 0, 0, None
        while k < len(wanted):
            if not cap.grab():
                break
            if pos == wanted[k]:
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                last = cv2.cvtColor(bgr, code)
                while k < len(wanted) and wanted[k] == pos:
                    out[pos] = last
                    k += 1
            pos += 1
    finally:
        cap.release()
    if k < len(wanted):
        missing = wanted[k:]
        short = n_frames is not None and pos > 0 and missing[-1] < n_frames + FRAME_COUNT_SLACK \
            and pos >= n_frames - FRAME_COUNT_SLACK
        if not short:
            raise data_error(path, "video", f"decoding stopped after {pos} frames; frame "
                             f"{missing[0]} was wanted" + (f" of {n_frames}" if n_frames else ""),
                             "the video is truncated or corrupt: replace it")
        if last is None:  # the last decoded frame was not a wanted one: decode it again
            last = read_frames(path, [pos - 1], gray=gray)[pos - 1]
        for i in missing:
            out[i] = last
    return out


def probe_audio(path: str | Path) -> AudioInfo:
    """Read a .wav header (raises :class:`DataError` when soundfile cannot parse it)."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise data_error(path, "audio", f"soundfile cannot read this file ({exc})",
                         "replace it with a readable .wav") from exc
    if info.samplerate <= 0 or info.frames <= 0:
        raise data_error(path, "audio", f"empty audio ({info.frames} samples at "
                         f"{info.samplerate} Hz)", "replace it with a non-empty .wav")
    return AudioInfo(sr=int(info.samplerate), n_samples=int(info.frames),
                     channels=int(info.channels))


def read_audio(path: str | Path, start: float, duration: float, sr: int = 16000,
               channels: str = "mono", info: AudioInfo | None = None) -> np.ndarray:
    """A window of audio, resampled and zero-padded outside the clip.

    Parameters
    ----------
    path : path
        A file soundfile reads (.wav).
    start, duration : float
        Window start (may be negative) and length, in seconds.
    sr : int
        Output sample rate in Hz.
    channels : {"mono", "stereo"}
        "mono" averages the file's channels; "stereo" keeps the first two (a mono file is
        duplicated).
    info : AudioInfo, optional
        The header, when already known.

    Returns
    -------
    ndarray, float32, shape (C, round(duration * sr))
        C = 1 for mono, 2 for stereo. Samples outside the clip are 0.
    """
    path = Path(path)
    if channels not in ("mono", "stereo"):
        raise data_error(None, "channels", f"unknown value {channels!r}", "use 'mono' or 'stereo'")
    if duration <= 0 or sr <= 0:
        raise data_error(None, "duration/sr", f"need positive values, got {duration}, {sr}",
                         "pass duration > 0 and sr > 0")
    info = info or probe_audio(path)
    ratio = Fraction(int(sr), info.sr)
    up, down = ratio.numerator, ratio.denominator
    n_out = int(round(duration * sr))
    # margin of real signal for the resampling filter (its half length is 10*max(up,down) taps
    # at the upsampled rate); a multiple of `down` keeps the output grid aligned
    margin = (10 * max(up, down) // up + 1) if (up, down) != (1, 1) else 0
    margin = int(math.ceil(margin / down) * down)
    s0 = int(round(start * info.sr)) - margin
    n_in = int(math.ceil(n_out * down / up)) + 2 * margin
    lo, hi = max(s0, 0), min(s0 + n_in, info.n_samples)
    buf = np.zeros((n_in, info.channels), dtype=np.float32)
    if hi > lo:
        try:
            data, _ = sf.read(str(path), start=lo, stop=hi, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise data_error(path, "audio", f"decoding failed ({exc})", "replace the file") from exc
        buf[lo - s0: lo - s0 + len(data)] = data
    if channels == "mono":
        x = buf.mean(axis=1, keepdims=True)
    else:
        x = buf[:, :2] if info.channels >= 2 else np.repeat(buf, 2, axis=1)
    x = x.T  # (C, n_in)
    if (up, down) != (1, 1):
        x = resample_poly(x, up, down, axis=1)
    off = margin * up // down
    y = x[:, off: off + n_out]
    if y.shape[1] < n_out:
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[1])))
    return np.ascontiguousarray(y, dtype=np.float32)
