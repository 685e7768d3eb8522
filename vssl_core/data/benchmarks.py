"""VGG-SS and Flickr-SoundNet test media in the released layouts: the test ids, what is missing
per id, and the decoded samples.

Layouts (``root`` is the folder the user supplies; see ``docs/benchmarks.md``)
----------------------------------------------------------------------------
``"frames"`` (the released LVS and Hear The Flow test code, How to Listen)::

    root/frames/<id>.jpg        the annotated frame (VGG-SS: the centre frame of the 10-s clip)
    root/audio/<id>.wav         the clip's audio (.flac is read too)
    root/flow/flow_x/<id>.jpg   optional: Hear The Flow's test flow (flow_y/ beside it)

For Flickr-SoundNet the layout of the original test set (``root/Data/<folder>/<id>.jpg`` with
``<id>.wav`` beside it, as How to Listen reads it) is accepted too. For VGG-SS the Hear The Flow
file names ``<youtube id>_<start ms>_<end ms>`` are accepted when ``<id>`` is absent.

``"videos"`` (VGG-SS only)::

    root/videos/<id>.mp4        the 10-s VGG-Sound clip (``video/`` is accepted too)
    root/audio/<id>.wav         its audio track (OpenCV cannot decode audio; extract it, e.g.
                                ``ffmpeg -i videos/<id>.mp4 -vn -ac 1 audio/<id>.wav``)

From a video the frame ``n_frames // 2`` is cut (the centre frame, as Hear The Flow's
preprocessing computes it), the next frame for Hear The Flow's flow, and FlowGrad's flow pair
``(t, t + 1/8 s)`` at that frame's time ``t`` (:mod:`vssl_core.data.flow`).

Annotations: VGG-SS ``vggss.json`` (:mod:`vssl_core.data.vggss`), Flickr-SoundNet one
``<id>.xml`` per image (:mod:`vssl_core.data.flickr`). The test ids come from a list (VGG-SS:
the json's order, = ``vggss_test.csv``; Flickr: ``flickr_test.csv`` as the released LVS and How
to Listen code, else every XML).

Nothing is skipped silently: every test id that cannot be scored is listed in
:attr:`Benchmark.problems` with the reason (no annotation, a missing file, or, once decoding was
tried, an unreadable one).

Units: frames ``uint8 (H, W, 3)`` RGB as stored; audio ``float32 (C, T)`` in [-1, 1] at the
file's rate; ground truth ``float32 (224, 224)`` (:func:`vssl_core.eval.metrics.gt_map_vggss`,
:func:`~vssl_core.eval.metrics.gt_map_flickr`); flow magnitude ``float32 (H, W)`` in px per 1/8 s;
Hear The Flow's flow ``uint8 (H, W, 2)`` = (dx, dy) rounded and clipped to 0..255, what its
released test reads back from the jpgs it wrote.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vssl_core.errors import DataError, data_error
from vssl_core.eval.metrics import gt_map_flickr, gt_map_vggss

__all__ = ["LABELS", "PAPER_KEYS", "CLIP_SECONDS", "Sample", "Benchmark", "open_benchmark", "read_frame",
           "read_wav", "released_htf_flow"]

#: Table labels of the benchmarks.
LABELS = {"vggss": "VGG-SS", "flickr": "Flickr-SoundNet"}
#: Column of "How to Listen" Table 3.
PAPER_KEYS = {"vggss": "VS", "flickr": "FS"}
#: Nominal audio length of the released test clips (s): VGG-Sound 10 s, Flickr-SoundNet 20 s.
CLIP_SECONDS = {"vggss": 10.0, "flickr": 20.0}
AUDIO_EXTENSIONS = (".wav", ".flac")


@dataclass(frozen=True, eq=False)
class Sample:
    """One decoded test sample.

    Attributes
    ----------
    id : str
    frame : ndarray uint8, shape (H, W, 3)
        The annotated frame, RGB, as stored (not resized).
    audio : ndarray float32, shape (C, T)
        The whole audio file in [-1, 1].
    sr : int
        Its sample rate (Hz).
    gt : ndarray float32, shape (224, 224)
        Ground-truth map (VGG-SS binary, Flickr consensus {0, 0.5, 1}).
    boxes : ndarray float64, shape (K, 4)
        VGG-SS ``[x1, y1, x2, y2]`` normalised; Flickr ``[xmin, ymin, xmax, ymax]`` in 256 units.
    centre_s : float
        Where the audio is centred (s from the file start): the frame's time for a video, else
        ``floor(duration) / 2`` (Hear The Flow's test: ``len(samples) // sr / 2``).
    clip_start_s : float
        Start of the 10-s clip in the audio file (0 unless the video is the whole YouTube video).
    clip_seconds : float or None
        Length of the clip in the file (10 for a whole YouTube video; None: the file is the clip).
    frame_time : float
        Time of the frame (s from the file start); NaN for the frames layout.
    flow_mag : ndarray float32, shape (H, W), or None
        FlowGrad's flow magnitude at the frame (px per 1/8 s); videos layout only.
    htf_flow : ndarray uint8, shape (H, W, 2), or None
        Hear The Flow's test flow (see the module docstring).
    """

    id: str
    frame: np.ndarray
    audio: np.ndarray
    sr: int
    gt: np.ndarray
    boxes: np.ndarray
    centre_s: float
    clip_start_s: float = 0.0
    clip_seconds: float | None = None
    frame_time: float = float("nan")
    flow_mag: np.ndarray | None = None
    htf_flow: np.ndarray | None = None


# -- decoding -------------------------------------------------------------------------------------
def read_frame(path: str | Path, mode: str = "RGB") -> np.ndarray:
    """Decode an image with Pillow (the released code's decoder): ``uint8 (H, W, 3)`` RGB, or
    ``(H, W)`` with ``mode="L"``. A missing, truncated or corrupt file raises :class:`DataError`."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise data_error(path, "frame", f"cannot decode the image ({exc})",
                         "replace it with a readable JPEG") from exc


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A whole audio file as ``float32 (C, T)`` in [-1, 1] and its rate; :class:`DataError` when
    soundfile cannot read it or it is empty."""
    import soundfile as sf

    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise data_error(path, "audio", f"cannot decode the audio ({exc})",
                         "replace it with a readable .wav") from exc
    if data.shape[0] == 0:
        raise data_error(path, "audio", "the file holds no samples", "replace it with the clip's audio")
    return np.ascontiguousarray(data.T), int(sr)


def released_htf_flow(field: np.ndarray) -> np.ndarray:
    """A Farneback field ``(H, W, 2)`` as Hear The Flow's test reads it back: each component
    written with ``cv2.imwrite`` to an 8-bit jpg (rounded, clipped to 0..255: leftward and upward
    motion become 0), ``uint8 (H, W, 2)``. The jpg compression itself is not simulated."""
    return np.clip(np.rint(np.asarray(field, dtype=np.float32)), 0, 255).astype(np.uint8)


def _htf_name(sample_id: str) -> str | None:
    """Hear The Flow's VGG-SS file name ``<yt id>_<start ms>_<end ms>`` for ``<yt id>_<start s>``."""
    head, _, tail = sample_id.rpartition("_")
    if not head or not tail.isdigit():
        return None
    start = int(tail)
    return f"{head}_{start * 1000}_{(start + 10) * 1000}"


def _decode(what: str, fn, *args):
    """``fn(*args)``; a :class:`DataError` is raised again as ``"<what> unreadable: <message>"``."""
    try:
        return fn(*args)
    except DataError as exc:
        raise DataError(f"{what} unreadable: {exc}") from exc


# -- the benchmark --------------------------------------------------------------------------------
@dataclass
class Benchmark:
    """A test set: its ids, annotations, media files and the problems found per id.

    Build it with :func:`open_benchmark`. ``problems`` grows when :meth:`load` finds an
    unreadable file (:meth:`record`).

    Attributes
    ----------
    name : {"vggss", "flickr"}
    root : Path or None
        The media folder (None: annotations only).
    layout : {"frames", "videos", "none"}
    annotations : Path
        ``vggss.json`` or the XML folder.
    ids : tuple of str
        The test ids, in list order.
    problems : dict str -> str
        Test id -> why it cannot be scored (several reasons joined by "; ").
    full_video : bool
        Videos are whole YouTube videos (the clip starts at the id's second), not 10-s clips.
    """

    name: str
    root: Path | None
    layout: str
    annotations: Path
    ids: tuple[str, ...]
    problems: dict[str, str]
    full_video: bool = False
    _boxes: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _media: dict[str, dict[str, Path]] = field(default_factory=dict, repr=False)
    _media_problems: set[str] = field(default_factory=set, repr=False)

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def paper_key(self) -> str:
        return PAPER_KEYS[self.name]

    @property
    def has_media(self) -> bool:
        return self.layout != "none"

    @property
    def has_flow_mag(self) -> bool:
        """FlowGrad's 8-fps flow can be computed (videos layout)."""
        return self.layout == "videos"

    @property
    def has_htf_flow(self) -> bool:
        """Hear The Flow's flow exists for the ids with media (videos, or frames with flow/)."""
        return self.layout == "videos" or (self.layout == "frames" and self.root is not None
                                           and (self.root / "flow" / "flow_x").is_dir())

    def annotated_ids(self) -> list[str]:
        """Test ids with a readable annotation, in list order."""
        return [i for i in self.ids if i in self._boxes]

    def media_ids(self) -> list[str]:
        """Test ids with an annotation and every media file present (and none found unreadable)."""
        return [i for i in self.ids if i in self._boxes and i in self._media and i not in self._media_problems]

    def boxes(self, sample_id: str) -> np.ndarray:
        return self._boxes[sample_id]

    def gt(self, sample_id: str) -> np.ndarray:
        """Ground-truth map ``float32 (224, 224)`` of an annotated id (the released rule)."""
        boxes = self._boxes[sample_id]
        return gt_map_vggss(boxes) if self.name == "vggss" else gt_map_flickr(boxes)

    def gt_maps(self, ids: Sequence[str]) -> np.ndarray:
        """Stacked maps ``float32 (len(ids), 224, 224)``."""
        out = np.zeros((len(ids), 224, 224), np.float32)
        for k, i in enumerate(ids):
            out[k] = self.gt(i)
        return out

    def record(self, sample_id: str, problem: str) -> None:
        """Add a problem found while decoding (the id leaves :meth:`media_ids`)."""
        old = self.problems.get(sample_id)
        self.problems[sample_id] = problem if not old else f"{old}; {problem}"
        self._media_problems.add(sample_id)

    def audio_rate(self) -> int | None:
        """Sample rate of the first readable audio file of :meth:`media_ids` (None: none)."""
        from vssl_core.data.media import probe_audio

        for i in self.media_ids():
            try:
                return probe_audio(self._media[i]["audio"]).sr
            except DataError:
                continue
        return None

    def load(self, sample_id: str, *, flow: bool = False) -> Sample:
        """Decode one sample (frame, whole audio, GT; with ``flow`` the flows the layout offers).

        Raises
        ------
        KeyError
            ``sample_id`` is not in :meth:`media_ids`.
        DataError
            A file cannot be decoded (the caller records it with :meth:`record`).
        """
        if sample_id not in self._media or sample_id not in self._boxes:
            raise KeyError(f"{sample_id!r} has no annotation or media in {self.root}")
        files = self._media[sample_id]
        audio, sr = _decode("audio", read_wav, files["audio"])
        duration = audio.shape[1] / sr
        common = dict(id=sample_id, audio=audio, sr=sr, gt=self.gt(sample_id), boxes=self._boxes[sample_id])
        if self.layout == "videos":
            return _decode("video", self._load_video, files["video"], common, flow)
        htf = None
        if flow and "flow_x" in files:
            htf = np.stack([_decode("flow", read_frame, files["flow_x"], "L"),
                            _decode("flow", read_frame, files["flow_y"], "L")], axis=-1)
        return Sample(frame=_decode("frame", read_frame, files["frame"]), centre_s=math.floor(duration) / 2.0,
                      htf_flow=htf, **common)

    def _load_video(self, path: Path, common: dict, flow: bool) -> Sample:
        from vssl_core.data import flow as flowlib
        from vssl_core.data import media

        info = media.probe_video(path)
        if info.n_frames < 2:
            raise data_error(path, "video", f"{info.n_frames} frame(s)", "give the 10-s clip (the flow needs two frames)")
        start = 0.0
        if self.full_video:
            start = float(common["id"].rpartition("_")[2])
            idx = media.frame_index(start + CLIP_SECONDS["vggss"] / 2, info.fps, info.n_frames)
        else:
            idx = info.n_frames // 2
        idx = max(min(idx, info.n_frames - 2), 0)
        t = idx / info.fps
        wanted = {idx, idx + 1}
        pairs = []
        if flow:
            try:
                pairs = flowlib.window_frame_pairs(t, info.fps, info.n_frames, flowlib.FlowParams())
            except ValueError as exc:
                raise data_error(path, "video", str(exc), "give the 10-s clip") from exc
            wanted |= {i for p in pairs for i in p}
        frames = media.read_frames(path, wanted, info.n_frames)
        mag = htf = None
        if flow:
            mag = flowlib.flow_from_frames(frames, t, info.fps, info.n_frames, flowlib.FlowParams())
            htf = released_htf_flow(flowlib.farneback(frames[idx], frames[idx + 1], flowlib.FlowParams()))
        return Sample(frame=frames[idx], centre_s=t, clip_start_s=start,
                      clip_seconds=CLIP_SECONDS["vggss"] if self.full_video else None, frame_time=t, flow_mag=mag,
                      htf_flow=htf, **common)

    def summary(self) -> dict:
        """Counts: test ids, annotated, with media, and ids per problem kind (the text before ':')."""
        kinds: dict[str, int] = {}
        for text in self.problems.values():
            for part in text.split("; "):
                kind = part.split(":")[0].strip()
                kinds[kind] = kinds.get(kind, 0) + 1
        return {"benchmark": self.label, "root": None if self.root is None else str(self.root),
                "layout": self.layout, "annotations": str(self.annotations), "test_ids": len(self.ids),
                "annotated": len(self.annotated_ids()), "with_media": len(self.media_ids()) if self.has_media else 0,
                "problems": dict(sorted(kinds.items()))}

    def problem_rows(self) -> list[tuple[str, str]]:
        """``(id, problem)`` in test-list order."""
        return [(i, self.problems[i]) for i in self.ids if i in self.problems]


# -- opening ----------------------------------------------------------------------------------------
def _first(paths: Sequence[Path | None]) -> Path | None:
    return next((p for p in paths if p is not None and p.exists()), None)


def _shared(sub: str) -> Path | None:
    from vssl_core.repro.paths import shared_data_dir

    root = shared_data_dir()
    return None if root is None else root / sub


def _detect_layout(name: str, root: Path, layout: str) -> str:
    found = {"frames": (root / "frames").is_dir() or (name == "flickr" and (root / "Data").is_dir()),
             "videos": (root / "videos").is_dir() or (root / "video").is_dir()}
    if layout == "auto":
        for kind in ("frames", "videos"):
            if found[kind]:
                layout = kind
                break
        else:
            raise data_error(root, "layout", "no frames/, videos/ (VGG-SS) or Data/ (Flickr) folder",
                             "give the folder holding frames/<id>.jpg + audio/<id>.wav, or videos/<id>.mp4 + "
                             "audio/<id>.wav (see docs/benchmarks.md)")
    if layout not in found:
        raise data_error(root, "layout", f"unknown layout {layout!r}", "use 'auto', 'frames' or 'videos'")
    if layout == "videos" and name != "vggss":
        raise data_error(root, "layout", "the videos layout is for VGG-SS only",
                         "give Flickr-SoundNet as frames/ + audio/ (or the original Data/ folder)")
    if not found[layout]:
        raise data_error(root, "layout", f"the {layout} layout needs a "
                         f"{'frames/' if layout == 'frames' else 'videos/'} folder", "see docs/benchmarks.md")
    return layout


def _index(folder: Path, exts: Sequence[str]) -> dict[str, Path]:
    """stem -> path for the files with one of ``exts`` anywhere under ``folder``."""
    out: dict[str, Path] = {}
    if folder.is_dir():
        for dirpath, _, names in os.walk(folder):
            for n in sorted(names):
                stem, ext = os.path.splitext(n)
                if ext.lower() in exts:
                    out.setdefault(stem, Path(dirpath) / n)
    return out


def _vggss_annotations(path: Path) -> dict[str, np.ndarray]:
    from vssl_core.data.vggss import load_vggss

    return {e.file: np.asarray(e.boxes) for e in load_vggss(path)}


def _flickr_annotations(xml_dir: Path, ids: Sequence[str], problems: dict[str, str]) -> dict[str, np.ndarray]:
    from vssl_core.data.flickr import read_flickr_xml

    out: dict[str, np.ndarray] = {}
    for i in ids:
        path = xml_dir / f"{i}.xml"
        if not path.is_file():
            continue
        try:
            out[i] = np.asarray(read_flickr_xml(path).boxes)
        except DataError as exc:
            problems[i] = f"annotation unreadable: {exc}"
    return out


def open_benchmark(name: str, root: str | Path | None = None, *, annotations: str | Path | None = None,
                   ids: str | Path | Sequence[str] | None = None, layout: str = "auto",
                   full_video: bool = False) -> Benchmark:
    """Index a benchmark: test ids, annotations and media files, with the problems per id.

    Parameters
    ----------
    name : {"vggss", "flickr"}
    root : path or None
        The media folder (layouts in the module docstring); None indexes the annotations only.
    annotations : path, optional
        VGG-SS: ``vggss.json`` (default: ``root/vggss.json``, ``root/metadata/vggss.json``, then
        ``$VSSL_SHARED_DATA/vggss/vggss.json``). Flickr: the XML folder (default
        ``root/Annotations``, ``root/annotations``).
    ids : path or list of str, optional
        The test ids (a list file as :func:`vssl_core.data.flickr.read_test_ids` reads it).
        Default: VGG-SS every entry of the json (the 5,158 ids of ``vggss_test.csv``); Flickr
        ``root/flickr_test.csv``, ``$VSSL_SHARED_DATA/flickr_soundnet/flickr_test.csv`` (the
        released code's 249 ids), else every XML of the folder.
    layout : {"auto", "frames", "videos"}
    full_video : bool
        VGG-SS videos are whole YouTube videos: the clip starts at the id's second (``_000032``).

    Raises
    ------
    DataError
        Unknown benchmark, a missing root, annotation file or id list, no recognised layout.
    """
    from vssl_core.data.flickr import read_test_ids

    if name not in LABELS:
        raise data_error(None, "benchmark", f"unknown benchmark {name!r}", f"choose one of {sorted(LABELS)}")
    rootp = None if root is None or str(root) == "" else Path(root).expanduser()
    if rootp is not None and not rootp.is_dir():
        raise data_error(rootp, None, "the media folder does not exist", "give the folder holding frames/ or videos/")
    kind = "none" if rootp is None else _detect_layout(name, rootp, layout)
    problems: dict[str, str] = {}
    if name == "vggss":
        ann = Path(annotations).expanduser() if annotations else _first(
            [rootp / "vggss.json" if rootp else None, rootp / "metadata" / "vggss.json" if rootp else None,
             _shared("vggss/vggss.json")])
        if ann is None or not ann.is_file():
            raise data_error(ann, "annotations", "vggss.json not found",
                             "pass the VGG-SS annotation file (from the LVS repository's metadata/)")
        boxes = _vggss_annotations(ann)
        id_list = list(boxes) if ids is None else _id_list(ids)
    else:
        ann = Path(annotations).expanduser() if annotations else _first(
            [rootp / "Annotations" if rootp else None, rootp / "annotations" if rootp else None])
        if ann is None or not ann.is_dir():
            raise data_error(ann, "annotations", "the Flickr-SoundNet XML folder was not found",
                             "pass the Annotations/ folder of the Flickr-SoundNet test set (one <id>.xml per image)")
        if ids is None:
            listed = _first([rootp / "flickr_test.csv" if rootp else None, _shared("flickr_soundnet/flickr_test.csv")])
            id_list = read_test_ids(listed) if listed else sorted(p.stem for p in ann.glob("*.xml"))
        else:
            id_list = _id_list(ids)
        boxes = _flickr_annotations(ann, id_list, problems)
    if len(set(id_list)) != len(id_list):
        raise data_error(None, "ids", "a test id is listed twice", "list each test id once")
    for i in id_list:
        if i not in boxes and i not in problems:
            problems[i] = "no annotation"
    bench = Benchmark(name, rootp, kind, ann, tuple(id_list), problems, full_video, boxes)
    if rootp is not None:
        _index_media(bench, rootp)
    return bench


def _id_list(ids: str | Path | Sequence[str]) -> list[str]:
    from vssl_core.data.flickr import read_test_ids

    if isinstance(ids, (str, Path)):
        return read_test_ids(Path(ids).expanduser())
    return [str(i) for i in ids]


def _index_media(bench: Benchmark, root: Path) -> None:
    """Find every test id's files; add 'frame missing', 'audio missing', ... to the problems."""
    audio = _index(root / "audio", AUDIO_EXTENSIONS)
    if bench.layout == "videos":
        visual = _index(root / "videos", (".mp4", ".mkv", ".webm", ".avi")) or \
            _index(root / "video", (".mp4", ".mkv", ".webm", ".avi"))
        what = "video"
    else:
        visual = _index(root / "frames", (".jpg", ".jpeg", ".png"))
        if not visual and bench.name == "flickr":  # the original test set: Data/<folder>/<id>.jpg + .wav
            visual = _index(root / "Data", (".jpg",))
            audio = audio or _index(root / "Data", AUDIO_EXTENSIONS)
        what = "frame"
    flow_x, flow_y = _index(root / "flow" / "flow_x", (".jpg",)), _index(root / "flow" / "flow_y", (".jpg",))
    for i in bench.ids:
        names = [i] + ([n] if bench.name == "vggss" and (n := _htf_name(i)) else [])
        vis = next((visual[n] for n in names if n in visual), None)
        aud = next((audio[n] for n in names if n in audio), None)
        missing = []
        if vis is None:
            missing.append(f"{what} missing")
        if aud is None:
            missing.append("audio missing")
        if missing:
            old = bench.problems.get(i)
            bench.problems[i] = "; ".join(([old] if old else []) + missing)
            continue
        files = {"video" if bench.layout == "videos" else "frame": vis, "audio": aud}
        stem = vis.stem
        if stem in flow_x and stem in flow_y:
            files.update(flow_x=flow_x[stem], flow_y=flow_y[stem])
        bench._media[i] = files
