#!/usr/bin/env bash
# Decode slowdown with context length, llamagate (f16 and q8_0 KV caches) vs llama.cpp, measured so that a shared
# machine's noise cancels: each engine times single-token steps after a short and after a long prompt in one
# process, alternating round by round (crates/engine/examples/decode_slope.rs, benches/llamacpp_decode_slope.py).
#
# usage: benches/run-slope.sh [model.gguf]
#   env: LLAMACPP_PYTHON (default: benches/setup-llamacpp.sh's, see benches/lib/preamble.sh), THREADS ("1 2"), SHORT (50), LONG (1024),
#        STEPS (200 rounds per run), REPS (runs per engine and thread count, default 3), KV_CACHE_TYPES ("f16 q8_0").
#
# Output: one JSON line per run (short_ms, long_ms: median step times; slowdown_pct from those medians;
# paired_slowdown_pct: the median of the rounds' own long/short ratios), then '#' summary lines with the median
# of paired_slowdown_pct over the runs per engine, cache type and thread count.
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/lib/preamble.sh
need_model "${1:-}"
need_llamacpp
threads_list="${THREADS:-1 2}"
short="${SHORT:-50}"
long="${LONG:-1024}"
steps="${STEPS:-200}"
reps="${REPS:-3}"
kv_types="${KV_CACHE_TYPES:-f16 q8_0}"

build_engine_examples

lines="$(mktemp)"
trap 'rm -f "$lines"' EXIT
for rep in $(seq "$reps"); do
  for t in $threads_list; do
    echo "== round $rep/$reps, threads $t" >&2
    for kv in $kv_types; do
      KV_CACHE_TYPE=$kv RAYON_NUM_THREADS=$t target/debug/examples/decode_slope "$model" "$short" "$long" "$steps" | tee -a "$lines"
    done
    "$py" benches/llamacpp_decode_slope.py "$model" "$t" "$short" "$long" "$steps" | tee -a "$lines"
  done
done

python3 - "$lines" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("# summary: median over runs of paired_slowdown_pct (and of the median step times)")
for key in sorted({(r["threads"], r["engine"], r["kv_cache_type"]) for r in rows}):
    runs = [r for r in rows if (r["threads"], r["engine"], r["kv_cache_type"]) == key]
    med = lambda k: statistics.median(r[k] for r in runs)
    print(f"# threads {key[0]} {key[1]} ({key[2]} cache): pos {runs[0]['long']} is {med('paired_slowdown_pct'):.1f}% "
          f"slower than pos {runs[0]['short']} per token ({med('short_ms'):.2f} -> {med('long_ms'):.2f} ms; "
          f"runs: {', '.join(str(r['paired_slowdown_pct']) for r in runs)})")
PY
