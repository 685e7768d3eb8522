"""The dataset-bias study of "How to Listen" (Fig. 2, Table 2, Table 3's naive row).

A :class:`BoxSource` is one evaluation set seen only through its boxes: a box table (for the
statistics) and its ground-truth maps, produced lazily in chunks (all 5,158 VGG-SS maps
would take 1 GB as float32). The naive baseline, one centred box covering 50% of the image,
is scored against those maps with the same metric code as every model.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vssl_core.eval import box_stats as bias
from vssl_core.eval import metrics
from vssl_core.data.urbansas import UrbansasDataset
from vssl_core.repro.profiles import StudySetup

#: "How to Listen" Table 3: (cIoU at the dataset's cut-off, AUC) per dataset and method.
#: FS and VS use cIoU@0.5, US uses cIoU@0.3.
HOW_TO_LISTEN_TABLE3 = {
    "Baseline (centred box)": {"FS": (0.618, 0.534), "VS": (0.323, 0.372), "US": (0.038, 0.075)},
    "LVS": {"FS": (0.667, 0.549), "VS": (0.263, 0.345), "US": (0.036, 0.071)},
    "RCGrad": {"FS": (0.679, 0.551), "VS": (0.226, 0.334), "US": (0.175, 0.145)},
    "CLIPAudioTran": {"FS": (0.482, 0.491), "VS": (0.225, 0.316), "US": (0.073, 0.091)},
    "CLIPTextTran": {"VS": (0.241, 0.322), "US": (0.219, 0.164)},
}

#: "How to Listen" Table 2: evaluation frames and boxes per frame.
HOW_TO_LISTEN_TABLE2 = {
    "FS": {"frames": 250, "boxes": "1", "audio_s": 20},
    "VS": {"frames": 4436, "boxes": "1-5", "audio_s": 10, "single_box_percent": 89.3},
    "MS": {"frames": 455, "boxes": "2", "audio_s": 1},
    "US": {"frames": 10802, "boxes": "1-25", "audio_s": 1},
}

CHUNK = 256


@dataclass(frozen=True)
class HowToListenSetup(StudySetup):
    """Notebook 01's settings: the bootstrap and the naive baseline's box.

    Attributes
    ----------
    n_boot, seed : int
        Bootstrap resamples of the 95% intervals and their seed.
    centred_box_area : float
        Fraction of the image the naive centred box covers ("How to Listen": 0.5).
    """

    PROFILE_TABLE = "01_dataset_bias"

    n_boot: int = 1000
    seed: int = 0
    centred_box_area: float = 0.5


@dataclass(frozen=True)
class BoxSource:
    """One evaluation set's boxes.

    Attributes
    ----------
    name : str
        Row label in tables and legends.
    paper_key : str or None
        Column of the paper's tables ("FS", "VS", "US") this set stands in for.
    at : float
        Its cut-off on per-sample cIoU (0.5 for FS / VS, 0.3 for US).
    table : DataFrame
        :func:`vssl_core.eval.box_stats.box_table` of its frames.
    gt_chunks : callable () -> iterator of float32 (n, 224, 224)
        Ground-truth maps in sample order, in chunks.
    note : str
        How this set differs from the paper's (printed under the tables).
    """

    name: str
    paper_key: str | None
    at: float
    table: pd.DataFrame
    gt_chunks: Callable[[], Iterator[np.ndarray]]
    note: str = ""

    @property
    def n_frames(self) -> int:
        return int(self.table["sample_id"].nunique())


def _chunked(make: Callable[[Sequence], np.ndarray], items: Sequence) -> Callable[[], Iterator]:
    def gen() -> Iterator[np.ndarray]:
        for s in range(0, len(items), CHUNK):
            yield make(items[s:s + CHUNK])
    return gen


def vggss_source(path: str | Path) -> BoxSource:
    """VGG-SS from its annotation json (real file: 5,158 entries, defects reported)."""
    from vssl_core.data.vggss import load_vggss

    ann = load_vggss(path)
    table = bias.box_table(((e.file, e.boxes) for e in ann), "vggss", dataset="VGG-SS")
    counts = ann.defects.counts()
    note = (f"VGG-SS: {len(ann)} annotated frames here vs 4,436 frames in the paper (the authors "
            f"could only download 4,436 of the test videos). Defects of the real file: {counts}; "
            "degenerate boxes are left out of the statistics, and the GT rule int(224*max(v,0)) "
            "is applied as in the released code for the maps.")
    files = list(ann.files)
    return BoxSource("VGG-SS", "VS", 0.5, table,
                     _chunked(lambda keys: ann.gt_maps(list(keys)), files), note)


def urbansas_source(dataset: UrbansasDataset, name: str, protocol: str = "how_to_listen",
                    paper_key: str | None = "US", note: str = "") -> BoxSource:
    """An Urbansas-layout dataset (real or synthetic) under an evaluation protocol."""
    pairs = list(dataset.pairs(protocol))
    table = bias.box_table(((f"{p.clip}@{p.time:.1f}", p.boxes) for p in pairs), "urbansas",
                           dataset=name)

    def maps(chunk: Sequence) -> np.ndarray:
        return np.stack([metrics.gt_map_urbansas(p.boxes) for p in chunk]).astype(np.float32)

    return BoxSource(name, paper_key, 0.3, table, _chunked(maps, pairs), note)


def flickr_source(xml_dir: str | Path, ids: str | Path | None = None) -> BoxSource:
    """Flickr-SoundNet from a folder of XML annotations (consensus GT maps)."""
    from vssl_core.data.flickr import gt_maps, load_flickr

    anns = load_flickr(xml_dir, ids)
    samples = [(a.id, np.asarray(a.boxes, float).reshape(-1, 4)) for a in anns]
    table = bias.box_table(samples, "flickr", dataset="Flickr-SoundNet")
    return BoxSource("Flickr-SoundNet", "FS", 0.5, table, _chunked(gt_maps, anns))


def naive_baseline_cious(source: BoxSource, area_fraction: float = 0.5) -> np.ndarray:
    """Per-sample cIoU of the centred box (postprocess "none": the map is already binary)."""
    box = bias.centred_box_map(area_fraction)
    out = [metrics.ciou(np.broadcast_to(box, g.shape), g, postprocess="none")
           for g in source.gt_chunks()]
    return np.concatenate(out) if out else np.zeros(0)


def naive_baseline_table(sources: Sequence[BoxSource], n_boot: int = 1000, seed: int = 0,
                         area_fraction: float = 0.5) -> pd.DataFrame:
    """Table 3's naive row for every source: cIoU@cut-off and AUC with 95% CIs, paper beside."""
    rows = []
    for src in sources:
        res = metrics.score_cious(naive_baseline_cious(src, area_fraction), at=src.at,
                                  n_boot=n_boot, seed=seed, postprocess="none")
        paper = HOW_TO_LISTEN_TABLE3["Baseline (centred box)"].get(src.paper_key or "", (np.nan,) * 2)
        rows.append({"dataset": src.name, "n": res.n, "n_empty": res.n_empty, "cut-off": src.at,
                     "cIoU": res.ciou, "cIoU_lo": res.ciou_lo, "cIoU_hi": res.ciou_hi,
                     "AUC": res.auc, "AUC_lo": res.auc_lo, "AUC_hi": res.auc_hi,
                     "paper_cIoU": paper[0], "paper_AUC": paper[1]})
    return pd.DataFrame(rows)


