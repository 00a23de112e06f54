#!/usr/bin/env bash
# Prefill and decode speed of one GGUF (default: the default model requantized to Q4_K_M by
# models/make-variants.sh) in llamagate and in llama.cpp's own `llama-bench`, on one thread, in rounds that
# pair the two engines back to back (a shared machine's load moves the numbers from minute to minute).
#   ours:      crates/engine/examples/throughput.rs (prefill of a 512-token prompt; 128 greedy tokens
#              after a short chat prompt), dev profile with the engine at opt-level 3;
#   llama.cpp: llama-bench -p 512 -n 128 (prompt processing of 512 tokens; 128 generated tokens from an
#              empty context), from the pinned sources (LLAMA_BENCH, default: benches/setup-llamacpp.sh's
#              .bench/llamacpp/bin/llama-bench).
#
# usage: benches/run-kquant-speed.sh [model.gguf]     env: REPS (rounds, default 3), LLAMA_BENCH
# Output: per round one JSON line from each engine, then the median ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/cache/SmolLM2-135M-Instruct.Q4_K_M.gguf}"
[ -f "$model" ] || ./models/make-variants.sh
llama_bench="${LLAMA_BENCH:-.bench/llamacpp/bin/llama-bench}"
[ -x "$llama_bench" ] || { echo "no llama-bench at $llama_bench: run benches/setup-llamacpp.sh or set LLAMA_BENCH" >&2; exit 1; }
reps="${REPS:-3}"
cargo build --quiet --locked -p llamagate-engine --example throughput
export RAYON_NUM_THREADS=1

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
for round in $(seq "$reps"); do
  echo "# round $round, $(uptime | sed 's/.*load/load/')" >&2
  ours="$(target/debug/examples/throughput "$model" 512 128 | tail -1)"
  echo "$ours" | tee -a "$results"
  # llama-bench's JSON: one object per test (pp512, then tg128) with avg_ts in tokens per second.
  "$llama_bench" -m "$model" -t 1 -p 512 -n 128 -r 1 -o jsonl 2>/dev/null | python3 -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin if line.strip()]
pp = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0)
print(json.dumps({"engine": "llama.cpp", "threads": 1, "prefill_tok_s": round(pp, 1), "decode_tok_s": round(tg, 1)}))
' | tee -a "$results"
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
ours = [r for r in rows if r["engine"] == "llamagate"]
theirs = [r for r in rows if r["engine"] == "llama.cpp"]
for key in ("prefill_tok_s", "decode_tok_s"):
    ratios = [a[key] / b[key] for a, b in zip(ours, theirs)]
    print(f"# {key}: llamagate {statistics.median(r[key] for r in ours):.1f}, llama.cpp "
          f"{statistics.median(r[key] for r in theirs):.1f}, ratio median {statistics.median(ratios):.2f} "
          f"({', '.join(f'{x:.2f}' for x in ratios)})")
PY
