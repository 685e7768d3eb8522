"""Command line: ``python -m vssl_core COMMAND [options]``.

Each command lives in ``vssl_core/cli/<command>.py`` and exposes ``main(argv) -> int``;
it is imported only when called, so ``--help`` stays fast. Every command follows one error
contract (:func:`vssl_core.cli.run_cli`): a bad argument or input is one message and exit
status 2, ``--debug`` shows the traceback, Ctrl-C / SIGTERM exit 130 / 143 after cleaning up.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "regenerate": "execute the notebooks with papermill and rebuild figures/ and its MANIFEST",
    "evaluate": "score your own heatmaps (N,224,224) against ground-truth maps: cIoU, AUC, CIs",
    "pairs": "summarise the evaluation pairs of an Urbansas-layout folder (JSON)",
    "benchmark": "How to Listen Table 3 rows: methods on VGG-SS / Flickr-SoundNet media with released weights",
    "synth": "generate synthetic urban scenes in the official Urbansas layout",
    "train": "train every model the notebooks use and write the shipped weights (weights/<profile>/)",
    "compare": "compare two regenerations' tables: each new estimate against the old 95% interval",
    "scale": "train RCGrad / FlowGrad-IC/-EN on a real Urbansas or VGGSound folder (torchrun for many GPUs)",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print("usage: python -m vssl_core COMMAND [options]\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<11} {text}")
        print("\n'python -m vssl_core COMMAND --help' for a command's options; --debug shows "
              "tracebacks of errors (exit status 2 without it: one message naming the file, the "
              "field and the fix).")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"vssl_core.cli.{name}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
