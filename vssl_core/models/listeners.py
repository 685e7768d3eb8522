"""Perfect listeners: reference maps that know exactly what is heard (synthetic data only).

Why
---
The listening targets of the notebooks (the concat-and-localize side accuracy, the audio
sensitivity) measure how much a map follows the sound. How far can they go on a given dataset?
A perfect listener answers that for the synthetic streets: it knows, for every evaluation pair,
which vehicles its sound contains (their classes and how many of each), and it sees every vehicle
of the frame. What it cannot know is which of the visible vehicles made the sound when several
of them are of a heard class: that is the part of the task the sound leaves open.

Rule
----
From the generator's ``annotations/objects.csv`` (one row per object and annotated frame):

- **Heard** at ``(clip, time)``: the vehicles (car, bus, truck, motorbike) with ``sounding == 1``
  at that time, on screen or not (an off-screen car is heard as a car), counted per class.
- **Seen**: the :class:`~vssl_core.models.baselines.OracleDetector`'s vehicles (visible fraction
  at least ``min_visible``, parked ones included). With ``motion=True`` only those the topline's
  temporal filter keeps (:func:`~vssl_core.models.baselines.topline_boxes`: dropped when a box
  0.5 s later, or earlier at the clip's last frame, overlaps with IoU > 0.95), i.e. the
  listener also knows what moves.
- **Map**: for each heard class with count ``n``, the ``n`` largest seen vehicles of that class
  (box area: a louder vehicle is a nearer, hence larger one), painted like the ground truth
  (:func:`~vssl_core.eval.metrics.gt_map_urbansas`), binary, scored with ``postprocess="none"``.
  Nothing seen of a heard class: nothing painted (an all-zero map).

:meth:`PerfectListener.seen_maps` paints every seen vehicle whatever the sound: the perfect
*potential* map (Oya et al.'s term) against which the listening is measured.

A listener is handed the sound of any pair: :meth:`PerfectListener.maps` takes the frames and, for
each, the ``(clip, time)`` whose sound it hears (another clip's for the audio-sensitivity check), and
:meth:`PerfectListener.concat_maps` paints both halves of concat-and-localize rows for the
sound of the row's source.

What it leaves out: loudness beyond ranking, Doppler, onsets and stereo. A learned model can beat
it by using them, so its numbers are a reference for the *class-and-count* content of the sound,
not a hard bound.

Times are matched in whole milliseconds, as :class:`~vssl_core.models.baselines.OracleDetector`
does. Boxes are ``[x, y, w, h]`` in 1280x720 annotation units.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import numpy as np

from vssl_core.data.concat import concat_boxes
from vssl_core.errors import data_error
from vssl_core.eval.maps import LocalizationMaps
from vssl_core.eval.metrics import GRID, gt_map_urbansas
from vssl_core.models.baselines import VEHICLE_CLASSES, Detection, OracleDetector, class_filter, topline_boxes

__all__ = ["LISTENER", "LISTENER_MOTION", "SEEN", "SEEN_MOTION", "PerfectListener", "perfect_listeners",
           "pick_heard"]

#: Table names of the two listeners and of the maps of every vehicle each sees (``seen_maps``).
LISTENER, LISTENER_MOTION = "Perfect listener (oracle)", "Perfect listener + motion (oracle)"
SEEN, SEEN_MOTION = "Every vehicle (oracle)", "Every moving vehicle (oracle)"

_REQUIRED = ("filename", "time", "label", "sounding")


def _ms(t: float) -> int:
    return int(round(float(t) * 1000))


def pick_heard(seen: Sequence[Detection], heard: Counter) -> np.ndarray:
    """The boxes a perfect listener paints: per heard class, its ``count`` largest seen vehicles.

    Parameters
    ----------
    seen : sequence of Detection
        The frame's vehicles (any order; ties in area keep it).
    heard : Counter
        ``{class label: number of vehicles of that class heard}``.

    Returns
    -------
    np.ndarray, float64, shape (K, 4)
        ``[x, y, w, h]`` boxes, grouped by class in sorted class order.
    """
    boxes: list[tuple[float, float, float, float]] = []
    for label in sorted(heard):
        mine = sorted((d.box for d in seen if d.label == label), key=lambda b: -b[2] * b[3])
        boxes += mine[:max(int(heard[label]), 0)]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


class PerfectListener:
    """Maps of a listener that knows the heard vehicles and sees every vehicle (module docstring).

    Parameters
    ----------
    objects : pandas.DataFrame
        The synthetic ``objects.csv``: columns ``filename, time, label, sounding`` and those of
        :class:`~vssl_core.models.baselines.OracleDetector`.
    motion : bool
        Also know what moves: only the vehicles the topline's temporal filter keeps.
    min_visible : float
        A vehicle is seen when at least this fraction of it is visible.
    source : path, optional
        Where ``objects`` was read from (named in errors).
    """

    def __init__(self, objects, *, motion: bool = False, min_visible: float = 0.5,
                 source: str | os.PathLike | None = None) -> None:
        missing = [c for c in _REQUIRED if c not in objects.columns]
        if missing:
            raise data_error(source, missing[0], "column missing from the objects table",
                             f"give the generator's objects.csv (columns {', '.join(_REQUIRED)}, ...)")
        self.motion = bool(motion)
        self.source = source
        self._detector = OracleDetector(objects, min_visible=min_visible, source=source)
        self._frames: set[tuple[str, int]] = set()
        self._last: dict[str, float] = {}
        self._heard: dict[tuple[str, int], Counter] = {}
        for clip, t, label, sounding in zip(objects["filename"].astype(str), objects["time"].astype(float),
                                            objects["label"].astype(str), objects["sounding"]):
            key = (clip, _ms(t))
            self._frames.add(key)
            self._last[clip] = max(self._last.get(clip, t), t)
            if int(sounding) == 1 and label in VEHICLE_CLASSES:
                self._heard.setdefault(key, Counter())[label] += 1

    @property
    def name(self) -> str:
        """The method name used in tables."""
        return LISTENER_MOTION if self.motion else LISTENER

    def _frame(self, clip: str, time: float) -> tuple[str, int]:
        key = (str(clip), _ms(time))
        if key not in self._frames:
            raise data_error(self.source, "time", f"no object rows for clip {clip!r} at {float(time):g} s",
                             "use the objects table of the dataset the pairs come from")
        return key

    def heard(self, clip: str, time: float) -> Counter:
        """``{class: count}`` of the vehicles heard at ``(clip, time)`` (empty when none sounds)."""
        return Counter(self._heard.get(self._frame(clip, time), Counter()))

    def seen(self, clip: str, time: float) -> list[Detection]:
        """The vehicles the listener sees at ``(clip, time)`` (moving ones only with ``motion``)."""
        self._frame(clip, time)
        if self.motion:
            return topline_boxes(self._detector, str(clip), float(time), self._last[str(clip)])
        return class_filter(self._detector.detect(str(clip), float(time)))

    @property
    def seen_name(self) -> str:
        """The table name of :meth:`seen_maps`."""
        return SEEN_MOTION if self.motion else SEEN

    def seen_maps(self, clips: Sequence[str], times: Sequence[float]) -> LocalizationMaps:
        """Every vehicle the listener sees, whatever the sound: the perfect *potential* map that
        its listening is measured against (with ``motion``, the topline's boxes).

        Returns
        -------
        LocalizationMaps, (N, 224, 224), binary, ``postprocess="none"``
        """
        if len(times) != len(clips):
            raise ValueError(f"{len(clips)} clips but {len(times)} times")
        out = np.zeros((len(clips), GRID, GRID), np.float32)
        for i, (clip, time) in enumerate(zip(clips, times)):
            seen = self.seen(clip, time)
            out[i] = gt_map_urbansas(np.asarray([d.box for d in seen], dtype=np.float64).reshape(-1, 4))
        return LocalizationMaps(out, "none", "perfect_listener")

    def boxes(self, clip: str, time: float, heard: Counter) -> np.ndarray:
        """The boxes painted on frame ``(clip, time)`` when the sound holds ``heard``, ``(K, 4)``."""
        return pick_heard(self.seen(clip, time), heard)

    def maps(self, clips: Sequence[str], times: Sequence[float], sound_clips: Sequence[str] | None = None,
             sound_times: Sequence[float] | None = None) -> LocalizationMaps:
        """Maps of the frames ``(clips[i], times[i])`` heard with the sound of the pair
        ``(sound_clips[i], sound_times[i])`` (default: their own).

        Returns
        -------
        LocalizationMaps, (N, 224, 224), binary, ``postprocess="none"``
        """
        n = len(clips)
        sound_clips = clips if sound_clips is None else sound_clips
        sound_times = times if sound_times is None else sound_times
        if not len(times) == len(sound_clips) == len(sound_times) == n:
            raise ValueError(f"clips, times, sound_clips and sound_times must have one entry per frame, got "
                             f"{n}, {len(times)}, {len(sound_clips)}, {len(sound_times)}")
        out = np.zeros((n, GRID, GRID), np.float32)
        for i in range(n):
            out[i] = gt_map_urbansas(self.boxes(clips[i], times[i], self.heard(sound_clips[i], sound_times[i])))
        return LocalizationMaps(out, "none", "perfect_listener")

    def concat_maps(self, clips: Sequence[str], times: Sequence[float], left: Sequence[int],
                    right: Sequence[int], source: Sequence[int]) -> LocalizationMaps:
        """Maps of concat-and-localize rows: both halves painted for the sound of ``source``.

        Parameters
        ----------
        clips, times : the input pairs of the concat set.
        left, right, source : sequences of int, shape (M,)
            Input indices per row (:class:`~vssl_core.data.concat.ConcatSet`).

        Returns
        -------
        LocalizationMaps, (M, 224, 224), binary, ``postprocess="none"``
        """
        m = len(source)
        if not len(left) == len(right) == m:
            raise ValueError(f"left, right and source must have one entry per row, got "
                             f"{len(left)}, {len(right)}, {m}")
        out = np.zeros((m, GRID, GRID), np.float32)
        for k in range(m):
            s = int(source[k])
            heard = self.heard(clips[s], times[s])
            halves = [concat_boxes(self.boxes(clips[int(i)], times[int(i)], heard), side)
                      for i, side in ((left[k], "left"), (right[k], "right"))]
            out[k] = gt_map_urbansas(np.concatenate(halves))
        return LocalizationMaps(out, "none", "perfect_listener")


def perfect_listeners(objects, source: str | os.PathLike | None = None) -> dict[str, PerfectListener]:
    """The two perfect listeners of a synthetic dataset's objects table, by table name: without
    and with knowledge of what moves."""
    listeners = (PerfectListener(objects, source=source), PerfectListener(objects, motion=True, source=source))
    return {listener.name: listener for listener in listeners}
