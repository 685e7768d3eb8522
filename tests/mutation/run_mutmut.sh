#!/usr/bin/env bash
# Mutation check of the scoring core, run on demand (not in CI, not by `make test`):
#   bash tests/mutation/run_mutmut.sh [MUTANT_NAME_GLOB ...]
# mutmut 3 (`pip install mutmut==3.8.1` into .venv; not a project requirement) mutates
# vssl_core/eval/metrics.py, vssl_core/data/urbansas_pairs.py and vssl_core/models/rcgrad_maps.py
# in a scratch copy of this checkout (the checkout is never touched) and runs the tests that
# cover each mutated function. Survivors are printed at the end; README.md ("Testing") lists
# those of the last run. Set VSSL_SHARED_DATA so the real-data pair tests run too.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/vssl-mutmut.XXXXXX")"
[ -n "${KEEP:-}" ] && echo "scratch copy kept: $scratch" || trap 'rm -rf "$scratch"' EXIT
(cd "$here" && git ls-files --cached --others --exclude-standard -z | tar --null -T - -cf -) \
    | tar -xf - -C "$scratch"
cp "$here/tests/mutation/setup.cfg" "$scratch/setup.cfg"
cd "$scratch"
"$python" -m mutmut run "$@" || true
"$python" -m mutmut results
