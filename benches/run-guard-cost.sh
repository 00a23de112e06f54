#!/usr/bin/env bash
# What a Llama Guard check costs (issue 23): the guard_cost example on a GGUF with Llama-Guard-3-1B's exact
# shape and random weights (written once by benches/make_guard_shape.py into .bench/, git-ignored, ~1.3 GB),
# and on the bundled default model standing in as the guard. Prints one JSON line per model.
#
# usage: benches/run-guard-cost.sh        env: ROUNDS (default 3), RAYON_NUM_THREADS (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
./models/fetch.sh >/dev/null
default="$PWD/models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"
venv="$PWD/.bench/gguf-venv"
shape="$PWD/.bench/models/llama-guard-3-1b-shape.Q8_0.gguf"
if [ ! -f "$shape" ]; then
  # Pinned: the newest gguf package on the index when this was written (2026-12-05).
  [ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet gguf==0.19.0 numpy; }
  mkdir -p "$(dirname "$shape")"
  "$venv/bin/python" benches/make_guard_shape.py "$default" "$shape.partial"
  mv "$shape.partial" "$shape"
fi
cargo build --quiet --release --locked -p llamagate-engine --example guard_cost
echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, threads ${RAYON_NUM_THREADS:-all}; $(date -u +%Y-%m-%d); $(git rev-parse --short HEAD)"
for model in "$shape" "$default"; do
  target/release/examples/guard_cost "$model" "${ROUNDS:-3}"
done