def table2(sources: Sequence[BoxSource]) -> pd.DataFrame:
    """Table 2 statistics per source, with the paper's frame count and box range beside."""
    summary = bias.table2_summary(pd.concat([s.table for s in sources], ignore_index=True))
    summary = summary.reset_index() if "dataset" not in summary.columns else summary
    keys = {s.name: s.paper_key for s in sources}
    summary["paper_frames"] = [HOW_TO_LISTEN_TABLE2.get(keys.get(n) or "", {}).get("frames", np.nan)
                               for n in summary["dataset"]]
    summary["paper_boxes"] = [HOW_TO_LISTEN_TABLE2.get(keys.get(n) or "", {}).get("boxes", "")
                              for n in summary["dataset"]]
    return summary


def area_and_centres(source: BoxSource) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box areas (% of image), the centre histogram on the 224 grid and boxes per frame."""
    t = source.table
    kept = t[t["box"] >= 0]
    centres = np.column_stack([kept["cx"].to_numpy() * metrics.GRID,
                               kept["cy"].to_numpy() * metrics.GRID])
    hist, _ = bias.centre_histogram(centres, bins=28, density=True)
    per_frame = bias.boxes_per_frame(t).to_numpy()
    return kept["area_pct"].to_numpy(), hist, per_frame
