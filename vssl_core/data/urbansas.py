"""Urbansas (official layout) loader: annotations parsed once, media decoded lazily.

Layout of a root folder (the official release, Urbansas-mini and the synthetic scenes)::

    annotations/video_annotations.csv   one row per box (columns: VIDEO_COLUMNS)
    annotations/audio_annotations.csv   one row per sound event (columns: AUDIO_COLUMNS)
    audio/<clip>.wav                    any sample rate / channel count
    video/**/<clip>.mp4|.avi|.mkv       anywhere under video/, any fps and frame size

Conventions
-----------
- Clip names are canonicalised to the short form of the CSVs (``milan1202_44201``); the TAU long
  form ``street_traffic-milan-1202-44201`` is accepted for media file names
  (:func:`canonical_clip_name`).
- Boxes: ``[x, y, w, h]`` (top-left corner) in :data:`URBANSAS_FRAME` = 1280x720 annotation units;
  :func:`scale_boxes` gives pixels of a frame of any size.
- Times are seconds from the clip start. Images are ``uint8 (H, W, 3)`` RGB at the native size;
  audio is ``float32 (C, S)`` (see :mod:`vssl_core.data.media` for rounding and padding).
- Clips whose media is missing or cannot be decoded, or whose audio ends more than
  :data:`AUDIO_SLACK_S` before the annotations do (a truncated .wav), raise
  :class:`~vssl_core.errors.DataError` (``on_error="raise"``) or are listed in
  :attr:`UrbansasDataset.skipped` (``on_error="skip"``); the check opens each video, decodes its
  first frame and reads each .wav header at construction.
- Annotation cells are validated when the CSVs are read: an empty, non-numeric or infinite cell
  of a numeric column (:data:`VIDEO_NUMERIC`, :data:`AUDIO_NUMERIC`), or an empty clip name, is a
  :class:`~vssl_core.errors.DataError` naming the file, the column and the row; nothing is kept as
  NaN.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vssl_core.errors import DataError, data_error
from vssl_core.data import media
from vssl_core.data.urbansas_pairs import PROTOCOLS, Pair, PairSet, select_pairs

__all__ = [
    "URBANSAS_FRAME", "CLASS_IDS", "CLASS_NAMES", "VIDEO_COLUMNS", "AUDIO_COLUMNS",
    "VIDEO_EXTENSIONS", "UrbansasDataset", "canonical_clip_name", "scale_boxes", "Pair", "PairSet",
    "PROTOCOLS",
]

#: Annotation frame (width, height): box coordinates are in these units.
URBANSAS_FRAME: tuple[int, int] = (1280, 720)
CLASS_IDS: dict[str, int] = {"car": 0, "bus": 1, "motorbike": 2, "truck": 3, "offscreen": 4}
CLASS_NAMES: dict[int, str] = {v: k for k, v in CLASS_IDS.items()}
#: Official columns of ``annotations/video_annotations.csv`` ("" = the unnamed row index).
VIDEO_COLUMNS: tuple[str, ...] = (
    "", "frame_id", "track_id", "x", "y", "w", "h", "class_id", "visibility", "label", "filename",
    "city", "location_id", "time", "night", "subset",
)
#: Official columns of ``annotations/audio_annotations.csv``.
AUDIO_COLUMNS: tuple[str, ...] = (
    "", "filename", "class_id", "label", "non_identifiable_vehicle_sound", "start", "end",
)
#: Columns the loader needs (the others are kept but may be absent).
VIDEO_REQUIRED = ("track_id", "x", "y", "w", "h", "class_id", "visibility", "filename", "time")
AUDIO_REQUIRED = ("filename", "class_id", "label", "non_identifiable_vehicle_sound", "start", "end")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv")
#: Columns that must hold a finite number in every row (checked when the CSVs are read).
VIDEO_NUMERIC = ("frame_id", "track_id", "x", "y", "w", "h", "class_id", "visibility", "time", "night")
AUDIO_NUMERIC = ("class_id", "non_identifiable_vehicle_sound", "start", "end")
#: Seconds the annotations may run past the end of the audio (the real release has events
#: ending up to 16 ms after it); a wav shorter than that is an error, not zero-padded.
AUDIO_SLACK_S = 0.5

_TAU_LONG = re.compile(r"^street_traffic-([a-z]+)-(\d+)-(\d+)$")
_LAYOUT = ("expected the official Urbansas layout: annotations/video_annotations.csv, "
           "annotations/audio_annotations.csv, audio/<clip>.wav, video/**/<clip>.mp4")


def canonical_clip_name(name: str) -> str:
    """The short clip name used by the Urbansas CSVs.

    ``street_traffic-milan-1202-44201`` (TAU long form) -> ``milan1202_44201``; a path or a file
    extension is stripped; other names (MAVD ``acevedo0103_00_0``, already short names) are
    returned unchanged.

    Examples
    --------
    >>> canonical_clip_name("street_traffic-milan-1202-44201.mp4")
    'milan1202_44201'
    >>> canonical_clip_name("milan1202_44201")
    'milan1202_44201'
    """
    stem = Path(str(name)).name
    for ext in (*VIDEO_EXTENSIONS, ".wav"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    m = _TAU_LONG.match(stem)
    return f"{m.group(1)}{m.group(2)}_{m.group(3)}" if m else stem


def scale_boxes(boxes: np.ndarray, frame_size: tuple[int, int],
                annotation_frame: tuple[int, int] = URBANSAS_FRAME) -> np.ndarray:
    """Boxes ``(N, 4) [x, y, w, h]`` from annotation units to pixels of a ``(W, H)`` frame.

    Returns float64 ``(N, 4)``; no rounding, no clipping.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx = frame_size[0] / annotation_frame[0]
    sy = frame_size[1] / annotation_frame[1]
    return b * np.array([sx, sy, sx, sy])


