#!/usr/bin/env bash
# Engine speed, llamagate vs llama.cpp side by side, on one GGUF (default: the bundled SmolLM2-135M Q4_1),
# at 1 and 2 threads, all in one run:
#   (a) throughput: prefill of a 512-token synthetic prompt and greedy decode of 128 tokens after a short
#       chat prompt (crates/engine/examples/throughput.rs vs benches/llamacpp_throughput.py);
#   (b) decode_at: decode speed of 64 greedy tokens after a synthetic prompt of 50 and of 1024 tokens, i.e.
#       how much a longer KV cache slows each decode step (crates/engine/examples/decode_at.rs vs
#       benches/llamacpp_decode_at.py).
#
# usage: benches/run-speed.sh [model.gguf]
#   env: LLAMACPP_PYTHON (default /work/llamacpp-venv2/bin/python, llama-cpp-python 0.3.36; see run-engine.sh
#        for how it was built), THREADS (default "1 2"), PREFILL (512), DECODE (128), POSITIONS ("50 1024"),
#        DECODE_AT_TOKENS (64). Ours runs the dev profile (engine and numeric crates at opt-level 3).
#
# Output: one JSON line per measurement, on stdout, llamagate first then llama.cpp for each case, e.g.
#   {"engine":"llamagate","threads":1,"prefill_tokens":512,"prefill_tok_s":..,"decode_tok_s":..,"peak_rss_mb":..}
#   {"engine":"llamagate","bench":"decode_at","threads":1,"position":1024,"decode_tok_s":..,"ms_per_token":..}
# Compare lines with the same threads (and position): higher tok/s is better. decode_at's decode_tok_s
# covers only the single-token steps after the prompt (not the prefill); the ratio of position 1024 to
# position 50 shows the cost of attention over the longer context. llama.cpp's peak_rss_mb includes the
# Python interpreter (≈ 40 MB). Progress notes go to stderr. On a shared machine the absolute numbers move
# with the load: compare lines of one run only.
set -euo pipefail
cd "$(dirname "$0")/.."

model="${1:-models/cache/SmolLM2-135M-Instruct.Q4_1.gguf}"
py="${LLAMACPP_PYTHON:-/work/llamacpp-venv2/bin/python}"
threads_list="${THREADS:-1 2}"
prefill="${PREFILL:-512}"
decode="${DECODE:-128}"
positions="${POSITIONS:-50 1024}"
decode_at_tokens="${DECODE_AT_TOKENS:-64}"

if [ "$model" = models/cache/SmolLM2-135M-Instruct.Q4_1.gguf ] && [ ! -f "$model" ]; then
  ./models/fetch.sh >&2
fi
echo "building the engine's examples (dev profile)..." >&2
cargo build --quiet -p llamagate-engine --examples

for t in $threads_list; do
  echo "== threads $t: throughput (prefill $prefill, decode $decode)" >&2
  RAYON_NUM_THREADS=$t CANDLE_NUM_THREADS=$t target/debug/examples/throughput "$model" "$prefill" "$decode"
  "$py" benches/llamacpp_throughput.py "$model" "$t" "$prefill" "$decode"
  for pos in $positions; do
    echo "== threads $t: decode_at position $pos, $decode_at_tokens tokens" >&2
    RAYON_NUM_THREADS=$t CANDLE_NUM_THREADS=$t target/debug/examples/decode_at "$model" "$pos" "$decode_at_tokens"
    "$py" benches/llamacpp_decode_at.py "$model" "$t" "$pos" "$decode_at_tokens"
  done
done
