#!/usr/bin/env bash
# Engine vs llama.cpp on the default GGUF, 1 and 2 threads: prefill of 512 tokens and decode of 128
# (crates/engine/examples/throughput.rs vs benches/llamacpp_throughput.py). llama.cpp is the anchor that
# benches/setup-llamacpp.sh installs (LLAMACPP_PYTHON overrides; see benches/lib/preamble.sh).
# benches/run-speed.sh runs this and more, with rounds and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib/preamble.sh
need_model
need_llamacpp
echo "building the engine's throughput example (dev profile)..." >&2
cargo build --quiet -p llamagate-engine --example throughput
for threads in 1 2; do
  RAYON_NUM_THREADS=$threads CANDLE_NUM_THREADS=$threads target/debug/examples/throughput "$model" 512 128
  "$py" benches/llamacpp_throughput.py "$model" "$threads" 512 128
done
