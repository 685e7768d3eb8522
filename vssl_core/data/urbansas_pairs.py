"""Urbansas evaluation pairs: which annotated frames are scored, under which protocol.

A *pair* is one 2-fps annotated frame of a clip (time ``t`` in seconds) with its boxes; the image
is the frame at ``t`` and the audio a window around it (the protocol says which).

Boxes are ``float64 (N, 4)`` arrays ``[x, y, w, h]`` (top-left corner) in 1280x720
annotation-frame units, as in the CSVs; scale them with
:func:`vssl_core.data.urbansas.scale_boxes`.

Protocols
---------
``"flowgrad"`` (the released FlowGrad evaluation; docs/conventions.md, "Urbansas evaluation pairs"), applied in this order:

1. events: drop audio events labelled ``offscreen`` and events with
   ``non_identifiable_vehicle_sound != 0`` (a clip's single row of -1s means "no events");
2. boxes: drop rows with ``visibility != 1``, then rows with any negative x, y, w, h (not clipped);
3. times: keep a 2-fps box time ``t`` iff some remaining event of the clip has
   ``start < t < end`` (strict, any class); a kept time with no box left gives no pair.

Image = the frame at ``t``; audio = 1 s starting at ``t - 0.5``.

``"how_to_listen"`` (lenient; our reading of "boxes overlapping audio events" of "How to Listen",
whose evaluation code is not public for Urbansas):

1. events: drop ``offscreen`` events only (non-identifiable events are vehicle sounds too);
2. boxes: keep ``visibility == 1``; boxes with negative coordinates or extending past the frame are
   **clipped** to the 1280x720 frame (not dropped); boxes with no area left are dropped;
3. times: keep ``t`` iff some remaining event has ``start <= t <= end`` (inclusive).

Image = the frame at ``t``; audio = 1 s centred on ``t`` (also ``t - 0.5``).

Every row that is not used is counted in ``PairSet.dropped`` under a reason whose prefix names its
unit (``events:``, ``boxes:``, ``clips:``); every reason the protocol checks is listed, with 0
when nothing was dropped for it. Nothing is dropped silently. A box is counted under the first
filter it fails, in the order above.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import pandas as pd

PROTOCOLS = ("flowgrad", "how_to_listen")

#: Audio window of every protocol, relative to the pair time: ``[t + AUDIO_OFFSET, t + AUDIO_OFFSET + 1)``.
AUDIO_OFFSET = -0.5
AUDIO_SECONDS = 1.0


@dataclass(frozen=True, eq=False)
class Pair:
    """One evaluation sample.

    Attributes
    ----------
    clip : str
        Canonical clip name (``milan1202_44201``).
    time : float
        Seconds from the clip start (a 2-fps annotation time).
    boxes : ndarray, float64, (N, 4)
        ``[x, y, w, h]`` in 1280x720 annotation units (read-only).
    labels : ndarray, int64, (N,)
        Class ids (car 0, bus 1, motorbike 2, truck 3).
    track_ids : ndarray, int64, (N,)
        Track ids of the boxes.
    """

    clip: str
    time: float
    boxes: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray

    @property
    def audio_start(self) -> float:
        """Start of the 1-s audio window (``time - 0.5``), seconds; may be negative (zero-padded)."""
        return self.time + AUDIO_OFFSET


@dataclass
class PairSet(Sequence):
    """The pairs of one protocol, in (clip, time) order, with the drop counts.

    Attributes
    ----------
    pairs : list of Pair
    dropped : Counter
        Reason -> count; the prefix of the reason names what is counted.
    protocol : str
    """

    pairs: list[Pair]
    dropped: Counter = field(default_factory=Counter)
    protocol: str = "flowgrad"

    @overload
    def __getitem__(self, i: int) -> Pair: ...
    @overload
    def __getitem__(self, i: slice) -> list[Pair]: ...

    def __getitem__(self, i):
        return self.pairs[i]

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    @property
    def clips(self) -> list[str]:
        """Distinct clips with at least one pair, sorted."""
        return sorted({p.clip for p in self.pairs})

    def summary(self) -> dict[str, Any]:
        """Plain-data summary: ``{"protocol", "clips", "pairs", "boxes", "dropped"}``."""
        return {
            "protocol": self.protocol,
            "clips": len(self.clips),
            "pairs": len(self.pairs),
            "boxes": int(sum(len(p.boxes) for p in self.pairs)),
            "dropped": {k: int(v) for k, v in sorted(self.dropped.items())},
        }


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def select_pairs(video: pd.DataFrame, audio: pd.DataFrame, clips: Sequence[str],
                 protocol: str = "flowgrad",
                 frame: tuple[int, int] = (1280, 720)) -> PairSet:
    """Apply a protocol to parsed annotation tables.

    Parameters
    ----------
    video, audio : DataFrame
        The two annotation tables with canonical clip names in ``filename``.
    clips : sequence of str
        The clips to consider (those with readable media).
    protocol : {"flowgrad", "how_to_listen"}
    frame : (width, height)
        Annotation frame, for clipping boxes (how_to_listen).

    Returns
    -------
    PairSet
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    strict = protocol == "flowgrad"
    dropped: Counter = Counter()
    keep = set(clips)
    v = video[video["filename"].isin(keep)]
    a = audio[audio["filename"].isin(keep)]

    # --- events
    marker = a["class_id"] < 0  # the single row of -1s of a clip without events
    dropped["events: none annotated (row of -1s)"] += int(marker.sum())
    a = a[~marker]
    off = a["label"] == "offscreen"
    dropped["events: offscreen"] += int(off.sum())
    a = a[~off]
    if strict:
        nid = a["non_identifiable_vehicle_sound"] != 0
        dropped["events: non-identifiable vehicle sound"] += int(nid.sum())
        a = a[~nid]
    events = {c: g[["start", "end"]].to_numpy(float) for c, g in a.groupby("filename", sort=True)}

    # --- boxes
    vis = v["visibility"] == 1
    dropped["boxes: visibility != 1"] += int((~vis).sum())
    v = v[vis]
    xywh = v[["x", "y", "w", "h"]].to_numpy(float)
    if strict:
        neg = (xywh < 0).any(axis=1)
        dropped["boxes: negative coordinate"] += int(neg.sum())
        v, xywh = v[~neg], xywh[~neg]
    else:
        x1 = np.clip(xywh[:, 0], 0, frame[0])
        y1 = np.clip(xywh[:, 1], 0, frame[1])
        x2 = np.clip(xywh[:, 0] + xywh[:, 2], 0, frame[0])
        y2 = np.clip(xywh[:, 1] + xywh[:, 3], 0, frame[1])
        xywh = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
        empty = (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
        dropped["boxes: empty after clipping"] += int(empty.sum())
        v, xywh = v[~empty], xywh[~empty]
    v = v.assign(x=xywh[:, 0], y=xywh[:, 1], w=xywh[:, 2], h=xywh[:, 3])

    # --- times
    pairs: list[Pair] = []
    for clip in sorted(keep):
        ev = events.get(clip)
        g = v[v["filename"] == clip]
        if ev is None or len(ev) == 0:
            if len(g):
                dropped["clips: no usable event"] += 1
                dropped["boxes: time outside events"] += len(g)
            continue
        for t, gt in g.groupby("time", sort=True):
            inside = ((ev[:, 0] < t) & (t < ev[:, 1])) if strict else \
                ((ev[:, 0] <= t) & (t <= ev[:, 1]))
            if not inside.any():
                dropped["boxes: time outside events"] += len(gt)
                continue
            pairs.append(Pair(
                clip=clip, time=float(t),
                boxes=_ro(gt[["x", "y", "w", "h"]].to_numpy(np.float64)),
                labels=_ro(gt["class_id"].to_numpy(np.int64)),
                track_ids=_ro(gt["track_id"].to_numpy(np.int64)),
            ))
    return PairSet(pairs=pairs, dropped=dropped, protocol=protocol)
