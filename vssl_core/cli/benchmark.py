"""``python -m vssl_core benchmark``: "How to Listen" Table 3 rows on VGG-SS / Flickr-SoundNet media.

Example (the released weights, media in the released layouts; see ``docs/benchmarks.md``)::

    python -m vssl_core benchmark --vggss /data/vggss_test --flickr /data/flickr_test \\
        --weights rcgrad=rc_grad.pt --weights lvs=lvs_vggss.pth.tar --out results/

Prints one Markdown table (one row per benchmark and method: n, cIoU@0.5 and AUC with 95%
bootstrap intervals, the paper's numbers, the protocol) and one line per benchmark naming the
test ids that were not scored and why. Writes ``<benchmark>_table.csv/.md``,
``<benchmark>_per_sample.csv`` and ``<benchmark>_problems.csv`` into ``--out``. Bad input (a
missing folder, an unreadable or foreign weights file, an unknown method) prints one line to
stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vssl_core.cli import ArgumentParser, add_debug_flag, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m vssl_core benchmark",
        description="Evaluate methods on the VGG-SS and Flickr-SoundNet test media under each paper's protocol.")
    p.add_argument("--vggss", type=Path, help="VGG-SS media folder: frames/ + audio/, or videos/ + audio/")
    p.add_argument("--vggss-json", type=Path, help="vggss.json (default: in the folder, else $VSSL_SHARED_DATA/vggss/)")
    p.add_argument("--vggss-ids", type=Path, help="VGG-SS test id list (default: every entry of vggss.json)")
    p.add_argument("--layout", choices=("auto", "frames", "videos"), default="auto", help="VGG-SS media layout")
    p.add_argument("--full-video", action="store_true",
                   help="VGG-SS videos are whole YouTube videos (the clip starts at the id's second)")
    p.add_argument("--flickr", type=Path, help="Flickr-SoundNet media folder: frames/ + audio/ (or Data/)")
    p.add_argument("--flickr-xml", type=Path, help="Flickr-SoundNet XML folder (default: <folder>/Annotations)")
    p.add_argument("--flickr-ids", type=Path,
                   help="Flickr test id list (default: flickr_test.csv in the folder or $VSSL_SHARED_DATA)")
    p.add_argument("--weights", action="append", default=[], metavar="METHOD=FILE",
                   help="weights per method: rcgrad (also FlowGrad-H), lvs, htf, oya; repeatable")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: centred_box and every method with weights)")
    p.add_argument("--out", type=Path, default=Path("benchmark_results"), help="folder for tables and per-sample scores")
    p.add_argument("--at", type=float, default=0.5, help="cut-off on per-sample cIoU (default 0.5, Table 3)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (0: no intervals)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--limit", type=int, default=None, help="score only the first N samples per benchmark")
    p.add_argument("--chunk", type=int, default=16, help="samples decoded at a time")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return add_debug_flag(p)


def _weights(items: list[str]) -> dict[str, Path]:
    from vssl_core.errors import data_error

    out = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise data_error(None, "--weights", f"expected METHOD=FILE, got {item!r}", "e.g. --weights rcgrad=rc_grad.pt")
        out[key.strip()] = Path(path).expanduser()
    return out


def _plan(bench, methods: list[str] | None, weights: dict[str, Path]) -> tuple[list[str], list[str]]:
    """(methods to run on ``bench``, notes on the methods left out)."""
    from vssl_core.errors import data_error
    from vssl_core.studies import how_to_listen_benchmarks as hb

    notes = []
    explicit = methods is not None
    if methods is None:
        methods = ["centred_box"] + [k for k in hb.ROW_ORDER if hb.METHODS[k].weights in weights and k != "centred_box"]
    run = []
    for key in methods:
        spec = hb.METHODS.get(key)
        if spec is None:
            raise data_error(None, "--methods", f"unknown method {key!r}", f"choose from {', '.join(hb.ROW_ORDER)}")
        why = None
        if not spec.implemented:
            why = hb.SOURCES["clip"]
        elif spec.weights is not None and not bench.has_media:
            why = "no media"
        elif spec.flow == "mag" and not bench.has_flow_mag:
            why = hb.SOURCES["mag"]
        elif spec.flow == "htf" and not bench.has_htf_flow:
            why = hb.SOURCES["htf_flow"]
        elif spec.weights is not None and spec.weights not in weights:
            why = f"no --weights {spec.weights}=FILE"
        if why is None:
            run.append(key)
        elif explicit:
            raise data_error(None, "--methods", f"{spec.label} cannot run on {bench.label}: {why}", "supply it or drop the method")
        else:
            notes.append(f"{bench.label}: {spec.label} not run ({why})")
    return run, notes


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from vssl_core.errors import data_error

    if args.vggss is None and args.flickr is None:
        raise data_error(None, "--vggss/--flickr", "no benchmark given", "pass --vggss FOLDER and/or --flickr FOLDER")
    import pandas as pd

    from vssl_core.data.benchmarks import open_benchmark
    from vssl_core.repro.outputs import to_markdown
    from vssl_core.studies import how_to_listen_benchmarks as hb

    weights = _weights(args.weights)
    unknown = set(weights) - set(hb.WEIGHT_FILES)
    if unknown:
        raise data_error(None, "--weights", f"unknown method {sorted(unknown)[0]!r}",
                         f"name one of {', '.join(hb.WEIGHT_FILES)}")
    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    benches = []
    if args.flickr is not None:
        benches.append(open_benchmark("flickr", args.flickr, annotations=args.flickr_xml, ids=args.flickr_ids))
    if args.vggss is not None:
        benches.append(open_benchmark("vggss", args.vggss, annotations=args.vggss_json, ids=args.vggss_ids,
                                      layout=args.layout, full_video=args.full_video))
    tables, lines = [], []
    for bench in benches:
        run, notes = _plan(bench, methods, weights)
        lines.extend(notes)
        file_sr = bench.audio_rate()
        runners = {k: hb.load_runner(k, bench.name, weights.get(hb.METHODS[k].weights or ""), file_sr=file_sr)
                   for k in run}
        ev = hb.evaluate(bench, runners, at=args.at, n_boot=args.n_boot, seed=args.seed, chunk=args.chunk,
                         limit=args.limit, progress=args.progress)
        hb.save_evaluation(ev, args.out)
        tables.append(hb.evaluation_table(ev))
        s = bench.summary()
        lines.append(f"{s['benchmark']}: {len(ev.ids)} of {s['test_ids']} test ids scored; not scored: "
                     f"{ev.unscored_counts() or 'none'} (per id: {args.out / (bench.name + '_problems.csv')})")
        lines.extend(f"{s['benchmark']}: {n}" for n in ev.notes)
        lines.extend(f"{s['benchmark']}: {hb.METHODS[k].label} weights: {r.report}" for k, r in runners.items()
                     if r.report)
    table = pd.concat(tables, ignore_index=True)
    shown = table[["dataset", "method", "n", "cIoU", "cIoU_lo", "cIoU_hi", "AUC", "AUC_lo", "AUC_hi",
                   "paper_cIoU", "paper_AUC", "protocol"]]
    print(to_markdown(shown, digits=3))
    print()
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``benchmark`` command under the shared error contract (:func:`vssl_core.cli.run_cli`)."""
    return run_cli("benchmark", _main, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
