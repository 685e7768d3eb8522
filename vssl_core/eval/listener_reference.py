"""How far can listening go on these pairs? A reference listener's numbers beside the models'.

Notebooks 03 and 04 hold the models to listening targets (audio sensitivity, concat-and-localize
side accuracy). :func:`reference_table` scores reference listeners (e.g. the perfect listeners of
:func:`vssl_core.models.listeners.perfect_listeners`) on the same evaluation pairs with the same
rules: cIoU on the pairs; audio sensitivity and the own-minus-swapped sound cIoU with the models'
seeded swap (:func:`vssl_core.eval.audio_sensitivity.swap_partners`,
:func:`~vssl_core.eval.audio_sensitivity.sound_gain`); and, given a concat set, the side accuracy
(:func:`vssl_core.eval.side_accuracy.side_accuracy`).

A listener is anything with ``maps(clips, times, sound_clips=None, sound_times=None)`` and
``concat_maps(clips, times, left, right, source)`` returning :class:`~vssl_core.eval.maps.LocalizationMaps` (see
:class:`vssl_core.models.listeners.PerfectListener`).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from vssl_core.eval import metrics
from vssl_core.eval.audio_sensitivity import check_summary, compare_maps, swap_partners
from vssl_core.eval.scoring import result_columns, score_chunked
from vssl_core.eval.side_accuracy import side_accuracy, side_accuracy_interval

__all__ = ["reference_table", "reference_results"]


def reference_table(listeners: Mapping[str, object], ev, concat=None, at: float = 0.3, n_boot: int = 1000,
                    seed: int = 0, chunk: int = 128) -> pd.DataFrame:
    """One row per listener: cIoU@``at`` and AUC with CIs on ``ev``, its audio sensitivity, its
    own-minus-swapped sound cIoU with CI, the share of frames left empty by the swapped sound, and
    its concat side accuracy when ``concat`` (built from ``ev``) is given, with a 95% interval that
    resamples concat pairs (:func:`~vssl_core.eval.side_accuracy.side_accuracy_interval`).

    Parameters
    ----------
    listeners : mapping name -> listener
        E.g. :func:`vssl_core.models.listeners.perfect_listeners`.
    ev : EvalArrays
        The evaluation pairs (their clips and times name the frames; ``gt`` is scored).
    concat : ConcatSet, optional
        The concat-and-localize rows built from ``ev``
        (:func:`vssl_core.studies.do_we_need_sound.concat_set`).
    at, n_boot, seed : the scoring rules of the models' tables; ``seed`` also seeds the swap.
    chunk : int
        Frames (and concat rows) mapped at a time: memory stays flat whatever the number of pairs.
    """
    clips, times = np.asarray(ev.clips).astype(str), np.asarray(ev.times, dtype=np.float64)
    n = len(ev)
    partners = swap_partners(n, seed)
    table = []
    for name, listener in listeners.items():
        parts, silent = [], []
        for rows in (slice(start, start + chunk) for start in range(0, n, chunk)):
            own = listener.maps(clips[rows], times[rows])
            other = listener.maps(clips[rows], times[rows], clips[partners[rows]], times[partners[rows]])
            parts.append(compare_maps(own, other, ev.gt[rows], at))
            silent.append(other.maps.reshape(len(other.maps), -1).max(1) == 0)
        r = metrics.score_cious(np.concatenate([p[1] for p in parts]), at=at, n_boot=n_boot, seed=seed,
                                postprocess="none")
        row = {"method": name, "n": n, **result_columns(r), **check_summary(parts, at, n_boot, seed),
               "silent under swapped sound": float(np.concatenate(silent).mean())}
        if concat is not None:
            side = [side_accuracy(listener.concat_maps(clips, times, concat.left[rows], concat.right[rows],
                                                       concat.source[rows]), np.asarray(concat.side)[rows])
                    for rows in (slice(start, start + chunk) for start in range(0, len(concat.side), chunk))]
            side = np.concatenate(side)
            row["side_accuracy"] = float(side.mean())
            row["side_accuracy_lo"], row["side_accuracy_hi"] = side_accuracy_interval(side, n_boot, seed)
        table.append(row)
    return pd.DataFrame(table)


def reference_results(listeners: Mapping[str, object], ev, at: float = 0.3, n_boot: int = 1000, seed: int = 0,
                      chunk: int = 128) -> dict:
    """Per-sample scores of each listener with its own sound and of its ``seen_maps`` (every vehicle
    it sees), as ``{name: EvalResult}`` to merge with the models' results (e.g. to split them by
    sample type): the listener under its table name, the seen map under ``listener.seen_name``."""
    clips, times = np.asarray(ev.clips).astype(str), np.asarray(ev.times, dtype=np.float64)

    def stream(rows: slice):
        for name, listener in listeners.items():
            yield name, listener.maps(clips[rows], times[rows])
            yield listener.seen_name, listener.seen_maps(clips[rows], times[rows])

    return score_chunked(stream, ev.gt, at=at, n_boot=n_boot, seed=seed, chunk=chunk)[0]
