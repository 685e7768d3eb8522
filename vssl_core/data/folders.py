"""Training windows from a folder of real videos: a real Urbansas release or a VGGSound-style folder.

Both end as the same thing as the synthetic scenes: an Urbansas-layout
:class:`~vssl_core.data.urbansas.UrbansasDataset`, random windows cached as a Hugging Face
``datasets`` table (:func:`vssl_core.data.arrays.load_training_windows`), and a
:class:`~vssl_core.data.training_set.TrainingData` whose arrays are read a batch of rows at a
time (:func:`vssl_core.data.streaming.as_streaming`).

- **Urbansas** (the official layout, ``annotations/`` + ``audio/`` + ``video/``): every clip with
  readable video and audio is a training clip, the **unlabelled clips included**; clips with
  evaluation pairs (``dataset.pairs(protocol).clips``) are left out by default.
- **VGGSound-style**: a folder (searched recursively) of ``<id>.mp4`` (or .avi/.mkv) videos, with
  the audio in ``<id>.wav`` beside the video or inside it. :func:`vggsound_layout` lays it out as
  an Urbansas-layout folder without annotations (symbolic links to the videos and wavs, in
  ``<cache>/folders/vggsound-<hash>/``); audio that is only inside a video is extracted to a
  .wav once with ``ffmpeg`` (found on ``PATH``, or the ``imageio-ffmpeg`` package's binary):
  OpenCV, which decodes the frames, reads no audio.

The last ``val_clips`` clips by name are the validation split (their windows give the per-epoch
validation loss; training never reads them). Windows are drawn as for the synthetic scenes
(:meth:`UrbansasDataset.random_windows`, seeded) and then sorted by clip, so that the cache is
written as each clip is decoded and its build holds about one clip of windows in memory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from vssl_core.data.arrays import load_training_windows
from vssl_core.data.flow import FlowParams
from vssl_core.data.streaming import as_streaming
from vssl_core.data.training_set import TrainingData
from vssl_core.data.urbansas import (AUDIO_COLUMNS, VIDEO_COLUMNS, VIDEO_EXTENSIONS, UrbansasDataset,
                                     canonical_clip_name)
from vssl_core.errors import data_error

__all__ = ["LAYOUTS", "detect_layout", "ffmpeg_binary", "vggsound_layout", "open_folder", "folder_training_data"]

LAYOUTS = ("auto", "urbansas", "vggsound")


def detect_layout(folder: str | os.PathLike) -> str:
    """"urbansas" when ``folder/annotations/video_annotations.csv`` exists, else "vggsound"."""
    return "urbansas" if (Path(folder) / "annotations" / "video_annotations.csv").is_file() else "vggsound"


def ffmpeg_binary() -> str | None:
    """An ffmpeg executable: ``$VSSL_FFMPEG``, ``ffmpeg`` on PATH, or imageio-ffmpeg's; None if none."""
    for cand in (os.environ.get("VSSL_FFMPEG"), shutil.which("ffmpeg")):
        if cand:
            return cand
    try:
        import imageio_ffmpeg  # optional
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _extract_wav(ffmpeg: str, video: Path, wav: Path) -> None:
    tmp = wav.with_name(f".{wav.name}.tmp.wav")
    res = subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(video), "-vn",
                          "-acodec", "pcm_s16le", str(tmp)], capture_output=True, text=True)
    if res.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise data_error(video, "audio", f"ffmpeg could not extract its audio ({res.stderr.strip()[-300:]})",
                         f"put the audio beside it as {video.with_suffix('.wav').name}, or skip this video")
    os.replace(tmp, wav)


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return
        link.unlink()
    try:
        link.symlink_to(target)
    except OSError:  # no symbolic links (e.g. Windows without the privilege): a hard link, else a copy
        try:
            os.link(target, link)
        except OSError:
            shutil.copy2(target, link)


