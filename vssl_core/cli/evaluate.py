"""``python -m vssl_core evaluate``: score your own heatmaps against ground-truth maps.

Prints ONE JSON object on stdout::

    {"cIoU": .., "AUC": .., "cIoU_ci": [lo, hi], "AUC_ci": [lo, hi], "n": .., "n_empty": ..,
     "at": .., "threshold": .., "cutoff": .., "postprocess": .., "reading": .., "empty": ..,
     "level": 0.95, "n_boot": .., "seed": .., "maps": "<file>", "gt": "<file>"}

``cIoU`` is the fraction of samples with per-sample cIoU >= ``cutoff`` (= ``--at`` with the
default ``--reading code``). Bad input (missing file, unreadable array, wrong shape, NaN, values
whose range overflows the dtype) or a bad argument (``--at`` outside [0, 1], a negative seed or
resample count, a ``--per-sample`` path that is an input or cannot be written) prints one line
naming the file or option to stderr and exits with code 2 (:func:`vssl_core.cli.run_cli`).
Arguments and paths are checked before scoring; the result is printed before the optional
per-sample file is written, so a failing write never loses it. The arrays are read a block of
rows at a time (:class:`vssl_core.data.streaming.NpyRows`; heatmaps of another size are resized
per block): 20,000 maps need a few hundred MB, not the 8 GB of both arrays
(``benchmarks/memory_evaluate.py``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vssl_core.cli import (ArgumentParser, add_debug_flag, check_output_path, non_negative_int,
                           probability, run_cli)
from vssl_core.errors import data_error
from vssl_core.repro.atomic import write_text


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m vssl_core evaluate",
        description="cIoU@at, AUC and bootstrap CIs of heatmaps (N,H,W) against ground-truth "
                    "maps (N,224,224). Heatmaps of another size are resized bilinearly to 224.")
    p.add_argument("--maps", required=True, type=Path, help="heatmaps, .npy float (N,H,W)")
    p.add_argument("--gt", required=True, type=Path,
                   help="ground-truth maps, .npy (N,224,224), values in [0,1]")
    p.add_argument("--postprocess", choices=["clean", "median", "none"], default="clean",
                   help="clean: RCGrad/FlowGrad; median: LVS/HTF; none: threshold raw maps")
    p.add_argument("--at", type=probability, default=0.3,
                   help="the @ value of cIoU@at, in [0, 1] (default 0.3)")
    p.add_argument("--reading", choices=["code", "text"], default="code",
                   help="code: binarise at 0.5, cut-off = at (released code); text: binarise "
                        "at `at`, cut-off 0.5 ('How to Listen' text)")
    p.add_argument("--n-boot", type=non_negative_int, default=1000,
                   help="bootstrap resamples (0: none)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (>= 0)")
    p.add_argument("--empty", choices=["compat", "error", "exclude"], default="compat",
                   help="samples with empty GT and empty prediction: compat = NaN counted as "
                        "a miss; error = stop; exclude = leave out of the denominators")
    p.add_argument("--per-sample", type=Path, default=None,
                   help="also write index,ciou CSV here (atomically; never one of the inputs)")
    return add_debug_flag(p)


def _load(path: Path, field: str):
    """The array in ``path``: a 3-D C-ordered array as an :class:`NpyRows` (read a block of rows
    at a time while it is checked and scored, never held whole), anything smaller in memory."""
    from vssl_core.data.streaming import NpyRows

    if not path.is_file():
        raise data_error(path, field, "file not found", "pass an existing .npy file")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)  # reads the header only
    except (ValueError, OSError, EOFError) as exc:
        raise data_error(path, field, f"cannot read as a .npy array ({exc})",
                         "save the array with numpy.save") from exc
    if not isinstance(arr, np.ndarray):
        raise data_error(path, field, "holds several arrays (.npz)",
                         "save one array with numpy.save")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise data_error(path, field, f"dtype {arr.dtype} is not numeric", "save float maps")
    if arr.ndim == 3 and arr.flags.c_contiguous and arr.size:
        return NpyRows(path)
    return np.array(arr)


def main(argv: list[str] | None = None) -> int:
    return run_cli("evaluate", _main, argv)


def _per_sample_csv(cious: np.ndarray) -> str:
    lines = ["index,ciou"]
    lines += [f"{i},{'nan' if np.isnan(c) else repr(c)}" for i, c in enumerate(cious.tolist())]
    return "\n".join(lines) + "\n"


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from vssl_core.eval import metrics
    from vssl_core.eval.maps import GridRows

    if args.per_sample is not None:
        check_output_path(args.per_sample, [args.maps, args.gt], "--per-sample")
    maps = _load(args.maps, "maps")
    gts = _load(args.gt, "gts")
    if maps.ndim not in (2, 3):
        raise data_error(args.maps, "maps", f"expected shape (N, H, W), got {maps.shape}",
                         "stack one 2-D heatmap per sample")
    if maps.ndim == 3 and maps.shape[1:] != (metrics.GRID, metrics.GRID):
        metrics.validate_maps(maps, maps_file=args.maps)
        maps = GridRows(maps)  # resized a block at a time while it is scored
    # checked block by block while scored (one pass over the files); nothing is printed before
    result = metrics.evaluate(maps, gts, postprocess=args.postprocess, at=args.at,
                              n_boot=args.n_boot, seed=args.seed, empty=args.empty,
                              reading=args.reading, maps_file=args.maps, gts_file=args.gt)
    out = result.to_dict()
    out.update(maps=str(args.maps), gt=str(args.gt))
    if args.per_sample is not None:
        out["per_sample"] = str(args.per_sample)
    print(json.dumps(_finite(out), sort_keys=False), flush=True)
    if args.per_sample is not None:
        write_text(args.per_sample, _per_sample_csv(result.cious))
    return 0


def _finite(obj):
    """JSON has no NaN: NaN becomes null."""
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