def _cell_problem(raw: object) -> str:
    if raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip() == "":
        return "empty cell"
    return f"{str(raw)[:40]!r} is not a finite number"


def _check_numeric(df: pd.DataFrame, path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """``df`` with ``columns`` as numbers; a :class:`DataError` naming the file, the column and
    the row (and file line) of the first empty, non-numeric or infinite cell."""
    out = df.copy()
    for col in columns:
        if col not in out.columns:
            continue
        num = pd.to_numeric(out[col], errors="coerce")
        bad = ~np.isfinite(num.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            rows = np.flatnonzero(bad)
            i = int(rows[0])
            more = f" ({len(rows)} bad cells in this column)" if len(rows) > 1 else ""
            raise data_error(path, col, f"row {i + 1} (line {i + 2} of the file): "
                             f"{_cell_problem(out[col].iloc[i])}{more}",
                             f"write a finite number in every '{col}' cell; a truncated or "
                             "hand-edited file must be restored from the release")
        out[col] = num
    return out


def _check_text(df: pd.DataFrame, path: Path, columns: Sequence[str]) -> None:
    for col in columns:
        bad = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise data_error(path, col, f"row {i + 1} (line {i + 2} of the file): empty cell",
                             f"every row needs a '{col}'; restore the file from the release")


def _read_csv(path: Path, required: Sequence[str], official: Sequence[str],
              numeric: Sequence[str], text: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise data_error(path, None, "file not found", _LAYOUT)
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise data_error(path, None, f"cannot parse the CSV ({exc})", _LAYOUT) from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise data_error(path, missing[0], f"missing column(s) {missing}",
                         f"the header must hold the official columns {list(official)}")
    _check_text(df, path, text)
    df = _check_numeric(df, path, numeric)
    df["filename"] = df["filename"].astype(str).map(canonical_clip_name)
    return df


class UrbansasDataset:
    """A folder in the Urbansas layout.

    Parameters
    ----------
    root : path
        The dataset folder (see the module docstring for the layout).
    on_error : {"raise", "skip"}
        What to do with a clip whose media is missing or undecodable: raise a
        :class:`~vssl_core.errors.DataError` naming it, or leave it out and record it in
        :attr:`skipped` (reason -> clips).

    Attributes
    ----------
    root : Path
    clips : list of str
        Annotated clips with readable video and audio, sorted.
    skipped : dict str -> list of str
        Reason -> clips left out (empty with ``on_error="raise"``).

    Notes
    -----
    Urbansas-mini (and a synthetic root) has no separate unlabelled set: :meth:`unlabelled_clips`
    returns every clip with media; for self-supervised training pass ``exclude=`` the evaluation
    clips (``ds.pairs().clips``) to keep evaluation clips out of training.
    """

    def __init__(self, root: str | Path, on_error: str = "raise") -> None:
        if on_error not in ("raise", "skip"):
            raise data_error(None, "on_error", f"unknown value {on_error!r}", "use 'raise' or 'skip'")
        self.root = Path(root).expanduser().resolve()
        self.on_error = on_error
        if not self.root.is_dir():
            raise data_error(self.root, None, "dataset folder not found", _LAYOUT)
        ann = self.root / "annotations"
        self.video_annotations = _read_csv(ann / "video_annotations.csv", VIDEO_REQUIRED,
                                           VIDEO_COLUMNS, VIDEO_NUMERIC, ("filename",))
        self.audio_annotations = _read_csv(ann / "audio_annotations.csv", AUDIO_REQUIRED,
                                           AUDIO_COLUMNS, AUDIO_NUMERIC, ("filename", "label"))
        self.skipped: dict[str, list[str]] = {}
        self._video_info: dict[str, media.VideoInfo] = {}
        self._pair_cache: dict[str, PairSet] = {}
        self._audio_info: dict[str, media.AudioInfo] = {}
        self._video_paths, self._audio_paths = self._index_media()
        annotated = set(self.video_annotations["filename"]) | set(self.audio_annotations["filename"])
        self._all_media = self._check(sorted(annotated | (set(self._video_paths)
                                                          & set(self._audio_paths))), annotated)
        self.clips = [c for c in self._all_media if c in annotated]

    # ------------------------------------------------------------------ indexing and checks
    def _index_media(self) -> tuple[dict[str, Path], dict[str, Path]]:
        vdir, adir = self.root / "video", self.root / "audio"
        for d in (vdir, adir):
            if not d.is_dir():
                raise data_error(d, None, "folder not found", _LAYOUT)
        videos: dict[str, Path] = {}
        for p in sorted(vdir.rglob("*")):  # sorted: the first path wins for duplicate clips
            if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file():
                videos.setdefault(canonical_clip_name(p.name), p)
        audios: dict[str, Path] = {}
        for p in sorted(adir.glob("*")):
            if p.suffix.lower() == ".wav" and p.is_file():
                audios.setdefault(canonical_clip_name(p.name), p)
        return videos, audios

    def _fail(self, clip: str, reason: str, exc: Exception) -> None:
        if self.on_error == "raise":
            raise exc
        self.skipped.setdefault(reason, []).append(clip)

    def _probe(self, clip: str, kind: str, path: Path, probe: Callable[[Path], Any]) -> Any:
        """``probe(path)``, or None after :meth:`_fail` when the file does not decode."""
        try:
            return probe(path)
        except DataError as exc:
            self._fail(clip, f"undecodable {kind}", data_error(
                path, clip, f"clip {clip}: {exc}", f"replace the {kind} or use on_error='skip'"))
            return None

    def _check(self, clips: list[str], annotated: set[str]) -> list[str]:
        ok = []
        for clip in clips:
            vp, ap = self._video_paths.get(clip), self._audio_paths.get(clip)
            if vp is None:
                self._fail(clip, "missing video", data_error(
                    self.root / "video", clip, f"no video of clip {clip} (annotated: "
                    f"{clip in annotated})", f"add video/<any folder>/{clip}.mp4, or use "
                    "on_error='skip'"))
                continue
            if ap is None:
                self._fail(clip, "missing audio", data_error(
                    self.root / "audio", clip, f"no audio of clip {clip}",
                    f"add audio/{clip}.wav, or use on_error='skip'"))
                continue
            video = self._probe(clip, "video", vp, media.probe_video)
            audio = self._probe(clip, "audio", ap, media.probe_audio) if video is not None else None
            if audio is None:
                continue
            self._video_info[clip], self._audio_info[clip] = video, audio
            claimed, lasts = self._annotated_until(clip), audio.duration
            if lasts + AUDIO_SLACK_S < claimed:
                del self._audio_info[clip], self._video_info[clip]
                self._fail(clip, "audio shorter than annotations", data_error(
                    ap, clip, f"the audio lasts {lasts:.2f} s but the annotations of clip {clip} "
                    f"run to {claimed:.2f} s (a truncated file?)",
                    "restore the full .wav, or use on_error='skip' to leave the clip out"))
                continue
            ok.append(clip)
        return ok

    def _annotated_until(self, clip: str) -> float:
        """The latest time (s) the annotations of ``clip`` refer to: box times and event ends
        (the row of -1s of a clip without events counts as 0)."""
        v, a = self.video_annotations, self.audio_annotations
        times = v.loc[v["filename"] == clip, "time"].to_numpy(float)
        ends = a.loc[a["filename"] == clip, "end"].to_numpy(float)
        return float(max(times.max(initial=0.0), ends.max(initial=0.0)))

    def _known(self, clip: str) -> str:
        c = canonical_clip_name(clip)
        if c not in self._video_info:
            where = next((r for r, cs in self.skipped.items() if c in cs), None)
            why = f"skipped ({where})" if where else "not in this dataset"
            raise data_error(self.root, clip, f"clip {clip!r} is {why}",
                             "pick a clip from .clips or .unlabelled_clips()")
        return c

    # ------------------------------------------------------------------ media
    def video_path(self, clip: str) -> Path:
        """Path of the clip's video."""
        return self._video_paths[self._known(clip)]

    def audio_path(self, clip: str) -> Path:
        """Path of the clip's .wav."""
        return self._audio_paths[self._known(clip)]

    def video_info(self, clip: str) -> media.VideoInfo:
        """Header of the clip's video (fps, frame count, size)."""
        return self._video_info[self._known(clip)]

    def audio_info(self, clip: str) -> media.AudioInfo:
        """Header of the clip's audio."""
        return self._audio_info[self._known(clip)]

    def fps(self, clip: str) -> float:
        """Video frame rate (frames per second)."""
        return self.video_info(clip).fps

    def frame_size(self, clip: str) -> tuple[int, int]:
        """Native video frame size ``(W, H)`` in pixels."""
        return self.video_info(clip).size

    def duration(self, clip: str) -> float:
        """Clip length in seconds: the shorter of video and audio."""
        return min(self.video_info(clip).duration, self.audio_info(clip).duration)

    def frame_index(self, clip: str, t: float) -> int:
        """Frame index of time ``t``: ``round(t * fps)`` clamped to the last frame."""
        info = self.video_info(clip)
        return media.frame_index(t, info.fps, info.n_frames)

    def frame(self, clip: str, t: float) -> np.ndarray:
        """The frame nearest to ``t`` seconds: ``uint8 (H, W, 3)`` RGB."""
        return self.frames(clip, [t])[0]

    def frames(self, clip: str, times: Sequence[float], gray: bool = False) -> list[np.ndarray]:
        """Frames at ``times`` (seconds), decoded in one sequential pass, in the order given.

        Returns a list of ``uint8 (H, W, 3)`` RGB arrays (``(H, W)`` with ``gray=True``);
        equal frame indices share one array.
        """
        info = self.video_info(clip)
        idx = [media.frame_index(t, info.fps, info.n_frames) for t in times]
        got = media.read_frames(self.video_path(clip), idx, info.n_frames, gray=gray)
        return [got[i] for i in idx]

    def audio(self, clip: str, start: float, duration: float, sr: int = 16000,
              channels: str = "mono") -> np.ndarray:
        """Audio ``[start, start + duration)`` s as ``float32 (C, round(duration * sr))``.

        Resampled with ``scipy.signal.resample_poly``; zero-padded where the window leaves the
        clip (negative start or past the end). C = 1 (mono: channel mean) or 2 (stereo).
        """
        return media.read_audio(self.audio_path(clip), start, duration, sr=sr, channels=channels,
                                info=self.audio_info(clip))

    # ------------------------------------------------------------------ annotations
    def boxes(self, clip: str, t: float | None = None) -> pd.DataFrame:
        """All box rows of a clip (optionally at time ``t``), unfiltered."""
        c = canonical_clip_name(clip)
        v = self.video_annotations
        g = v[v["filename"] == c]
        return g if t is None else g[np.isclose(g["time"].to_numpy(float), t)]

    def events(self, clip: str) -> pd.DataFrame:
        """All audio-event rows of a clip, unfiltered (a row of -1s means no event)."""
        a = self.audio_annotations
        return a[a["filename"] == canonical_clip_name(clip)]

    def pairs(self, protocol: str = "flowgrad") -> PairSet:
        """Evaluation pairs of ``protocol`` (see :mod:`vssl_core.data.urbansas_pairs`).

        Computed once per protocol and cached on the object. Skipped clips are not considered
        (they are listed in :attr:`skipped`, and counted in ``dropped`` as ``clips: skipped``).
        """
        if protocol not in PROTOCOLS:
            raise data_error(None, "protocol", f"unknown protocol {protocol!r}",
                             f"choose one of {list(PROTOCOLS)}")
        if protocol not in self._pair_cache:
            ps = select_pairs(self.video_annotations, self.audio_annotations, self.clips,
                              protocol=protocol, frame=URBANSAS_FRAME)
            n_skipped = sum(len(v) for v in self.skipped.values())
            if n_skipped:
                ps.dropped["clips: skipped (media)"] += n_skipped
            self._pair_cache[protocol] = ps
        return self._pair_cache[protocol]

    # ------------------------------------------------------------------ training windows
    def unlabelled_clips(self, exclude: Sequence[str] = ()) -> list[str]:
        """Clips with readable video and audio (labelled or not), minus ``exclude``.

        Urbansas-mini has no separate unlabelled set: to train without touching the evaluation
        clips, pass ``exclude=ds.pairs().clips``.
        """
        ex = {canonical_clip_name(c) for c in exclude}
        return [c for c in self._all_media if c not in ex]

    def random_windows(self, n: int, duration: float = 5.0, seed: int = 0,
                       clips: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """``n`` random training windows ``(clip, start_seconds)``.

        Clips are drawn uniformly (with replacement) from ``clips`` (default
        :meth:`unlabelled_clips`), starts uniformly in ``[0, duration(clip) - duration]``
        (0 when the clip is shorter; its audio is then zero-padded). Deterministic in ``seed``.
        """
        pool = [self._known(c) for c in (clips if clips is not None else self.unlabelled_clips())]
        if not pool:
            raise data_error(self.root, "clips", "no clip to draw windows from",
                             "pass clips with readable video and audio")
        rng = np.random.default_rng(seed)
        which = rng.integers(0, len(pool), size=n)
        u = rng.random(n)
        out = []
        for k, f in zip(which, u):
            clip = pool[int(k)]
            span = max(self.duration(clip) - duration, 0.0)
            out.append((clip, float(round(f * span, 6))))
        return out

    def __repr__(self) -> str:
        return (f"UrbansasDataset({str(self.root)!r}, clips={len(self.clips)}, "
                f"media={len(self._all_media)}, skipped={sum(map(len, self.skipped.values()))})")