def vggsound_layout(folder: str | os.PathLike, workdir: str | os.PathLike | None = None,
                    on_error: str = "skip") -> UrbansasDataset:
    """A VGGSound-style folder as an Urbansas-layout dataset without annotations.

    Parameters
    ----------
    folder : path
        Videos ``<id>.mp4|.avi|.mkv`` anywhere below it; audio ``<id>.wav`` beside a video, or
        inside it (extracted once with ffmpeg, see :func:`ffmpeg_binary`).
    workdir : path, optional
        Where the layout is made (default ``<cache>/folders/vggsound-<hash of the folder path>``).
        It holds links (and the extracted .wav files); the videos are never copied.
    on_error : {"skip", "raise"}
        Videos that cannot be decoded: left out (listed in ``.skipped``) or an error.

    Returns
    -------
    UrbansasDataset
        Every video with readable audio is a clip (:meth:`UrbansasDataset.unlabelled_clips`);
        clip names are the video stems.
    """
    from vssl_core.repro.cache import fingerprint
    from vssl_core.repro.paths import cache_dir

    src = Path(folder).expanduser().resolve()
    if not src.is_dir():
        raise data_error(src, None, "folder not found", "give a folder of <id>.mp4 videos (VGGSound layout)")
    videos: dict[str, Path] = {}
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file():
            videos.setdefault(canonical_clip_name(p.name), p)
    if not videos:
        raise data_error(src, None, f"no video ({', '.join(VIDEO_EXTENSIONS)}) found below it",
                         "give a folder of <id>.mp4 videos, with <id>.wav beside them or the audio inside")
    root = Path(workdir) if workdir is not None else cache_dir() / "folders" / f"vggsound-{fingerprint(str(src))}"
    for sub in ("annotations", "video", "audio"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, cols in (("video_annotations.csv", VIDEO_COLUMNS), ("audio_annotations.csv", AUDIO_COLUMNS)):
        path = root / "annotations" / name
        if not path.is_file():
            path.write_text(",".join(cols) + "\n")  # no labels: every clip is unlabelled
    ffmpeg, need_ffmpeg = None, []
    for clip, video in videos.items():
        _link(video, root / "video" / f"{clip}{video.suffix.lower()}")
        wav, beside = root / "audio" / f"{clip}.wav", video.with_suffix(".wav")
        if beside.is_file():
            _link(beside, wav)
        elif not wav.is_file():
            need_ffmpeg.append((video, wav))
    if need_ffmpeg:
        ffmpeg = ffmpeg_binary()
        if ffmpeg is None:
            raise data_error(need_ffmpeg[0][0], "audio",
                             f"{len(need_ffmpeg)} videos have no <id>.wav beside them and no ffmpeg is available "
                             "to extract the audio inside them (OpenCV decodes no audio)",
                             "install ffmpeg (e.g. apt-get install ffmpeg, or pip install imageio-ffmpeg), set "
                             "VSSL_FFMPEG to an ffmpeg binary, or put <id>.wav beside each video")
        for video, wav in need_ffmpeg:
            _extract_wav(ffmpeg, video, wav)
    return UrbansasDataset(root, on_error=on_error)


def open_folder(folder: str | os.PathLike, layout: str = "auto", workdir: str | os.PathLike | None = None
                ) -> UrbansasDataset:
    """The dataset of a real Urbansas folder or a VGGSound-style folder (``layout``: one of
    :data:`LAYOUTS`; "auto" uses :func:`detect_layout`). Unreadable clips are skipped."""
    if layout not in LAYOUTS:
        raise data_error(folder, "layout", f"unknown layout {layout!r}", f"use one of {LAYOUTS}")
    layout = detect_layout(folder) if layout == "auto" else layout
    if layout == "urbansas":
        return UrbansasDataset(folder, on_error="skip")
    return vggsound_layout(folder, workdir)


def folder_training_data(dataset: UrbansasDataset, *, n_windows: int, n_val_windows: int, val_clips: int,
                         seconds: float, image_size: int, flow: FlowParams = FlowParams(), audio_sr: int = 16000,
                         seed: int = 0, exclude: Sequence[str] | None = None, protocol: str = "flowgrad",
                         flow_field: bool = False, progress: bool = True) -> TrainingData:
    """Random training and validation windows of a real dataset, cached, read lazily.

    Parameters
    ----------
    dataset : UrbansasDataset
        :func:`open_folder`'s.
    n_windows, n_val_windows : int
        Windows of the training clips and of the validation clips.
    val_clips : int
        The last ``val_clips`` clips (by name) of the pool are the validation split.
    seconds : float
        Window length (audio, s); the image and the flow are taken at the window centre.
    image_size : int
        Side of the square images and flow maps (px).
    flow, audio_sr, seed, flow_field
        As :func:`vssl_core.data.arrays.load_training` (the validation windows use ``seed + 1``).
    exclude : sequence of str, optional
        Clips left out of the pool. Default: the clips with evaluation pairs of ``protocol``
        (none in a VGGSound-style folder).

    Returns
    -------
    TrainingData
        ``train`` and ``val`` as streaming TrainingArrays (rows sorted by clip, then start),
        ``key`` the fingerprint of the training windows' source.
    """
    if exclude is None:
        exclude = dataset.pairs(protocol).clips if len(dataset.video_annotations) else []
    pool = sorted(dataset.unlabelled_clips(exclude=exclude))
    if not 0 < val_clips < len(pool):
        raise data_error(dataset.root, "val_clips", f"{len(pool)} clips to train on, asked for {val_clips} "
                         "validation clips", f"use val_clips in 1..{len(pool) - 1} (or add clips)")
    train_clips, val_pool = pool[:-val_clips], pool[-val_clips:]
    common = dict(seconds=seconds, image_size=image_size, flow=flow, audio_sr=audio_sr, flow_field=flow_field,
                  progress=progress)
    out = []
    for clips, n, s in ((train_clips, n_windows, seed), (val_pool, n_val_windows, seed + 1)):
        windows = sorted(dataset.random_windows(n, seconds, seed=s, clips=clips))
        arrays, key = load_training_windows(dataset, windows, **common)
        out.append((as_streaming(arrays), key))
    return TrainingData(out[0][0], out[1][0], out[0][1])
