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
#   env: LLAMACPP_PYTHON (default: the one benches/setup-llamacpp.sh installs in .bench/, set up on first
#        use; see benches/lib/preamble.sh), THREADS (default "1 2"), PREFILL (512), DECODE (128), POSITIONS ("50 1024"),
#        DECODE_AT_TOKENS (64), REPS (rounds of the whole set, default 1: on a shared host the numbers move
#        by ±25% from minute to minute, so several rounds, each pairing the two engines back to back, and
#        their medians say more than one), KV_CACHE_TYPES (our decode_at's cache types, default "f16"; "f16 q8_0"
#        adds the 8-bit cache — llama.cpp keeps its default f16). Ours runs the dev profile (engine and numeric crates at opt-level 3).
#
# Output: one JSON line per measurement, on stdout, llamagate first then llama.cpp for each case, then a summary
# (lines starting with '#': medians over the rounds, ratios, and the slowdown with position), e.g.
#   {"engine":"llamagate","kv_cache_type":"f16","threads":1,"prefill_tokens":512,"prefill_tok_s":..,"decode_tok_s":..,"peak_rss_mb":..}
#   {"engine":"llamagate","bench":"decode_at","kv_cache_type":"f16","threads":1,"position":1024,"decode_tok_s":..,"ms_per_token":..}
# Compare lines with the same threads (and position): higher tok/s is better. decode_at's decode_tok_s
# covers only the single-token steps after the prompt (not the prefill); the ratio of position 1024 to
# position 50 shows the cost of attention over the longer context. llama.cpp's peak_rss_mb includes the
# Python interpreter (≈ 40 MB). Progress notes go to stderr. On a shared machine the absolute numbers move
# with the load: compare lines of one run only.
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/lib/preamble.sh
need_model "${1:-}"
need_llamacpp
threads_list="${THREADS:-1 2}"
prefill="${PREFILL:-512}"
decode="${DECODE:-128}"
positions="${POSITIONS:-50 1024}"
decode_at_tokens="${DECODE_AT_TOKENS:-64}"
reps="${REPS:-1}"
kv_types="${KV_CACHE_TYPES:-f16}"

build_engine_examples

lines="$(mktemp)"
trap 'rm -f "$lines"' EXIT
for rep in $(seq "$reps"); do
  for t in $threads_list; do
    echo "== round $rep/$reps, threads $t: throughput (prefill $prefill, decode $decode)" >&2
    RAYON_NUM_THREADS=$t CANDLE_NUM_THREADS=$t target/debug/examples/throughput "$model" "$prefill" "$decode" | tee -a "$lines"
    "$py" benches/llamacpp_throughput.py "$model" "$t" "$prefill" "$decode" | tee -a "$lines"
    for pos in $positions; do
      echo "== round $rep/$reps, threads $t: decode_at position $pos, $decode_at_tokens tokens" >&2
      for kv in $kv_types; do
        KV_CACHE_TYPE=$kv RAYON_NUM_THREADS=$t CANDLE_NUM_THREADS=$t target/debug/examples/decode_at "$model" "$pos" "$decode_at_tokens" | tee -a "$lines"
      done
      "$py" benches/llamacpp_decode_at.py "$model" "$t" "$pos" "$decode_at_tokens" | tee -a "$lines"
    done
  done
done

# Summary: the median of the rounds per engine and case, and llamagate's ratio to llama.cpp; for decode_at,
# also each engine's slowdown from the first position to the last.
python3 - "$lines" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(engine, threads, key, **match):
    vals = [r[key] for r in rows if r["engine"] == engine and r["threads"] == threads
            and all(r.get(k) == v for k, v in match.items()) and r.get(key) is not None]
    return (statistics.median(vals), len(vals)) if vals else (None, 0)
print("# summary: medians over rounds (llamagate / llama.cpp = ratio)")
for t in sorted({r["threads"] for r in rows}):
    for key in ("prefill_tok_s", "decode_tok_s"):
        g, n = med("llamagate", t, key, bench=None)
        c, _ = med("llama.cpp", t, key, bench=None)
        if g and c:
            print(f"# threads {t} throughput {key}: {g:.1f} / {c:.1f} = {g / c:.2f}x  ({n} rounds)")
    positions = sorted({r["position"] for r in rows if r.get("bench") == "decode_at"})
    kv_types = sorted({r["kv_cache_type"] for r in rows if r.get("kv_cache_type")})
    for engine, kv in [("llamagate", kv) for kv in kv_types] + [("llama.cpp", None)]:
        speeds = {p: med(engine, t, "decode_tok_s", bench="decode_at", position=p, kv_cache_type=kv)[0] for p in positions}
        text = ", ".join(f"pos {p}: {v:.1f}" for p, v in speeds.items() if v)
        if len(positions) > 1 and speeds[positions[0]] and speeds[positions[-1]]:
            slower = 100 * (speeds[positions[0]] / speeds[positions[-1]] - 1)
            text += f"; pos {positions[-1]} is {slower:.0f}% slower than pos {positions[0]} (per token)"
        print(f"# threads {t} decode_at {engine}{f' ({kv} cache)' if kv else ''}: {text}")
PY
