#!/usr/bin/env bash
# The size of each set-up, each built fresh in WORK (default /tmp/vae-export-sizes):
# the runtime alone, `make run`'s core, `make test`'s full environment; and the runtime's
# import, open and first-sample times and peak RSS (benchmarks/runtime_first_call.py).
#   bash benchmarks/setup_sizes.sh [WORK]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-/tmp/vae-export-sizes}
PIP="pip install --quiet --disable-pip-version-check"
mkdir -p "$WORK" && cd "$WORK" && rm -rf rt core full src
cp -r "$REPO/runtime" src && rm -rf src/build src/tests src/*.egg-info
python3 -m venv rt && rt/bin/$PIP ./src
echo "runtime alone: $(du -sm rt | cut -f1) MB, $(rt/bin/pip list 2>/dev/null | tail -n +3 | wc -l) packages"
python3 -m venv core && core/bin/$PIP torch==2.13.0 && core/bin/$PIP "$REPO/runtime" "$REPO"
echo "make run (core): $(du -sm core | cut -f1) MB, $(core/bin/pip list 2>/dev/null | tail -n +3 | wc -l) packages"
python3 -m venv full && full/bin/$PIP torch==2.13.0 && full/bin/$PIP "$REPO/runtime" "$REPO[test,scale,peers,diffusers,executorch]"
echo "make test (full): $(du -sm full | cut -f1) MB, $(full/bin/pip list 2>/dev/null | tail -n +3 | wc -l) packages"
core/bin/vae-export train --artifacts a --epochs 1 -q >/dev/null && core/bin/vae-export export --artifacts a >/dev/null
for i in 1 2 3; do /usr/bin/time -f "peak RSS %M KB" rt/bin/python "$REPO/benchmarks/runtime_first_call.py" a/decoder.onnx; done
